"""The prefork pool: child processes run tasks, the parent does the queue work.

Children are started with ``forkserver`` (Linux) or ``spawn``, never with a
plain ``fork`` of the worker, which holds open database connections. A
child gets work only when it is idle. Usually that is one task; once the
recent tasks nearly all ran in under :data:`~.pool.FAST_TASK` seconds, an idle child gets a
small batch instead (up to :data:`~.pool.BATCH` tasks), so that short tasks cost one
message each way per batch rather than per task. A batch never holds up
other work for long: when a task of a batch runs past :data:`~.pool.STEAL_AFTER`
seconds, the tasks behind it that have not started are taken back and
returned to the queue for any idle slot.

The parent knows which task each child runs, and its hard deadline, from
memory they share. It notices a child's death at once (the child's sentinel
is in the worker's ``poll``), reads what the child managed to send, reports
the tasks that had started as :class:`~.pool.Interrupted` and those that had
not as unstarted, and starts a new child. It kills a child whose task passes
its hard time limit. Cancelling tasks not started yet and
``revoke(terminate=True)`` go to a second thread in the child, which answers
exactly even while a task runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from .child import DEADLINE, LIMIT, RUNNING, SHARED_SIZE, STARTED, child_main
from .frames import FrameReader
from .pool import STEAL_AFTER, Finished, Interrupted, ShortTasks

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from ..storage.broker import Claimed
    from .child import ChildSpec
    from .handoff import Handoffs
    from .runner import Report

logger = logging.getLogger("liteq.worker")

#: Seconds to wait before starting a child again after one died while starting.
RESPAWN_BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Children dying before they are ready, in a row, that make the pool give up.
MAX_START_FAILURES = 3
#: Seconds after which a terminate request the child did not act on is
#: carried out by the parent itself (the task may hold the GIL in C code).
TERMINATE_ESCALATE = 2.0


def default_start_method() -> str:
    """``forkserver`` where it exists (Linux, BSD), else ``spawn``."""
    if (
        sys.platform != "darwin"
        and "forkserver" in multiprocessing.get_all_start_methods()
    ):
        return "forkserver"
    return "spawn"


def _exit_text(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class _Child:
    """The parent's view of one child process."""

    def __init__(
        self,
        index: int,
        process: BaseProcess,
        conn: Connection,
        control: Connection,
        values: Any,
    ) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.reader = FrameReader(conn.fileno())
        self.control = control
        self.values = values
        self.pid = process.pid or 0
        self.ready = False
        self.retiring = False
        #: A batch was sent and its end not reported yet.
        self.batch_open = False
        self.tasks = 0
        #: Tasks handed over and not reported, by sequence number (in order).
        self.inflight: dict[int, Claimed] = {}
        #: ``(reason, seq, signum)`` when the parent killed it.
        self.doomed: tuple[str, int, int] | None = None
        #: Tasks asked not to start, until the child answers.
        self.cancelling: set[int] = set()
        #: Terminate requests sent: ``seq -> (signum, when)``.
        self.terminating: dict[int, tuple[int, float]] = {}
        self.error: str | None = None
        #: It marks the tasks of recorded batches (see :mod:`.handoff`).
        self.marks = False

    def send(self, obj: object, control: bool = False) -> bool:
        conn = self.control if control else self.conn
        try:
            conn.send_bytes(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))
        except (OSError, ValueError):
            return False
        return True

    def idle(self) -> bool:
        return self.ready and not self.retiring and not self.batch_open


class PreforkPool:
    """``concurrency`` child processes running the tasks the worker claims.

    Args:
        spec: What every child needs (picklable).
        concurrency: Number of children.
        start_method: ``"forkserver"`` or ``"spawn"`` (``"fork"`` is refused).
        max_tasks_per_child: Replace a child after this many tasks.
    """

    kind = "prefork"

    def __init__(
        self,
        spec: ChildSpec,
        concurrency: int,
        start_method: str | None = None,
        max_tasks_per_child: int | None = None,
        handoffs: Handoffs | None = None,
    ) -> None:
        from ..exceptions import ConfigurationError

        method = start_method or default_start_method()
        if method == "fork":
            raise ConfigurationError(
                "the prefork pool does not use the 'fork' start method: a child "
                "forked from the worker would share its database connections; use "
                "'forkserver' or 'spawn'"
            )
        self.spec = spec
        #: Where batches are recorded: a file per child slot (see :mod:`.handoff`).
        self.handoffs = handoffs
        self.concurrency = concurrency
        self.start_method = method
        self.max_tasks = max_tasks_per_child
        self._ctx: Any
        if method == "forkserver":
            # multiprocessing's own fork server also starts a resource
            # tracker process, of no use here (no named semaphores).
            from .forkserver import ForkServerContext

            self._ctx = ForkServerContext()
        else:
            self._ctx = multiprocessing.get_context(method)
        self._children: dict[int, _Child] = {}
        self._by_fd: dict[int, tuple[_Child, bool]] = {}
        self._poll = select.poll()
        self._lock = threading.RLock()
        self._finished = Finished()
        self._seq = itertools.count()
        self._stopping = False
        self._fatal: str | None = None
        self._failures = 0
        self._respawn_at: dict[int, float] = {}
        self._short = ShortTasks()
        #: Pids of every child started (tests check recycling with it).
        self.started_pids: list[int] = []

    # -- children ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the children (they import the app in parallel)."""
        if self.start_method == "forkserver":
            # The fork server imports liteq once; each child then only
            # imports the app and its task modules.
            self._ctx.set_forkserver_preload(["liteq.worker.child"])
        for index in range(self.concurrency):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        control_r, control_w = self._ctx.Pipe(duplex=False)
        values = self._ctx.Array(ctypes.c_double, SHARED_SIZE, lock=False)
        values[RUNNING] = -1.0
        marks = self.handoffs.create(index) if self.handoffs else None
        process = self._ctx.Process(
            target=child_main,
            args=(child_conn, control_r, self.spec, values, marks),
            name=f"PoolWorker-{index + 1}",
            daemon=False,
        )
        process.start()
        child_conn.close()
        control_r.close()
        child = _Child(index, process, parent_conn, control_w, values)
        child.marks = marks is not None
        with self._lock:
            self._children[index] = child
            for fd, is_conn in (
                (parent_conn.fileno(), True),
                (process.sentinel, False),
            ):
                self._by_fd[fd] = (child, is_conn)
                self._poll.register(fd, select.POLLIN)
        self.started_pids.append(child.pid)

    def idle(self) -> int:
        """Children that are ready and have no batch."""
        if self._stopping:
            return 0
        return sum(1 for c in list(self._children.values()) if c.idle())

    def wanted(self) -> int:
        """How many tasks to claim now: one per idle child, or a batch when tasks are short."""
        idle = self.idle()
        if not idle:
            return 0
        per_child = self._short.per_slot()
        if self.max_tasks:
            per_child = min(per_child, self.max_tasks)
        return idle * per_child

    def running(self) -> int:
        """Tasks handed to children and not reported."""
        # Also read by the supervisor thread: iterate over a copy.
        return sum(len(c.inflight) for c in list(self._children.values()))

    def submit_many(self, claimed: list[Claimed], ack_lone: bool = False) -> None:
        """Share ``claimed`` out among the idle children, in order.

        ``ack_lone``: a child that gets a single task acks it itself (the
        worker claimed it from a queue it found empty; see :mod:`.child`).
        """
        with self._lock:
            idle = [c for c in self._children.values() if c.idle()]
            if not idle:
                raise RuntimeError("no idle child")
            batches: list[list[tuple[int, Claimed]]] = [[] for _ in idle]
            for i, task in enumerate(claimed):
                batches[i % len(idle)].append((next(self._seq), task))
            for child, batch in zip(idle, batches, strict=True):
                if batch:
                    self._send_batch(child, batch, ack_lone and len(batch) == 1)

    def _send_batch(
        self, child: _Child, batch: list[tuple[int, Claimed]], ack: bool = False
    ) -> None:
        child.batch_open = True
        for seq, task in batch:
            child.inflight[seq] = task
        child.tasks += len(batch)
        if self.max_tasks and child.tasks >= self.max_tasks:
            child.retiring = True
        marked = False
        if self.handoffs is not None and child.marks and len(batch) > 1:
            marked = self.handoffs.hand(child.index, [task for _, task in batch])
        if not child.send(("run", batch, marked, ack)):
            logger.debug("pool process %s did not take a batch", child.pid)

    def wait_objects(self) -> list[int]:
        """The file descriptors to wait on (pipes and process sentinels)."""
        return list(self._by_fd)

    # -- reading the children ---------------------------------------------------------
    def collect(self) -> Finished:
        """Read every message waiting from the children and reap dead ones."""
        with self._lock:
            if self._by_fd:
                events = self._poll.poll(0)
                reap = []
                for fd, _ in events:
                    entry = self._by_fd.get(fd)
                    if entry is None:
                        continue
                    child, is_conn = entry
                    if is_conn:
                        self._drain(child)
                    else:
                        reap.append(child)
                for child in reap:
                    self._reap(child)
            if self._respawn_at:
                self._respawn_due()
            finished, self._finished = self._finished, Finished()
        return finished

    def _drain(self, child: _Child) -> None:
        try:
            messages = child.reader.read_waiting()
        except OSError:
            return
        for data in messages:
            self._handle(child, pickle.loads(data))

    def _handle(self, child: _Child, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "done":
            self._done(child, msg[1], msg[2], msg[3], msg[4])
        elif kind == "ready":
            child.ready = True
            self._failures = 0
            if child.retiring or self._stopping:
                child.send(("stop",))
        elif kind == "cancelled":
            self._cancelled(child, msg[1], msg[2])
        elif kind == "error":
            child.error = msg[1]

    def _cancelled(self, child: _Child, seqs: list[int], signum: int | None) -> None:
        for seq in seqs:
            child.cancelling.discard(seq)
            task = child.inflight.pop(seq, None)
            if task is None:
                continue
            if signum is None:
                self._finished.unstarted.append(task)
            else:
                self._finished.interrupted.append(
                    Interrupted(task, "terminated", "before it started", signum)
                )

    def _done(
        self,
        child: _Child,
        reports: list[tuple[int, Report]],
        skipped: list[int],
        retire: bool,
        end: bool,
    ) -> None:
        done = self._finished.done
        inflight = child.inflight
        ran = self._short.ran
        for seq, report in reports:
            task = inflight.pop(seq, None)
            if task is None:
                continue
            if report.acked is None:
                done.append((task, report))
            else:
                self._finished.acked.append((task, report))
            ran(report.runtime)
        for seq in skipped:
            task = child.inflight.pop(seq, None)
            if task is not None:
                self._finished.unstarted.append(task)
        if retire:
            child.retiring = True
        if end:
            child.batch_open = False
            if child.retiring and not retire:
                child.send(("stop",))

    def _reap(self, child: _Child) -> None:
        self._drain(child)
        child.process.join(1.0)
        code = child.process.exitcode
        for fd in (child.conn.fileno(), child.process.sentinel):
            self._by_fd.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(fd)
        child.reader.close()
        with contextlib.suppress(OSError):
            child.conn.close()
        with contextlib.suppress(OSError):
            child.control.close()
        with contextlib.suppress(ValueError, AttributeError):
            child.process.close()
        self._children.pop(child.index, None)
        self._account_lost(child, code)
        if child.error is not None:
            self._fatal = child.error
            logger.error("a pool process could not start:\n%s", child.error)
        elif not child.ready and not self._stopping:
            self._failures += 1
            if self._failures >= MAX_START_FAILURES:
                self._fatal = (
                    f"pool processes exit while starting ({_exit_text(code)}, "
                    f"{self._failures} times in a row). If the worker is started from "
                    'a script, put that code under `if __name__ == "__main__":`, '
                    "since pool processes import the main module."
                )
                logger.error("%s", self._fatal)
        if not self._stopping and self._fatal is None:
            delay = RESPAWN_BACKOFF[min(self._failures, len(RESPAWN_BACKOFF) - 1)]
            self._respawn_at[child.index] = time.monotonic() + delay

    def _account_lost(self, child: _Child, code: int | None) -> None:
        if not child.inflight:
            return
        if not child.ready:
            self._finished.unstarted.extend(child.inflight.values())
            return
        running = int(child.values[RUNNING])
        text = _exit_text(code)
        for seq, task in child.inflight.items():
            if seq > running:
                self._finished.unstarted.append(task)
                continue
            reason, detail, signum = "worker_lost", text, None
            if child.doomed is not None and child.doomed[1] == seq:
                reason, signum = child.doomed[0], child.doomed[2]
                if reason == "time_limit":
                    detail = f"{child.values[LIMIT]:g}s"
            elif seq == running and seq in child.terminating:
                reason, signum = "terminated", child.terminating[seq][0]
            elif seq < running:
                detail = f"{text} (the task had ended; its outcome was lost)"
            lost = ""
            if reason == "worker_lost" and seq == running and child.doomed is None:
                lost = (
                    f"Process {child.process.name} (pid {child.pid}) exited with "
                    f"{text} while running {task.name}[{task.task_id}]"
                )
            # Any task that started may have acked itself: a lone task, or
            # one stored before its end hooks ran. The worker looks, and
            # logs ``lost`` only if it did not.
            self._finished.interrupted.append(
                Interrupted(
                    task, reason, detail, signum, self_acked=True, lost_message=lost
                )
            )
        child.inflight.clear()

    def _respawn_due(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        for index, when in list(self._respawn_at.items()):
            if when <= now:
                del self._respawn_at[index]
                self._spawn(index)

    # -- limits, termination, taking work back -------------------------------------------
    def next_deadline(self) -> float | None:
        """The next hard deadline, steal check or respawn (monotonic), or None."""
        times = list(self._respawn_at.values())
        for child in list(self._children.values()):
            deadline = child.values[DEADLINE]
            if deadline and child.doomed is None:
                times.append(deadline)
            if len(child.inflight) > 1 and int(child.values[RUNNING]) in child.inflight:
                times.append(child.values[STARTED] + STEAL_AFTER)
        return min(times) if times else None

    def enforce(self, now: float) -> None:
        """Kill children past a hard time limit; take back work stuck behind a slow task."""
        with self._lock:
            for child in self._children.values():
                if not child.inflight or child.doomed is not None:
                    continue
                # RUNNING first: the child clears DEADLINE before it moves on.
                running = int(child.values[RUNNING])
                deadline = child.values[DEADLINE]
                if deadline and deadline <= now and running in child.inflight:
                    task = child.inflight[running]
                    logger.error(
                        "Hard time limit (%gs) exceeded for %s[%s]",
                        child.values[LIMIT],
                        task.name,
                        task.task_id,
                    )
                    self._kill(child, "time_limit", running, signal.SIGKILL)
                    continue
                for seq, (signum, sent) in list(child.terminating.items()):
                    if seq == running and now - sent > TERMINATE_ESCALATE:
                        self._kill(child, "terminated", seq, signum)
                if self._stuck(child, now):
                    self._take_back(child)

    @staticmethod
    def _stuck(child: _Child, now: float) -> bool:
        """A task of the child's batch has run too long with others waiting behind it."""
        running = int(child.values[RUNNING])
        return (
            running in child.inflight
            and any(
                seq > running and seq not in child.cancelling for seq in child.inflight
            )
            and now - child.values[STARTED] > STEAL_AFTER
        )

    def _take_back(self, child: _Child) -> None:
        """Ask the child not to start the rest of its batch (it answers ``cancelled``)."""
        running = int(child.values[RUNNING])
        seqs = [
            seq
            for seq in child.inflight
            if seq > running and seq not in child.cancelling
        ]
        if seqs:
            child.cancelling.update(seqs)
            child.send(("cancel", seqs), control=True)

    def _kill(self, child: _Child, why: str, seq: int, signum: int) -> None:
        child.doomed = (why, seq, signum)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    def _find(self, task_id: str) -> tuple[_Child, int] | None:
        for child in self._children.values():
            for seq, task in child.inflight.items():
                if task.task_id == task_id:
                    return child, seq
        return None

    def terminate(self, task_id: str, signum: int) -> bool:
        """Stop task ``task_id`` with ``signum``; True if a child holds it.

        The child signals itself if the task runs, or drops it if it has not
        started (it then ends REVOKED too).
        """
        with self._lock:
            found = self._find(task_id)
            if found is None:
                return False
            child, seq = found
            if seq not in child.terminating:
                child.terminating[seq] = (signum, time.monotonic())
                child.send(("terminate", seq, signum), control=True)
            return True

    # -- lifecycle --------------------------------------------------------------------
    def restart(self) -> None:
        """Replace every child once it is idle (new code is imported by the new ones)."""
        with self._lock:
            for child in self._children.values():
                child.retiring = True
                if not child.batch_open:
                    child.send(("stop",))

    def stop(self) -> None:
        """Warm: children finish their running task, give back the rest, and exit."""
        with self._lock:
            self._stopping = True
            self._respawn_at.clear()
            for child in self._children.values():
                self._take_back(child)
                child.send(("stop",))

    def kill(self) -> None:
        """Cold: kill every child now (their running tasks become ``worker_lost``)."""
        with self._lock:
            self._stopping = True
            self._respawn_at.clear()
            for child in self._children.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every child to exit; True if they all did."""
        deadline = time.monotonic() + timeout
        while self._children:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            multiprocessing.connection.wait(self.wait_objects(), min(remaining, 0.5))
            finished = self.collect()
            with self._lock:
                self._finished.done.extend(finished.done)
                self._finished.interrupted.extend(finished.interrupted)
                self._finished.unstarted.extend(finished.unstarted)
                self._finished.acked.extend(finished.acked)
        return True

    def fatal(self) -> str | None:
        """The error of a child that could not import the app, if any."""
        return self._fatal

    def pids(self) -> list[int]:
        """Pids of the live children."""
        return [c.pid for c in list(self._children.values())]
