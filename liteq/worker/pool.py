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
task runs in the worker's own thread) and :class:`ThreadPool` (``-P threads``),
and the rule every pool uses to hand short tasks over in batches
(:class:`ShortTasks`): once the recent tasks nearly all ran in under
:data:`FAST_TASK` seconds, an idle slot gets up to :data:`BATCH` tasks at once,
so that a claim and an ack (one transaction each) serve many tasks. In a
batch, the tasks that have not started are given back to the queue once the
running one has run for :data:`STEAL_AFTER` seconds, or once the batch has
run that long in an in-process pool.

In-process pools cannot kill a task: a soft or hard time limit, or a
terminate request, raises an exception inside the task's thread
(``SoftTimeLimitExceeded``, ``TimeLimitExceeded``, ``TaskRevokedError``), which
takes effect at the task's next Python instruction — not while it is blocked
in a C call such as ``time.sleep`` or a socket read. Such an exception is
raised only while its task is registered, and one that takes effect after the
task has ended is cancelled or absorbed: it never reaches the pool's own code
or the thread's next task. The prefork pool (:mod:`.prefork`) is the one that
enforces limits strictly.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .. import states
from ..exceptions import SoftTimeLimitExceeded, TaskRevokedError, TimeLimitExceeded
from .runner import Limits, failed_outcome, prepare, run_task, store_completion

if TYPE_CHECKING:
    from ..app import Liteq
    from ..execution import Outcome
    from ..storage import Completion
    from ..storage.broker import Claimed
    from .handoff import Handoffs
    from .runner import Report

logger = logging.getLogger("liteq.worker")

#: A task faster than this (seconds) counts as short.
FAST_TASK = 0.001
#: Score at which idle slots get batches: each short task adds one (up to
#: twice this), each longer one takes :data:`SLOW_PENALTY` off. So batching
#: starts after this many short tasks in a row and survives the odd task that
#: a busy machine slowed down, but not a mix with more than ~1 in 9 long ones.
FAST_STREAK = 16
#: What a task of :data:`FAST_TASK` or longer takes off the score.
SLOW_PENALTY = 8
#: Most tasks handed to a slot at once.
BATCH = 64
#: Seconds a batch's task may run before the tasks behind it are given back.
STEAL_AFTER = 0.1
#: In-process pools judge a task that took less than this (seconds) by the
#: CPU time of its thread: its wall time also counts the waits for the GIL
#: that the other threads held, up to ``sys.getswitchinterval()`` (5 ms) each.
GIL_WAITS = 0.01


class ShortTasks:
    """Whether recent tasks were short enough for idle slots to take batches."""

    __slots__ = ("score",)

    def __init__(self) -> None:
        self.score = 0

    def per_slot(self) -> int:
        """Return how many tasks an idle slot takes now: :data:`BATCH` or 1."""
        return BATCH if self.score >= FAST_STREAK else 1

    def ran(self, runtime: float) -> None:
        """Count a task that ran ``runtime`` seconds."""
        if runtime < FAST_TASK:
            if self.score < 2 * FAST_STREAK:
                self.score += 1
        else:
            self.score = max(0, self.score - SLOW_PENALTY)


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
    #: It started in a pool process, which may have acked it before it died
    #: (a lone task, or one stored before its end hooks).
    self_acked: bool = False
    #: An error to log if the task turns out lost (not acked by its process).
    lost_message: str = ""


@dataclass
class Finished:
    """What a pool hands back from :meth:`Pool.collect`."""

    #: Tasks that ended, with their outcome (an Outcome, or a Report from a child).
    done: list[tuple[Claimed, Outcome | Report]] = field(default_factory=list)
    #: Tasks that did not end by themselves.
    interrupted: list[Interrupted] = field(default_factory=list)
    #: Tasks handed over but never started (to give back to the queue).
    unstarted: list[Claimed] = field(default_factory=list)
    #: Tasks that ended and that the pool slot acked itself (a lone task in a
    #: pool process, or a task stored before its end hooks), to count and log
    #: only: their outcome's ``acked`` tells whether the ack applied.
    acked: list[tuple[Claimed, Outcome | Report]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.done or self.interrupted or self.unstarted or self.acked)


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


#: What time limits and terminate requests raise in a task's thread. Each is
#: raised at most once per task, so at most three ever reach one task.
_THROWN = (SoftTimeLimitExceeded, TimeLimitExceeded, TaskRevokedError)


def _raise_in_thread(ident: int, exc_type: type[BaseException] | None) -> bool:
    """Make ``exc_type`` be raised in thread ``ident`` at its next Python instruction.

    With ``None``, cancel the exception raised there that has not taken effect yet.
    """
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), None if exc_type is None else ctypes.py_object(exc_type)
    )
    return bool(done == 1)


class _Slot:
    """One task running in a thread of this process."""

    __slots__ = (
        "claimed",
        "hard",
        "ident",
        "killed",
        "outcome",
        "soft",
        "started",
        "terminated",
        "thrown",
    )

    def __init__(self, claimed: Claimed, ident: int, started: float) -> None:
        self.claimed = claimed
        self.ident = ident
        self.started = started
        self.soft: float | None = None
        self.hard: float | None = None
        self.killed = False
        self.terminated: int | None = None
        #: An exception was raised in the task's thread.
        self.thrown = False
        self.outcome: Outcome | None = None


class _Batch:
    """Tasks handed to one slot, run in order; those not started can be taken back."""

    __slots__ = ("began", "marked", "running", "since", "slot", "waiting")

    def __init__(self, tasks: Iterable[Claimed], now: float) -> None:
        self.waiting: deque[Claimed] = deque(tasks)
        #: When the batch was handed over, and when its running task started.
        self.began = now
        self.since = now
        self.running = False
        #: The batch file it took (see :mod:`.handoff`), if any, and, when the
        #: batch is recorded there, each task's place in it (by row id): a
        #: task starting marks every one up to its place as started.
        self.slot: int | None = None
        self.marked: dict[int, int] | None = None


class _InProcessPool:
    """Shared by the solo and threads pools: batches, limits and terminate by async exceptions."""

    kind = "solo"

    def __init__(
        self,
        app: Liteq,
        hostname: str,
        concurrency: int,
        autoimport: bool = True,
        limits: Limits | None = None,
        wake: Callable[[], None] | None = None,
        halted: Callable[[], bool] | None = None,
        handoffs: Handoffs | None = None,
    ) -> None:
        self.app = app
        self.hostname = hostname
        self.concurrency = concurrency
        self.autoimport = autoimport
        self.limits = limits or Limits()
        self._wake = wake or (lambda: None)
        #: True once the worker is asked to stop: batches start no more tasks.
        self._halted = halted or (lambda: False)
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._batches: list[_Batch] = []
        self._short = ShortTasks()
        #: Tasks handed over and not collected yet.
        self._handed = 0
        self._done: list[tuple[Claimed, Outcome | Report]] = []
        self._unstarted: list[Claimed] = []
        self._interrupted: list[Interrupted] = []
        self._acked: list[tuple[Claimed, Outcome | Report]] = []
        #: Where batches are recorded, with a file per slot free to take one.
        self._handoffs = handoffs
        self._free_files = list(range(concurrency))

    # -- running tasks in the calling thread -----------------------------------------
    def _run(self, claimed: Claimed) -> None:
        from ..execution import end_claimed

        try:
            message, limits = prepare(self.app, claimed, self.autoimport, self.limits)
        except Exception as exc:  # noqa: BLE001 - e.g. a time limit that is no number
            failed = failed_outcome(self.app, claimed, exc, self.hostname)
            with self._lock:
                self._done.append((claimed, failed))
            return
        cpu = time.thread_time()
        now = time.monotonic()
        slot = _Slot(claimed, threading.get_ident(), now)
        slot.soft = now + limits.soft if limits.soft is not None else None
        slot.hard = now + limits.hard if limits.hard is not None else None
        # Exceptions are raised in this thread only while the slot is
        # registered, but take effect at the thread's next instruction: the
        # task may have ended by then. Each level catches one that lands
        # outside the task's own handling (or in the level inside it), keeps
        # the task's outcome if it has one and unregisters the slot; three
        # levels, as at most three are ever raised at a task.
        try:
            try:
                try:
                    with self._lock:
                        self._slots[claimed.task_id] = slot
                    slot.outcome = run_task(
                        self.app,
                        claimed,
                        message,
                        self.hostname,
                        self.autoimport,
                        self._store,
                    )
                    self._unregister(slot)
                except _THROWN as exc:
                    self._settle(slot, exc)
            except _THROWN as exc:
                self._settle(slot, exc)
        except _THROWN as exc:
            self._settle(slot, exc)
        outcome = slot.outcome
        assert outcome is not None
        runtime = time.monotonic() - now
        if runtime < GIL_WAITS:
            runtime = time.thread_time() - cpu
        if slot.terminated is not None:
            outcome = end_claimed(
                self.app,
                claimed,
                TaskRevokedError(f"terminated (signal {slot.terminated})"),
                states.REVOKED,
                hostname=self.hostname,
            )
        with self._lock:
            if outcome.acked is None:
                self._done.append((claimed, outcome))
            else:
                self._acked.append((claimed, outcome))
            self._short.ran(runtime)

    def _store(self, completion: Completion) -> bool | None:
        """Apply a task's completion from its slot, before the task's end hooks."""
        return store_completion(self.app, completion)

    def _run_batch(self, batch: _Batch) -> None:
        """Run the batch's tasks in order, in the calling thread, then wake the worker.

        The rest of the batch goes back to the queue once it has run for
        :data:`STEAL_AFTER` seconds, so that slower tasks than expected
        neither hold up other work nor keep finished results unstored, and
        as soon as the worker is asked to stop.
        """
        try:
            while True:
                with self._lock:
                    waiting = batch.waiting
                    if not waiting:
                        break
                    now = time.monotonic()
                    if batch.running and (
                        now - batch.began >= STEAL_AFTER or self._halted()
                    ):
                        self._take_back(batch)
                        break
                    claimed = waiting.popleft()
                    batch.running = True
                    batch.since = now
                if batch.marked is not None and not self._mark(
                    batch, batch.marked[claimed.id] + 1
                ):
                    with self._lock:
                        waiting.appendleft(claimed)  # given back below
                    break
                self._run(claimed)
        finally:
            with self._lock:
                # Normally empty; after an error here, what did not start goes back.
                self._take_back(batch)
                self._batches.remove(batch)
                if batch.slot is not None:
                    self._free_files.append(batch.slot)
            self._wake()

    def _unregister(self, slot: _Slot) -> None:
        """Forget ``slot``: nothing is raised at it any more, nor still pending."""
        with self._lock:
            self._slots.pop(slot.claimed.task_id, None)
            if slot.thrown:
                _raise_in_thread(slot.ident, None)

    def _settle(self, slot: _Slot, exc: BaseException) -> None:
        """Unregister ``slot`` after ``exc`` landed outside the task's own handling.

        The task keeps its outcome if it had finished; otherwise ``exc`` is its
        failure (or its revocation, when it was terminated).
        """
        if slot.outcome is None:
            slot.outcome = failed_outcome(self.app, slot.claimed, exc, self.hostname)
        self._unregister(slot)

    def _throw(self, slot: _Slot, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` in the thread of registered ``slot`` (call with the lock held)."""
        slot.thrown = True
        return _raise_in_thread(slot.ident, exc_type)

    def _open(self, tasks: list[Claimed]) -> _Batch:
        """Register a batch of ``tasks`` handed to a slot (call with the lock held)."""
        batch = _Batch(tasks, time.monotonic())
        self._batches.append(batch)
        self._handed += len(tasks)
        handoffs = self._handoffs
        if handoffs is not None and len(tasks) > 1 and self._free_files:
            batch.slot = self._free_files.pop()
            if handoffs.hand(batch.slot, tasks):
                batch.marked = {task.id: i for i, task in enumerate(tasks)}
        return batch

    def _mark(self, batch: _Batch, count: int) -> bool:
        """Record the batch's first ``count`` tasks as started; False: do not start."""
        assert self._handoffs is not None and batch.slot is not None
        return self._handoffs.started(batch.slot, count)

    def _take_back(self, batch: _Batch) -> None:
        """Give the batch's tasks that have not started back (call with the lock held)."""
        if batch.waiting:
            self._unstarted.extend(batch.waiting)
            batch.waiting.clear()

    # -- the pool surface ---------------------------------------------------------
    def idle(self) -> int:
        """Slots free to start a task now."""
        with self._lock:
            return self.concurrency - len(self._batches)

    def wanted(self) -> int:
        """How many tasks to claim now: one per idle slot, or a batch each when tasks are short."""
        idle = self.idle()
        return idle * self._short.per_slot() if idle > 0 else 0

    def submit_many(self, claimed: list[Claimed]) -> None:
        """Start ``claimed`` in idle slots, shared out in order."""
        raise NotImplementedError

    def start(self) -> None:
        """Nothing to start for the solo pool."""
        from .. import signals

        signals.worker_process_init.send(sender=None)

    def running(self) -> int:
        """Tasks handed over and not collected yet (running, waiting or finished)."""
        with self._lock:
            return self._handed

    def collect(self) -> Finished:
        """Return (and forget) what ended and what was given back since the last call."""
        with self._lock:
            done, self._done = self._done, []
            unstarted, self._unstarted = self._unstarted, []
            interrupted, self._interrupted = self._interrupted, []
            acked, self._acked = self._acked, []
            self._handed -= len(done) + len(unstarted) + len(interrupted) + len(acked)
        return Finished(
            done=done, interrupted=interrupted, unstarted=unstarted, acked=acked
        )

    def wait_objects(self) -> list[Any]:
        """Nothing to wait on: threads wake the worker themselves."""
        return []

    def next_deadline(self) -> float | None:
        """The next soft or hard deadline or batch check (monotonic), or None."""
        with self._lock:
            times = [
                t
                for s in self._slots.values()
                for t in (s.soft, None if s.killed else s.hard)
                if t is not None
            ]
            times.extend(
                b.since + STEAL_AFTER for b in self._batches if b.running and b.waiting
            )
        return min(times) if times else None

    def enforce(self, now: float) -> None:
        """Raise time-limit exceptions past deadlines; take back work behind a slow task."""
        killed = []
        stuck = False
        with self._lock:
            for batch in self._batches:
                if batch.running and batch.waiting and now - batch.since > STEAL_AFTER:
                    self._take_back(batch)
                    stuck = True
            # Under the lock: a slot is only ever hit while it is registered.
            for slot in self._slots.values():
                if slot.soft is not None and slot.soft <= now:
                    slot.soft = None
                    self._throw(slot, SoftTimeLimitExceeded)
                elif slot.hard is not None and slot.hard <= now and not slot.killed:
                    slot.killed = True
                    self._throw(slot, TimeLimitExceeded)
                    killed.append(slot.claimed)
        if stuck:
            self._wake()
        for claimed in killed:
            logger.error(
                "Hard time limit exceeded for %s[%s]; a %s pool cannot kill it, "
                "raising TimeLimitExceeded in its thread",
                claimed.name,
                claimed.task_id,
                self.kind,
            )

    def terminate(self, task_id: str, signum: int) -> bool:
        """Stop task ``task_id``; True if it runs or waits here.

        A running task gets TaskRevokedError raised in its thread; one that
        waits in a batch is dropped and ends REVOKED without running.
        """
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is None:
                dropped = self._drop_waiting(task_id, signum)
            elif slot.terminated is not None:
                return True
            else:
                slot.terminated = signum
                return self._throw(slot, TaskRevokedError)
        if dropped:
            self._wake()  # the worker records it REVOKED now, not after the batch
        return dropped

    def _drop_waiting(self, task_id: str, signum: int) -> bool:
        """Take ``task_id`` out of its batch as terminated (call with the lock held)."""
        for batch in self._batches:
            for claimed in batch.waiting:
                if claimed.task_id == task_id:
                    batch.waiting.remove(claimed)
                    self._interrupted.append(
                        Interrupted(claimed, "terminated", "before it started", signum)
                    )
                    return True
        return False

    def restart(self) -> None:
        """In-process pools cannot reload code; the worker restarts in place instead."""

    def stop(self) -> None:
        """Warm: running tasks finish; tasks waiting in batches are given back."""
        with self._lock:
            for batch in self._batches:
                self._take_back(batch)

    def kill(self) -> None:
        """Cold: threads cannot be killed; running tasks finish, waiting ones are given back."""
        self.stop()

    def join(self, timeout: float) -> bool:
        """Return True when nothing runs any more."""
        with self._lock:
            return not self._slots and not self._batches

    def fatal(self) -> str | None:
        """In-process pools cannot fail to start."""
        return None


class SoloPool(_InProcessPool):
    """Runs tasks in the worker's own thread, one at a time (``-P solo``)."""

    kind = "solo"

    def __init__(self, app: Liteq, hostname: str, **kwargs: Any) -> None:
        kwargs.pop("concurrency", None)
        kwargs.pop("wake", None)
        super().__init__(app, hostname, 1, **kwargs)

    def submit_many(self, claimed: list[Claimed]) -> None:
        """Run ``claimed`` now, in this thread, in order (the rest may be given back)."""
        if claimed:
            with self._lock:
                batch = self._open(claimed)
            self._run_batch(batch)


class ThreadPool(_InProcessPool):
    """Runs tasks in ``concurrency`` threads of the worker process (``-P threads``)."""

    kind = "threads"

    def __init__(
        self, app: Liteq, hostname: str, concurrency: int, **kwargs: Any
    ) -> None:
        super().__init__(app, hostname, concurrency, **kwargs)
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

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
            batch = self._queue.get()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except Exception:  # a pool thread must outlive any error
                logger.exception(
                    "error in pool thread %s", threading.current_thread().name
                )

    def submit_many(self, claimed: list[Claimed]) -> None:
        """Share ``claimed`` out in order among as many idle threads as it needs."""
        if not claimed:
            return
        with self._lock:
            slots = max(1, min(self.concurrency - len(self._batches), len(claimed)))
            batches = [self._open(claimed[i::slots]) for i in range(slots)]
        for batch in batches:
            self._queue.put(batch)

    def stop(self) -> None:
        """Warm: each thread ends after its running task; waiting tasks are given back."""
        super().stop()
        for _ in self._threads:
            self._queue.put(None)

    def join(self, timeout: float) -> bool:
        """Wait for the threads to end; True if they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
