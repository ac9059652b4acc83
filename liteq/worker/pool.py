"""Execution pools: where claimed tasks run while the worker does the queue work.

Every pool has the same small surface, used by the worker loop:

* ``idle()`` — slots free to start a task now (a task is only ever handed to
  an idle slot, so a busy slot never holds a task another one could run);
* ``wanted()`` — how many tasks to claim now (``idle()``, or more when the
  prefork pool hands short tasks over in batches);
* ``submit_many(claimed)`` — start those tasks in idle slots;
* ``collect()`` — a :class:`Finished` with what ended since the last call;
* ``terminate(task_id, signum)`` — stop a running task (``revoke(terminate=True)``);
* ``stop()`` / ``kill()`` / ``join()`` — warm and cold shutdown.

This module holds the in-process pools: :class:`SoloPool` (``-P solo``: the
task runs in the worker's own thread) and :class:`ThreadPool` (``-P threads``).
In-process pools cannot kill a task: a soft or hard time limit, or a
terminate request, raises an exception inside the task's thread
(``SoftTimeLimitExceeded``, ``TimeLimitExceeded``, ``TaskRevokedError``), which
takes effect at the task's next Python instruction — not while it is blocked
in a C call such as ``time.sleep`` or a socket read. The prefork pool
(:mod:`.prefork`) is the one that enforces limits strictly.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .. import states
from ..exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from .runner import Limits, prepare, run_task

if TYPE_CHECKING:
    from ..app import Liteq
    from ..execution import Outcome
    from ..storage.broker import Claimed
    from .runner import Report

logger = logging.getLogger("liteq.worker")


@dataclass(frozen=True)
class Interrupted:
    """A task that did not end by itself.

    ``reason`` is ``"worker_lost"`` (its process died), ``"time_limit"`` (it
    was killed at its hard time limit) or ``"terminated"`` (revoked with
    ``terminate=True``).
    """

    claimed: Claimed
    reason: str
    detail: str = ""
    signum: int | None = None


@dataclass
class Finished:
    """What a pool hands back from :meth:`Pool.collect`."""

    #: Tasks that ended, with their outcome (an Outcome, or a Report from a child).
    done: list[tuple[Claimed, Outcome | Report]] = field(default_factory=list)
    #: Tasks that did not end by themselves.
    interrupted: list[Interrupted] = field(default_factory=list)
    #: Tasks handed over but never started (to give back to the queue).
    unstarted: list[Claimed] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.done or self.interrupted or self.unstarted)


class Pool(Protocol):
    """What the worker needs from a pool."""

    kind: str
    concurrency: int

    def start(self) -> None: ...
    def idle(self) -> int: ...
    def wanted(self) -> int: ...
    def running(self) -> int: ...
    def submit_many(self, claimed: list[Claimed]) -> None: ...
    def collect(self) -> Finished: ...
    def wait_objects(self) -> list[Any]: ...
    def next_deadline(self) -> float | None: ...
    def enforce(self, now: float) -> None: ...
    def terminate(self, task_id: str, signum: int) -> bool: ...
    def restart(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def join(self, timeout: float) -> bool: ...
    def fatal(self) -> str | None: ...


def _raise_in_thread(ident: int, exc_type: type[BaseException]) -> bool:
    """Make ``exc_type`` be raised in thread ``ident`` at its next Python instruction."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exc_type)
    )
    return bool(done == 1)


class _Slot:
    """One task running in a thread of this process."""

    __slots__ = ("claimed", "hard", "ident", "killed", "soft", "started", "terminated")

    def __init__(self, claimed: Claimed, ident: int, started: float) -> None:
        self.claimed = claimed
        self.ident = ident
        self.started = started
        self.soft: float | None = None
        self.hard: float | None = None
        self.killed = False
        self.terminated: int | None = None


class _InProcessPool:
    """Shared by the solo and threads pools: limits and terminate by async exceptions."""

    kind = "solo"

    def __init__(
        self,
        app: Liteq,
        hostname: str,
        concurrency: int,
        autoimport: bool = True,
        limits: Limits | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.hostname = hostname
        self.concurrency = concurrency
        self.autoimport = autoimport
        self.limits = limits or Limits()
        self._wake = wake or (lambda: None)
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._done: list[tuple[Claimed, Outcome | Report]] = []

    # -- running one task in the calling thread -----------------------------------
    def _run(self, claimed: Claimed) -> None:
        from ..execution import end_claimed

        message, limits = prepare(self.app, claimed, self.autoimport, self.limits)
        now = time.monotonic()
        slot = _Slot(claimed, threading.get_ident(), now)
        slot.soft = now + limits.soft if limits.soft is not None else None
        slot.hard = now + limits.hard if limits.hard is not None else None
        with self._lock:
            self._slots[claimed.task_id] = slot
        try:
            outcome = run_task(
                self.app, claimed, message, self.hostname, self.autoimport
            )
        finally:
            with self._lock:
                self._slots.pop(claimed.task_id, None)
        if slot.terminated is not None:
            outcome = end_claimed(
                self.app,
                claimed,
                TaskRevokedError(f"terminated (signal {slot.terminated})"),
                states.REVOKED,
                hostname=self.hostname,
            )
        with self._lock:
            self._done.append((claimed, outcome))
        self._wake()

    # -- the pool surface ---------------------------------------------------------
    def idle(self) -> int:
        """Slots free to start a task now."""
        raise NotImplementedError

    def submit(self, claimed: Claimed) -> None:
        """Start ``claimed`` in an idle slot."""
        raise NotImplementedError

    def wanted(self) -> int:
        """How many tasks to claim now: one per idle slot."""
        return self.idle()

    def submit_many(self, claimed: list[Claimed]) -> None:
        """Start each of ``claimed`` in an idle slot."""
        for task in claimed:
            self.submit(task)

    def start(self) -> None:
        """Nothing to start for the solo pool."""
        from .. import signals

        signals.worker_process_init.send(sender=None)

    def running(self) -> int:
        """Tasks running now."""
        with self._lock:
            return len(self._slots)

    def collect(self) -> Finished:
        """Return (and forget) the tasks that ended."""
        with self._lock:
            done, self._done = self._done, []
        return Finished(done=done)

    def wait_objects(self) -> list[Any]:
        """Nothing to wait on: threads wake the worker themselves."""
        return []

    def next_deadline(self) -> float | None:
        """The next soft or hard deadline (monotonic), or None."""
        with self._lock:
            times = [
                t
                for s in self._slots.values()
                for t in (s.soft, None if s.killed else s.hard)
                if t is not None
            ]
        return min(times) if times else None

    def enforce(self, now: float) -> None:
        """Raise the time-limit exceptions of tasks past their deadlines."""
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            if slot.soft is not None and slot.soft <= now:
                slot.soft = None
                _raise_in_thread(slot.ident, SoftTimeLimitExceeded)
            elif slot.hard is not None and slot.hard <= now and not slot.killed:
                slot.killed = True
                logger.error(
                    "Hard time limit exceeded for %s[%s]; a %s pool cannot kill it, "
                    "raising TimeLimitExceeded in its thread",
                    slot.claimed.name,
                    slot.claimed.task_id,
                    self.kind,
                )
                _raise_in_thread(slot.ident, TimeLimitExceeded)

    def terminate(self, task_id: str, signum: int) -> bool:
        """Raise TaskRevokedError in the thread running ``task_id``; True if it runs here."""
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is None or slot.terminated is not None:
                return slot is not None
            slot.terminated = signum
        return _raise_in_thread(slot.ident, TaskRevokedError)

    def restart(self) -> None:
        """In-process pools cannot reload code; the worker restarts in place instead."""

    def stop(self) -> None:
        """Nothing to stop."""

    def kill(self) -> None:
        """Cannot kill threads; running tasks finish on their own."""

    def join(self, timeout: float) -> bool:
        """Return True when nothing runs any more."""
        return self.running() == 0

    def fatal(self) -> str | None:
        """In-process pools cannot fail to start."""
        return None


class SoloPool(_InProcessPool):
    """Runs each task in the worker's own thread, one at a time (``-P solo``)."""

    kind = "solo"

    def __init__(self, app: Liteq, hostname: str, **kwargs: Any) -> None:
        kwargs.pop("concurrency", None)
        kwargs.pop("wake", None)
        super().__init__(app, hostname, 1, **kwargs)
        self._busy = False

    def idle(self) -> int:
        """One slot, free between tasks."""
        return 0 if self._busy else 1

    def submit(self, claimed: Claimed) -> None:
        """Run ``claimed`` now, in this thread."""
        self._busy = True
        try:
            self._run(claimed)
        finally:
            self._busy = False


class ThreadPool(_InProcessPool):
    """Runs tasks in ``concurrency`` threads of the worker process (``-P threads``)."""

    kind = "threads"

    def __init__(
        self, app: Liteq, hostname: str, concurrency: int, **kwargs: Any
    ) -> None:
        super().__init__(app, hostname, concurrency, **kwargs)
        self._queue: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._handed = 0

    def start(self) -> None:
        """Start the threads."""
        for i in range(self.concurrency):
            thread = threading.Thread(
                target=self._loop, name=f"PoolThread-{i + 1}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self) -> None:
        while True:
            claimed = self._queue.get()
            if claimed is None:
                return
            self._run(claimed)

    def idle(self) -> int:
        """Threads whose last task was collected."""
        with self._lock:
            return self.concurrency - self._handed

    def running(self) -> int:
        """Tasks handed to the threads and not collected yet."""
        with self._lock:
            return self._handed

    def collect(self) -> Finished:
        """Return (and forget) the tasks that ended; their threads count as idle again."""
        with self._lock:
            done, self._done = self._done, []
            self._handed -= len(done)
        return Finished(done=done)

    def submit(self, claimed: Claimed) -> None:
        """Hand ``claimed`` to an idle thread."""
        with self._lock:
            self._handed += 1
        self._queue.put(claimed)

    def stop(self) -> None:
        """Let each thread end after its current task."""
        for _ in self._threads:
            self._queue.put(None)

    def join(self, timeout: float) -> bool:
        """Wait for the threads to end; True if they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
