"""Running example programs and real ``liteq`` workers in a copy of an example folder.

Every example runs in its own copy under ``tmp_path`` (so ``sqlite:///tasks.db``
lands there), against the ``liteq`` console script installed next to the
interpreter running the tests.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from liteq import Liteq, wakeup
from liteq.app import _apps, _current

#: The repository root.
ROOT = Path(__file__).resolve().parents[2]
#: The examples folder.
EXAMPLES = ROOT / "examples"
#: The seed programs.
SEEDS = EXAMPLES / "seeds"

#: Generous upper bound for one program; a healthy run takes well under it.
TIMEOUT = 60.0

_IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.db", "*.db-wal", "*.db-shm", "pages.txt", "*.jsonl"
)


def copy_example(relative: str, tmp_path: Path) -> Path:
    """Copy ``examples/<relative>`` into ``tmp_path`` and return the copy's path."""
    source = EXAMPLES / relative
    assert source.is_dir(), f"no example folder {source}"
    target = tmp_path / source.name
    shutil.copytree(source, target, ignore=_IGNORE)
    return target


def succeeded(log: str, task: str, value: str, task_id: str = r"[0-9a-f-]+") -> bool:
    """Return True if a worker log has Celery's line for a task that returned ``value``.

    ``Task <task>[<id>] succeeded in <seconds>s: <value>``
    """
    line = (
        rf"Task {re.escape(task)}\[{task_id}\] succeeded in [0-9.e-]+s: "
        rf"{re.escape(value)}$"
    )
    return re.search(line, log, re.M) is not None


def liteq_command() -> list[str]:
    """Return the command that starts ``liteq``: the console script users run."""
    script = Path(sys.executable).with_name("liteq")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "liteq"]


def program_env(**extra: str) -> dict[str, str]:
    """Return the environment for example programs: ours, minus any LITEQ_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEQ_")}
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    """Return a command's exit status and output, for assertion messages."""
    return (
        f"$ {' '.join(map(str, proc.args))}\nexit status {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


def run(
    args: Sequence[str],
    cwd: Path,
    timeout: float = TIMEOUT,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and return it (asserting exit status 0 by default)."""
    proc = subprocess.run(
        list(args),
        cwd=cwd,
        env=env or program_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert proc.returncode == 0, describe(proc)
    return proc


def python(
    script: str,
    *args: str,
    cwd: Path,
    timeout: float = TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``python script args...`` in ``cwd`` (``script`` may be ``-c`` or ``-m``)."""
    return run([sys.executable, script, *args], cwd=cwd, timeout=timeout, check=check)


def burst(*args: str, cwd: Path, timeout: float = TIMEOUT) -> str:
    """Run ``liteq <args> --burst`` until the queue is empty; return its log.

    The worker must exit 0 by itself: ``--burst`` means "stop once nothing is due".
    """
    proc = run([*liteq_command(), *args, "--burst"], cwd=cwd, timeout=timeout)
    return proc.stdout + proc.stderr


class LiveProcess:
    """A long-running command (a worker, a beat, a web server) with its output in a file."""

    def __init__(
        self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None
    ) -> None:
        self.args = list(args)
        self.log_path = (
            cwd / f".{Path(self.args[0]).name}-{os.getpid()}-{id(self):x}.log"
        )
        self._log = open(self.log_path, "wb")  # closed in stop() or kill()
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            env=env or program_env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.returncode: int | None = None

    def output(self) -> str:
        """Return everything the process printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float = TIMEOUT, count: int = 1) -> str:
        """Wait until ``text`` appeared ``count`` times in the output; return the output.

        Raises:
            AssertionError: the process exited or the deadline passed first.
        """
        deadline = time.monotonic() + timeout
        while True:
            out = self.output()
            if out.count(text) >= count:
                return out
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.args} exited with status {self.proc.returncode} before "
                    f"printing {text!r} (x{count}):\n{self.output()}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{self.args} did not print {text!r} (x{count}) within {timeout}s:\n{out}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 30.0) -> str:
        """Send SIGTERM (a warm shutdown) and wait; return the output.

        Raises:
            AssertionError: the process did not exit within ``timeout`` (it is
                then killed) or exited with a non-zero status.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self._log.close()
                raise AssertionError(
                    f"{self.args} did not exit within {timeout}s of SIGTERM:\n{self.output()}"
                ) from None
        self._log.close()
        self.returncode = self.proc.returncode
        out = self.output()
        assert self.returncode == 0, (
            f"{self.args} exited with status {self.returncode}:\n{out}"
        )
        return out

    def kill(self) -> None:
        """Kill the process if it still runs (cleanup after a failed test)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextmanager
def live(
    args: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> Iterator[LiveProcess]:
    """Run a long-running command for the duration of the block; the block stops it."""
    process = LiveProcess(args, cwd, env)
    try:
        yield process
    finally:
        process.kill()


@contextmanager
def worker(*args: str, cwd: Path) -> Iterator[LiveProcess]:
    """Run ``liteq <args>`` (a real worker, not in burst mode) during the block.

    The block should end with ``process.stop()`` to check a clean warm shutdown.
    """
    with live([*liteq_command(), *args], cwd) as process:
        yield process


@contextmanager
def imported(folder: Path, module: str) -> Iterator[ModuleType]:
    """Import ``module`` from ``folder`` (the working directory) in this process.

    On exit the modules imported from the folder, the apps they created, the
    working directory and ``sys.path`` are restored, so the next example can
    use the same module names (``tasks``, ``proj``).
    """
    old_cwd = os.getcwd()
    old_path = list(sys.path)
    old_modules = set(sys.modules)
    old_apps = list(_apps)
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(module)
    finally:
        new_apps: list[Liteq] = [a for a in _apps if a not in old_apps]
        for application in new_apps:
            application.close()
            _apps.remove(application)
            while application in _current:
                _current.remove(application)
        with wakeup._wakers_lock:
            for key in [k for k in wakeup._wakers if k.startswith(str(folder))]:
                wakeup._wakers.pop(key).stop()
        for name in set(sys.modules) - old_modules:
            del sys.modules[name]
        sys.path[:] = old_path
        os.chdir(old_cwd)
