"""Tasks for the worker's subprocess tests (module level, so spawned children import them).

The tasks are ``shared_task``: every app has them, the app of this module (the
one the test workers run, on the file named by ``LITEQ_TEST_DB``) as well as
the producer app a test makes on the same file.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from liteq import Liteq, Task, shared_task
from liteq.exceptions import SoftTimeLimitExceeded

app = Liteq("tests.apps.tasks", broker=os.environ.get("LITEQ_TEST_DB") or None)


def _mark(directory: str, name: str, text: str) -> None:
    path = Path(directory) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def _wait_for(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.01)
    return False


@shared_task
def add(x: int, y: int) -> int:
    """Return ``x + y``."""
    return x + y


@shared_task
def noop(i: int) -> int:
    """Return ``i``."""
    return i


@shared_task
def whoami() -> int:
    """Return the pid of the process that ran the task."""
    return os.getpid()


def _block(directory: str, name: str, timeout: float) -> int:
    _mark(directory, f"{name}.started", str(os.getpid()))
    _wait_for(Path(directory) / f"{name}.release", timeout)
    return os.getpid()


@shared_task
def block(directory: str, name: str, timeout: float = 30.0) -> int:
    """Write ``<name>.started`` (with the pid), wait for ``<name>.release``."""
    return _block(directory, name, timeout)


@shared_task(acks_late=True)
def block_late(directory: str, name: str, timeout: float = 30.0) -> int:
    """:func:`block` with ``acks_late``: re-run if its worker dies."""
    return _block(directory, name, timeout)


@shared_task(acks_late=True)
def once_then_quick(directory: str, name: str) -> str:
    """Block on the first delivery (to be killed there); return at once later."""
    first = Path(directory) / f"{name}.started"
    if not first.exists():
        _block(directory, name, 30.0)
    return "done"


@shared_task(soft_time_limit=0.5)
def soft_limited(directory: str) -> str:
    """Run into its soft limit, clean up, and say so."""
    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        _mark(directory, "soft.cleanup", "1")
        return "cleaned up"


@shared_task(time_limit=1.0)
def hard_limited() -> None:
    """Sleep far past its hard limit."""
    time.sleep(60)


@shared_task
def raise_system_exit() -> None:
    """Raise SystemExit inside the task."""
    raise SystemExit(3)


@shared_task
def raise_keyboard_interrupt() -> None:
    """Raise KeyboardInterrupt inside the task."""
    raise KeyboardInterrupt


@shared_task
def hard_exit() -> None:
    """Kill the process running the task, as a segfault would."""
    os._exit(9)


@shared_task(rate_limit="4/s")
def limited(i: int) -> float:
    """A task limited to four starts a second across all workers."""
    return time.time()


@shared_task
def echo(value: Any) -> Any:
    """Return ``value``."""
    return value


@shared_task(acks_late=True)
def echo_late(value: Any) -> Any:
    """Return ``value`` (``acks_late``)."""
    return value


@shared_task
def record(directory: str, name: str) -> str:
    """Leave ``<name>.ran`` behind and return ``name``."""
    _mark(directory, f"{name}.ran", str(os.getpid()))
    return name


@shared_task
def kill_worker(directory: str) -> None:
    """SIGKILL the worker whose pid the test wrote into ``worker.pid``, then wait.

    The task may run in the worker itself (solo, threads) or in a pool
    process (prefork), which goes down with its worker.
    """
    path = Path(directory) / "worker.pid"
    if _wait_for(path, 30.0):
        os.kill(int(path.read_text()), signal.SIGKILL)
    time.sleep(30)


class _Witness(Task):
    """End hooks that write the state their task has in the database.

    ``<task id>.<hook>`` in the task's first argument, a directory.
    """

    def _see(self, hook: str, task_id: str, args: Any) -> None:
        _mark(args[0], f"{task_id}.{hook}", self.AsyncResult(task_id).state)

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self._see("on_success", task_id, args)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self._see("on_failure", task_id, args)

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self._see("after_return", task_id, args)


@shared_task(base=_Witness)
def witnessed(directory: str, fail: bool = False) -> str:
    """Return "ok" (or raise ValueError); its hooks record what they see stored."""
    if fail:
        raise ValueError("asked to fail")
    return "ok"


class _ExitsInOnSuccess(Task):
    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        os._exit(3)  # the process dies once its task is stored


@shared_task(base=_ExitsInOnSuccess)
def exits_in_on_success(x: int) -> int:
    """Return ``x``; then its on_success kills the process that ran it."""
    return x
