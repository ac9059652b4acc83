"""Running ``liteq`` in real subprocesses for the command-line integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path

#: Seconds a test waits for a worker to finish on its own.
EXIT_TIMEOUT = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without ``LITEQ_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LITEQ_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def liteq_cmd(*args: str) -> list[str]:
    """``python -m liteq ARGS`` with the interpreter running the tests."""
    return [sys.executable, "-m", "liteq", *args]


def console_script() -> str:
    """The installed ``liteq`` console script next to this interpreter."""
    path = Path(sys.executable).parent / "liteq"
    assert path.exists(), f"console script missing: {path}"
    return str(path)


def run(
    cmd: Sequence[str], cwd: Path, timeout: float = EXIT_TIMEOUT, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and return its output."""
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write(directory: Path, relpath: str, text: str) -> Path:
    """Write a source file under ``directory``."""
    path = directory / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


class Proc:
    """A background ``liteq`` process whose combined output is collected."""

    def __init__(self, cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._chunks: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self._chunks.append(line)

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self._chunks)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        code = self.popen.wait(timeout)
        self._reader.join(5)
        return code

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill_all(self) -> None:
        """Stop the process and everything it started (its process group)."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.poll() is None:
            self.popen.wait(5)
        self._reader.join(5)


class Procs:
    """Starts background processes and kills every one of them on exit."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, cmd: Sequence[str], cwd: Path, **env: str) -> Proc:
        proc = Proc(cmd, cwd, clean_env(**env))
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill_all()
