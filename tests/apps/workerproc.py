"""Start and watch real worker processes in tests (always killed at teardown).

``WorkerProcs(tmp_path)`` gives a database file, a producer app on it, and
``start(**worker_options)`` to run ``tests.apps.run_worker`` in its own
session (so one ``killpg`` takes the worker and its pool processes). Each
worker's output goes to a log file read with ``log(proc)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from liteq import Liteq
from liteq.app import _current
from liteq.result import AsyncResult
from liteq.testing import wait_until

#: The repository root: the workers run from it so that ``tests`` imports.
ROOT = Path(__file__).resolve().parents[2]


class WorkerProcs:
    """Worker subprocesses on one database file in ``tmp_path``."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.db = tmp_path / "tasks.db"
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: dict[int, Path] = {}
        self.producer = Liteq("producer", broker=str(self.db), set_as_current=False)
        if self.producer in _current:
            _current.remove(self.producer)

    def env(self) -> dict[str, str]:
        """The environment of a worker process."""
        env = dict(os.environ)
        env["LITEQ_TEST_DB"] = str(self.db)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def start(self, **options: Any) -> subprocess.Popen[bytes]:
        """Start a worker with ``Worker(**options)`` (spawn children by default)."""
        options.setdefault("start_method", "spawn")
        options.setdefault("concurrency", 1)
        options.setdefault("hostname", f"w{len(self.procs) + 1}@%h")
        log = self.dir / f"worker{len(self.procs) + 1}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.apps.run_worker", json.dumps(options)],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        self._logs[proc.pid] = log
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        """Everything ``proc`` logged so far."""
        return self._logs[proc.pid].read_text(errors="replace")

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        """Wait until the worker registered with all its pool slots ready."""

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log(proc)}")
            return any(
                row.pid == proc.pid and row.info.get("ready")
                for row in self.producer.storage.workers()
            )

        wait_until(
            ready, timeout=timeout, message=f"worker not ready:\n{self.log(proc)}"
        )

    def send(self, name: str, *args: Any, **options: Any) -> AsyncResult:
        """Enqueue task ``tests.apps.tasks.<name>``."""
        return self.producer.send_task(f"tests.apps.tasks.{name}", args=args, **options)

    def marker(self, name: str, timeout: float = 30.0) -> int:
        """Wait for ``<name>.started`` and return the pid written in it."""
        path = self.dir / f"{name}.started"
        wait_until(path.exists, timeout=timeout, message=f"{name} did not start")
        return int(path.read_text())

    def release(self, name: str) -> None:
        """Let a blocked task named ``name`` return."""
        (self.dir / f"{name}.release").write_text("1")

    def wait_exit(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
        """Wait for ``proc`` to exit and return its exit code."""
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker did not exit:\n{self.log(proc)}") from None

    def task_row(self, task_id: str) -> tuple[int, str, str, int, float] | None:
        """The task's queue row, None once it finished."""
        return self.producer.storage.broker.get_task_row(task_id)

    def close(self) -> None:
        """Kill every process started (and its pool processes)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.producer.close()

    def __enter__(self) -> WorkerProcs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(predicate: Any, timeout: float, message: str = "") -> Any:
    """``wait_until`` with a short poll interval, for timing-sensitive checks."""
    return wait_until(predicate, timeout=timeout, interval=0.01, message=message)


def monotonic() -> float:
    """``time.monotonic()`` (shared by every process on the host)."""
    return time.monotonic()
