"""The worker's upkeep: registration, heartbeat, recovery and maintenance.

* A worker registers in ``liteq_worker`` (host, pid with its start time,
  boot id, queues, concurrency) so that ``liteq status`` can list it and so
  that other workers on the host can tell when it is gone.
* Every :data:`LIVENESS_INTERVAL` seconds it looks at the registered workers
  and recovers at once the tasks of those whose process is gone (see
  :mod:`.liveness`); every :data:`RECOVERY_INTERVAL` seconds it recovers
  tasks whose lease expired (a worker on another host, or a hung one).
* About once a minute one worker — whoever holds the ``maintenance`` lease —
  expires old results and checkpoints the WAL.
* Every :data:`FILE_CHECK_INTERVAL` seconds it checks that the database file
  is still the one it opened, and stops if it was deleted or replaced.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import states
from ..exceptions import TaskRevokedError, WorkerLostError
from ..serialization import exception_to_dict
from ..storage import Lost, ResultRow, WorkerRow
from . import handoff
from .liveness import LOCAL_WORKERS, HostIdentity, dead_workers, pid_starttime

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("liteq.worker")

#: Seconds between checks for dead workers on this host.
LIVENESS_INTERVAL = 0.5
#: Seconds between recoveries of expired leases.
RECOVERY_INTERVAL = 5.0
#: Seconds between maintenance runs (one worker at a time does it).
MAINTENANCE_INTERVAL = 60.0
#: Seconds between two looks at whether the database file is still the one
#: the worker opened.
FILE_CHECK_INTERVAL = 5.0


class Upkeep:
    """Registration, liveness checks, recovery and maintenance of one worker.

    Timers use the app's clock (``clock.monotonic()``), so tests drive them
    with a FakeClock.
    """

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.identity = HostIdentity.current()
        #: Other live workers registered on this host (at the last check).
        self.peers = 0
        self.registered = False
        #: Every pool slot was ready at the last registration.
        self.ready = False
        self.next_liveness = 0.0
        self.next_recovery = 0.0
        self.next_maintenance = 0.0
        self.next_file_check = 0.0
        #: ``(st_dev, st_ino)`` of the database file when first looked at.
        self.file_id: tuple[int, int] | None = None

    # -- timers ---------------------------------------------------------------------------
    def run_due(self, mono: float) -> None:
        """Do whatever is due at monotonic time ``mono``.

        Raises:
            StorageError: a step failed (the others are retried next time).
        """
        if mono >= self.next_liveness:
            self.next_liveness = mono + LIVENESS_INTERVAL
            self.check_liveness()
        if mono >= self.next_recovery:
            self.next_recovery = mono + RECOVERY_INTERVAL
            self.recover()
        if mono >= self.next_maintenance:
            self.next_maintenance = mono + MAINTENANCE_INTERVAL
            self.maintain()
        if mono >= self.next_file_check:
            self.next_file_check = mono + FILE_CHECK_INTERVAL
            self.check_file()
        if not self.registered:
            self.register()

    def check_file(self) -> bool:
        """Stop the worker if its database file was deleted or replaced.

        The worker's connections still work on the file they opened, which
        nobody else sees any more: tasks queued in the new file would wait
        for ever, and the outcomes written to the old one would be lost. A
        cold stop (exit code 1) makes that visible; started again, the worker
        opens the new file.

        Returns:
            True if the file is still the one the worker opened.
        """
        path = self.worker.app.storage.path
        try:
            found = os.stat(path)
        except FileNotFoundError:
            current = None
        else:
            current = (found.st_dev, found.st_ino)
        if self.file_id is None:
            self.file_id = current
            return True
        if current == self.file_id:
            return True
        logger.critical(
            "the database file %s was %s while the worker ran; stopping (start "
            "the worker again to work on the file now at that path)",
            path,
            "deleted" if current is None else "replaced",
        )
        self.worker.stop(graceful=False)
        return False

    def check_ready(self) -> None:
        """Register again once every pool slot is ready (``liteq status`` shows it).

        Raises:
            StorageError: the write failed.
        """
        pool = self.worker.pool
        if pool.idle() + pool.running() >= self.worker.concurrency:
            self.ready = True
            self.register()

    def next_due(self) -> float:
        """The monotonic time of the next timer an idle worker must wake for."""
        due = self.next_maintenance
        if self.peers:
            due = min(due, self.next_liveness)
        return due

    # -- registration -------------------------------------------------------------------
    def register(self) -> None:
        """Insert or refresh the worker's row in ``liteq_worker``.

        Raises:
            StorageError: the write failed.
        """
        worker = self.worker
        now = worker.app.clock.time()
        pid = os.getpid()
        LOCAL_WORKERS.add(worker.worker_id)
        pool = worker.pool
        if not self.ready and pool.idle() + pool.running() >= worker.concurrency:
            self.ready = True
        info = {
            **self.identity.as_info(),
            "pool": worker.pool_kind,
            "processed": worker.processed,
            "running": pool.running(),
            "beat": worker.beat,
            "ready": self.ready,
        }
        worker.app.storage.register_worker(
            WorkerRow(
                worker_id=worker.worker_id,
                hostname=worker.hostname,
                pid=pid,
                pid_starttime=pid_starttime(pid),
                boot_id=self.identity.boot_id,
                queues=worker.queues,
                concurrency=worker.concurrency,
                info=info,
                started_at=now,
                heartbeat_at=now,
            )
        )
        self.registered = True

    def unregister(self) -> None:
        """Remove the worker's row and give up the maintenance lease (clean exit).

        Raises:
            StorageError: the write failed.
        """
        worker = self.worker
        LOCAL_WORKERS.discard(worker.worker_id)
        storage = worker.app.storage
        storage.unregister_worker(worker.worker_id)
        storage.release_lease("maintenance", worker.worker_id)
        self.registered = False

    def heartbeat(self) -> list[tuple[str, str | None]]:
        """Refresh the registration and renew the lease of every running task.

        Returns:
            ``(task_id, signal)`` of running tasks someone asked to terminate.

        Raises:
            StorageError: the write failed.
        """
        self.register()
        worker = self.worker
        return worker.app.storage.broker.extend_lease(
            worker.worker_id, worker.app.clock.time(), worker.lease
        )

    # -- recovery -----------------------------------------------------------------------
    def lost_result(self, lost: Lost) -> ResultRow:
        """The FAILURE(WorkerLostError) (or REVOKED) result of a task lost with its worker."""
        cap = self.worker.max_deliveries
        if lost.reason == "revoked":
            exc: BaseException = TaskRevokedError(f"task {lost.task_id} was terminated")
            state = states.REVOKED
        elif lost.reason == "max_deliveries":
            exc = WorkerLostError(
                f"Worker exited prematurely: task delivered {lost.deliveries} times "
                f"(task_max_deliveries={cap}), giving up"
            )
            state = states.FAILURE
        else:
            exc = WorkerLostError(
                "Worker exited prematurely: the worker running the task was lost"
            )
            state = states.FAILURE
        return self.worker.app.make_result_row(
            lost.task_id,
            state,
            exception_to_dict(exc),
            name=lost.name,
            worker=lost.worker_id,
            retries=lost.retries,
        )

    def recover(self, dead: Sequence[str] = (), batches: Sequence[str] = ()) -> None:
        """Recover expired leases, and the tasks of the ``dead`` workers at once.

        For the dead workers in ``batches`` (gone since the machine booted),
        the tasks their batch files say never started go back to the queue
        (see :mod:`.handoff`). The batch files of every dead worker are
        removed once the recovery is committed.

        Raises:
            StorageError: the recovery failed (nothing was changed).
        """
        worker = self.worker
        app = worker.app
        directory = handoff.handoff_dir(app.storage.db.path)
        unstarted = [
            (worker_id, token, ids)
            for worker_id in batches
            for token, ids in handoff.unstarted(directory, worker_id)
        ]
        recovery = app.storage.recover(
            app.clock.time(),
            worker.max_deliveries,
            dead,
            lost_result=self.lost_result,
            unstarted=unstarted,
        )
        for worker_id in dead:
            handoff.remove(directory, worker_id)
        if recovery.requeued or recovery.lost:
            worker.more_ready()
        for task_id in recovery.requeued:
            logger.warning(
                "Task %s re-queued: its worker was lost (acks_late, or not started)",
                task_id,
            )
        for lost in recovery.lost:
            logger.error(
                "Task %s[%s] failed: worker lost (%s)",
                lost.name,
                lost.task_id,
                lost.reason,
            )

    def check_liveness(self) -> list[str]:
        """Recover at once the tasks of registered workers that are gone.

        Returns:
            The ids of the dead workers found.

        Raises:
            StorageError: reading the workers or the recovery failed.
        """
        worker = self.worker
        app = worker.app
        rows = app.storage.workers()
        me = worker.worker_id
        self.peers = sum(
            1 for r in rows if r.worker_id != me and self.identity.same_host(r)
        )
        if not any(r.worker_id == me for r in rows) and self.registered:
            # Our row went missing (removed by hand?): put it back.
            self.registered = False
        dead = dead_workers(rows, self.identity, me, app.clock.time(), worker.lease)
        if dead:
            logger.warning(
                "Recovering the tasks of lost worker(s): %s", ", ".join(dead)
            )
            # Their batch files are in this machine's page cache only if they
            # ran on it since it booted.
            here = {r.worker_id for r in rows if self.identity.same_host(r)}
            self.recover(dead, [w for w in dead if w in here])
            self.next_recovery = app.clock.monotonic() + RECOVERY_INTERVAL
        return dead

    # -- maintenance --------------------------------------------------------------------
    def maintain(self) -> None:
        """Expire results and checkpoint the WAL, if no other worker does it now.

        Raises:
            StorageError: the lease or the maintenance failed.
        """
        worker = self.worker
        storage = worker.app.storage
        now = worker.app.clock.time()
        if storage.acquire_lease(
            "maintenance", worker.worker_id, now, 2 * MAINTENANCE_INTERVAL
        ):
            expired = storage.maintain(now)
            if expired:
                logger.info("Expired %d results", expired)
