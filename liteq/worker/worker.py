"""The worker loop.

:meth:`Worker.step` does one round — recover lost tasks, claim up to the
number of free pool slots, hand them to the pool, apply finished outcomes in
one transaction — and returns how long to wait before the next round.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import WorkerLostError
from ..execution import Outcome, execute
from ..serialization import exception_to_dict
from ..storage import Completion, Lost, ResultRow
from ..storage.broker import Claimed

if TYPE_CHECKING:
    from ..app import Liteq

logger = logging.getLogger("liteq.worker")


class SoloPool:
    """Runs each task in the calling thread (``-P solo``, tests, ``drain``)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._done: list[tuple[Claimed, Outcome]] = []

    def free_slots(self) -> int:
        """One task at a time, run as soon as it is submitted."""
        return 1

    def submit(self, claimed: Claimed) -> None:
        """Run ``claimed`` now."""
        self._done.append((claimed, self.worker.execute(claimed)))

    def collect(self) -> list[tuple[Claimed, Outcome]]:
        """Return (and forget) the finished tasks."""
        done, self._done = self._done, []
        return done

    def busy(self) -> int:
        """Tasks running now (none between calls)."""
        return 0


class Worker:
    """Claims tasks from the database and runs them.

    Args:
        app: The app.
        queues: Queues to consume (default: ``task_default_queue``).
        concurrency: Pool slots.
        hostname: Name for logs and ``request.hostname``.
        lease: Seconds a claim stays valid without a heartbeat (default ``task_lease``).
        autoimport: Import the module of an unknown ``module.function`` task.
    """

    def __init__(
        self,
        app: Liteq,
        queues: Sequence[str] | None = None,
        concurrency: int = 1,
        hostname: str | None = None,
        lease: float | None = None,
        autoimport: bool = True,
        pool: Any = None,
    ) -> None:
        self.app = app
        self.queues = list(queues) if queues else [app.conf.task_default_queue]
        self.concurrency = concurrency
        self.hostname = hostname or f"liteq@{socket.gethostname()}"
        self.worker_id = f"{self.hostname}:{os.getpid()}:{id(self):x}"
        self.lease = float(lease if lease is not None else app.conf.task_lease)
        self.max_deliveries = int(app.conf.task_max_deliveries)
        self.autoimport = autoimport
        self.pool = pool if pool is not None else SoloPool(self)
        self.processed = 0

    def execute(self, claimed: Claimed) -> Outcome:
        """Run one claimed task in this process."""
        return execute(self.app, claimed, hostname=self.hostname, autoimport=self.autoimport)

    def lost_result(self, lost: Lost) -> ResultRow:
        """The FAILURE(WorkerLostError) (or REVOKED) result of a task lost with its worker."""
        if lost.reason == "revoked":
            from ..exceptions import TaskRevokedError

            exc: BaseException = TaskRevokedError(f"task {lost.task_id} was terminated")
            state = states.REVOKED
        elif lost.reason == "max_deliveries":
            exc = WorkerLostError(
                f"Worker exited prematurely: task delivered {lost.deliveries} times "
                f"(task_max_deliveries={self.max_deliveries}), giving up"
            )
            state = states.FAILURE
        else:
            exc = WorkerLostError("Worker exited prematurely: the worker running the task was lost")
            state = states.FAILURE
        return self.app.make_result_row(
            lost.task_id, state, exception_to_dict(exc), name=lost.name, worker=lost.worker_id, retries=lost.retries
        )

    def recover(self, dead_workers: Sequence[str] = ()) -> None:
        """Recover expired leases (and the tasks of ``dead_workers`` at once)."""
        recovery = self.app.storage.recover(
            self.app.clock.time(), self.max_deliveries, dead_workers, lost_result=self.lost_result
        )
        for task_id in recovery.requeued:
            logger.warning("Task %s re-queued: its worker was lost (acks_late)", task_id)
        for lost in recovery.lost:
            logger.error("Task %s[%s] failed: worker lost (%s)", lost.name, lost.task_id, lost.reason)

    def claim(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` tasks; revoked ones are finished as REVOKED at once."""
        app = self.app
        now = app.clock.time()
        claimed = app.storage.claim(self.worker_id, self.queues, limit, now, self.lease)
        if not claimed:
            return claimed
        revoked = app.storage.revoked_among([c.task_id for c in claimed])
        if revoked:
            from ..exceptions import TaskRevokedError

            items = []
            for c in claimed:
                if c.task_id in revoked:
                    row = app.make_result_row(
                        c.task_id, states.REVOKED, exception_to_dict(TaskRevokedError("revoked")), name=c.name
                    )
                    items.append(Completion(task_id=c.task_id, claimed=c, result=row))
                    logger.info("Discarding revoked task: %s[%s]", c.name, c.task_id)
            app.storage.complete(items, now)
            claimed = [c for c in claimed if c.task_id not in revoked]
        return claimed

    def finish(self, done: Sequence[tuple[Claimed, Outcome]]) -> None:
        """Apply finished outcomes in one transaction and log them."""
        if not done:
            return
        items = []
        for claimed, outcome in done:
            outcome.completion.claimed = claimed
            items.append(outcome.completion)
        applied = self.app.storage.complete(items, self.app.clock.time())
        for (_claimed, outcome), ok in zip(done, applied):
            self.processed += 1
            if not ok:
                logger.warning(
                    "Task %s[%s] finished after its lease was lost; its outcome was dropped",
                    outcome.name, outcome.task_id,
                )
                continue
            self.log_outcome(outcome)

    def log_outcome(self, outcome: Outcome) -> None:
        """Log one outcome the way Celery does."""
        if outcome.state == states.SUCCESS:
            logger.info(outcome.describe())
        elif outcome.state == states.FAILURE and not outcome.expected:
            logger.error("%s\n%s", outcome.describe(), outcome.traceback or "")
        else:
            logger.info(outcome.describe())

    def step(self) -> float:
        """Do one round of work.

        Returns:
            0.0 if anything was claimed or finished; otherwise the seconds until
            the next scheduled task or lease expiry (capped at the fallback poll).
        """
        app = self.app
        self.recover()
        free = self.pool.free_slots()
        claimed = self.claim(free) if free > 0 else []
        for c in claimed:
            self.pool.submit(c)
        done = self.pool.collect()
        self.finish(done)
        if claimed or done:
            return 0.0
        fallback = float(app.conf.worker_fallback_poll)
        nxt = app.storage.broker.next_wakeup()
        if nxt is None:
            return fallback
        return max(0.0, min(fallback, nxt - app.clock.time()))
