"""Process bookkeeping: start child processes, measure their trees, stop them.

Every pid the harness starts is recorded in a :class:`ProcessRegistry`, and
stopped by pid (SIGTERM, then SIGKILL after a grace period) when the run ends,
including on Ctrl-C and on exceptions. Descendants of a worker (prefork
children, RQ work horses...) are collected before the worker is signalled so
that orphans can be stopped by pid as well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:
    import psutil
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "the benchmark driver needs psutil: install it in the interpreter that "
        "runs `python -m benchmarks` (pip install psutil)"
    ) from exc


class DeadlineExceeded(RuntimeError):
    """A polling loop did not reach its condition before its deadline."""


def poll_until(
    probe: Callable[[], Any],
    done: Callable[[Any], bool],
    *,
    timeout: float,
    interval: float = 0.05,
    what: str = "condition",
    on_value: Callable[[float, Any], None] | None = None,
    alive: Callable[[], str | None] | None = None,
) -> tuple[float, Any]:
    """Call ``probe`` every ``interval`` s until ``done(value)`` or ``timeout``.

    Returns ``(monotonic time of the successful probe, value)``. ``on_value``
    sees every ``(timestamp, value)`` pair; ``alive`` may return an error text
    (e.g. "worker exited with status 1") to abort early.
    """
    deadline = time.monotonic() + timeout
    value: Any = None
    while True:
        value = probe()
        now = time.monotonic()
        if on_value is not None:
            on_value(now, value)
        if done(value):
            return now, value
        if alive is not None:
            problem = alive()
            if problem:
                raise RuntimeError(f"while waiting for {what}: {problem}")
        if now >= deadline:
            raise DeadlineExceeded(
                f"{what} not reached within {timeout:.0f} s (last value: {value!r})"
            )
        time.sleep(interval)


def tree(pid: int) -> list[psutil.Process]:
    """Return the process ``pid`` and all its live descendants."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of every process in the tree of ``pid``."""
    out: dict[int, float] = {}
    for proc in tree(pid):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[proc.pid] = times.user + times.system
    return out


def tree_rss(pid: int) -> int:
    """Summed resident set size (bytes) of the tree of ``pid``."""
    total = 0
    for proc in tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def tree_cpu_total(pid: int) -> float:
    """CPU seconds of the tree of ``pid``, reaped children included.

    Time of a child that exits and is reaped inside the tree moves to its
    parent's ``children_*`` fields, so deltas of this sum stay meaningful
    while clients and work horses come and go.
    """
    total = 0.0
    for proc in tree(pid):
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, steal included)."""
    t = psutil.cpu_times()
    return sum(
        getattr(t, field, 0.0)
        for field in ("user", "nice", "system", "irq", "softirq", "steal")
    )


class BackgroundLoad:
    """CPU used by processes outside this process' tree, in % of the machine.

    The benchmark's own processes (workers, clients, Redis) are all in the
    tree of the driver; whatever else ran on the machine during the ``with``
    block shows up in :attr:`other_pct`.
    """

    def __init__(self, root: int | None = None) -> None:
        self.root = os.getpid() if root is None else root
        self.other_pct = 0.0

    def __enter__(self) -> BackgroundLoad:
        self._t0 = time.monotonic()
        self._busy0 = machine_busy_seconds()
        self._ours0 = tree_cpu_total(self.root)
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self._t0
        busy = machine_busy_seconds() - self._busy0
        ours = tree_cpu_total(self.root) - self._ours0
        capacity = elapsed * (psutil.cpu_count() or 1)
        self.other_pct = max(0.0, 100.0 * (busy - ours) / capacity) if capacity else 0.0


def wait_quiet(threshold_pct: float, timeout: float, window: float = 1.0) -> float:
    """Wait until other processes use < ``threshold_pct`` of the machine.

    Measures over ``window``-second slices until one is quiet or ``timeout``
    passes; returns the last measurement (% of the machine).
    """
    deadline = time.monotonic() + timeout
    while True:
        with BackgroundLoad() as load:
            time.sleep(window)  # measurement window
        if load.other_pct < threshold_pct or time.monotonic() >= deadline:
            return load.other_pct


class RssSampler:
    """Background thread sampling the summed RSS of a process tree."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class ProcessRegistry:
    """Start processes and remember every pid so they can all be stopped."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: dict[int, str] = {}
        self.logs: dict[int, Path] = {}
        self._popen: dict[int, subprocess.Popen[bytes]] = {}
        self._counter = 0

    def start(
        self,
        argv: Sequence[str],
        *,
        name: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process; output goes to a log file."""
        self._counter += 1
        log_path = self.log_dir / f"{self._counter:03d}-{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.logs[proc.pid] = log_path
        self.started[proc.pid] = name
        self._popen[proc.pid] = proc
        return proc

    def run(
        self,
        argv: Sequence[str],
        *,
        name: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 600.0,
    ) -> str:
        """Run a short-lived process to completion and return its stdout.

        Raises RuntimeError with the tail of stderr if it fails or times out.
        """
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.started[proc.pid] = name
        self._popen[proc.pid] = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc.pid)
            raise RuntimeError(
                f"{name} did not finish within {timeout:.0f} s"
            ) from None
        finally:
            if proc.returncode is not None:
                self._forget(proc.pid)
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-15:]
            raise RuntimeError(
                f"{name} exited with status {proc.returncode}:\n  " + "\n  ".join(tail)
            )
        return out.decode()

    def problem(self, proc: subprocess.Popen[bytes]) -> str | None:
        """Error text (with the log's tail) if a started process has exited."""
        return describe_exit(proc, self.logs.get(proc.pid))

    def _forget(self, pid: int) -> None:
        self.started.pop(pid, None)
        self._popen.pop(pid, None)

    def stop(self, pid: int, grace: float = 10.0) -> int | None:
        """SIGTERM ``pid`` (and any descendants left behind), then SIGKILL.

        Returns the exit status of ``pid`` when it was our child.
        """
        family = [p.pid for p in tree(pid)[1:]]
        popen = self._popen.get(pid)
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _alive(pid, popen) and not any(_alive(p) for p in family):
                break
            time.sleep(0.05)
        for p in [pid, *family]:
            if _alive(p, popen if p == pid else None):
                _signal(p, signal.SIGKILL)
        _reap(family)
        status = None
        if popen is not None:
            try:
                status = popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._forget(pid)
        return status

    def stop_all(self) -> None:
        """Stop every process still recorded, newest first."""
        for pid in sorted(self.started, reverse=True):
            self.stop(pid)


def become_subreaper() -> bool:
    """Adopt orphaned descendants instead of init (Linux ``PR_SET_CHILD_SUBREAPER``).

    A worker's grandchildren (forkserver, pool processes) that outlive their
    parent during shutdown are then reparented to the driver, which reaps
    them, so their CPU time lands in the driver's ``children_*`` times and is
    not mistaken for another process' load. Returns False where unsupported.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(36, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _reap(pids: Sequence[int], timeout: float = 5.0) -> None:
    """Reap those of ``pids`` that were reparented to this process."""
    deadline = time.monotonic() + timeout
    pending = list(pids)
    while pending and time.monotonic() < deadline:
        still = []
        for p in pending:
            try:
                done, _ = os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                continue  # not our child: its own parent reaps it
            if done == 0:
                still.append(p)
        pending = still
        if pending:
            time.sleep(0.02)


def _alive(pid: int, popen: subprocess.Popen[bytes] | None = None) -> bool:
    if popen is not None:
        return popen.poll() is None
    try:
        proc = psutil.Process(pid)
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def describe_exit(proc: subprocess.Popen[bytes], log_path: Path | None) -> str | None:
    """Return an error text when ``proc`` has exited, with its log's tail."""
    status = proc.poll()
    if status is None:
        return None
    tail = ""
    if log_path is not None and log_path.exists():
        lines = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        tail = "\n  " + "\n  ".join(lines)
    return f"process {proc.pid} exited with status {status}{tail}"
