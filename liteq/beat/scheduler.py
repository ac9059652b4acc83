"""The scheduler loop: :class:`Beat` (standalone or driven by ``tick``) and
:class:`EmbeddedBeat` (a thread inside ``liteq worker -B``)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from .. import publishing, signals
from ..exceptions import ConfigurationError, StorageError
from ..schedules import BaseSchedule, schedule_from_dict
from ..storage.beat_store import (
    SOURCE_API,
    BeatStore,
    Definition,
    Fire,
    Fired,
    ScheduleRow,
    SyncReport,
)
from ..timeutils import from_ts
from .entries import definition_from_entry, plan, unique_key

if TYPE_CHECKING:
    from ..app import Liteq
    from ..clock import Clock
    from ..messages import Message
    from ..wakeup import Waker

logger = logging.getLogger("liteq.beat")

#: Name of the leader lease in ``liteq_lease``.
LEASE_NAME = "beat"
#: After a change in the database, wait this long before looking: a burst of
#: commits costs one look, and a wake-up that arrives before the commit is
#: visible (measured up to ~15 ms) is not wasted.
CHANGE_SETTLE = 0.05
#: Seconds to wait after a database error before trying again.
ERROR_BACKOFF = 1.0


# -- the scheduler ------------------------------------------------------------------------
class Beat:
    """Sends due tasks; drive it with :meth:`tick` or :meth:`run`.

    Args:
        app: The app.
        clock: Time source (default ``app.clock``).
        lease_ttl: Seconds of the leader lease (default ``beat_lease_ttl``);
            0 disables the lease, so every beat does the work.
        max_interval: Longest wait between ticks (default ``beat_max_loop_interval``).
        owner: Name of this beat in the lease (default ``host:pid:random``).
    """

    def __init__(
        self,
        app: Liteq,
        clock: Clock | None = None,
        *,
        lease_ttl: float | None = None,
        max_interval: float | None = None,
        owner: str | None = None,
    ) -> None:
        self.app = app
        self.clock: Clock = clock or app.clock
        ttl = app.conf.beat_lease_ttl if lease_ttl is None else lease_ttl
        self.lease_ttl = float(ttl)
        interval = (
            app.conf.beat_max_loop_interval if max_interval is None else max_interval
        )
        self.max_interval = float(interval)
        self.owner = (
            owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        #: True while this beat holds the leader lease.
        self.is_leader = False
        self._renew_at = 0.0
        self._follow_until = 0.0
        self._store: BeatStore | None = None
        self._schedules: dict[str, BaseSchedule] = {}
        self._stop = threading.Event()
        self._waker: Waker | None = None
        #: Messages announced to ``before_task_publish``, by task id, until
        #: their commit (``after_task_publish``).
        self._announced: dict[str, Message] = {}

    @property
    def store(self) -> BeatStore:
        """The schedule store of the app's database."""
        if self._store is None:
            self._store = BeatStore(self.app.storage.db)
        return self._store

    # -- configuration ------------------------------------------------------------------
    def sync_config(self) -> SyncReport:
        """Make the stored ``config`` entries match ``beat_schedule``, in one transaction.

        Returns:
            What was added, updated, removed and left unchanged.

        Raises:
            ConfigurationError: an entry is malformed (nothing is synced).
        """
        # Runs the receivers that add periodic tasks (app.add_periodic_task).
        self.app.finalize(strict=False)
        entries = self.app.conf.beat_schedule or {}
        if not isinstance(entries, Mapping):
            raise ConfigurationError(
                f"beat_schedule must be a dict of entries, got {type(entries).__name__}"
            )
        if not entries and getattr(self.app, "_without_configuration", False):
            # ``liteq beat tasks.db`` (no -A): the entries an app's
            # configuration stored stay as they are; an empty sync would
            # delete them under the beat that runs with that app.
            kept = sum(1 for row in self.store.all() if row.source != SOURCE_API)
            logger.info(
                "beat: no app given (-A), so no beat_schedule to sync; the %d "
                "entries stored from an app's configuration are kept",
                kept,
            )
            return SyncReport([], [], [], [])
        now = self.clock.now()
        definitions: list[Definition] = []
        errors: list[str] = []
        for name, entry in entries.items():
            try:
                definitions.append(definition_from_entry(self.app, name, entry, now))
            except ConfigurationError as exc:
                errors.append(str(exc))
        if errors:
            raise ConfigurationError("; ".join(errors))
        report = self.store.sync(definitions, now.timestamp())
        # Both counts on one line, so a beat with nothing to send is visible
        # at start rather than silently idle.
        runtime = sum(1 for row in self.store.all() if row.source == SOURCE_API)
        logger.info(
            "beat: %d entries in beat_schedule, %d added at runtime "
            "(liteq schedule add); synced: added %d, updated %d, removed %d",
            len(definitions),
            runtime,
            len(report.added),
            len(report.updated),
            len(report.removed),
        )
        if not definitions and not runtime:
            logger.info("beat: the schedule is empty: no periodic task will be sent")
        return report

    # -- one step -----------------------------------------------------------------------
    def tick(self, now: datetime | float | None = None) -> float:
        """Send every due task, if this beat leads.

        Returns:
            Seconds until the next due entry (or until the lease needs
            renewing or may be taken over), capped by ``max_interval``.

        Raises:
            StorageError: the database could not be read or written.
        """
        if now is None:
            now_ts = self.clock.time()
        elif isinstance(now, datetime):
            now_ts = now.timestamp()
        else:
            now_ts = float(now)
        if not self._lead(now_ts):
            return self._cap(self._follow_until - now_ts)
        store = self.store
        due = store.next_due_at()
        if due is not None and due <= now_ts:
            self._announced.clear()  # left by a tick whose transaction failed
            store.fire_due(
                now_ts, lambda row: self._decide(row, now_ts), report=self._report
            )
            due = store.next_due_at()
        wait = self.max_interval if self.lease_ttl <= 0 else self._renew_at - now_ts
        if due is not None:
            wait = min(wait, due - now_ts)
        return self._cap(wait)

    def _cap(self, seconds: float) -> float:
        # Whole microseconds (datetimes have no finer grain, and epoch floats
        # differ by float noise); never round a wait that is due later to 0.
        micros = round(seconds * 1e6)
        if micros <= 0 < seconds:
            micros = 1
        return max(0.0, min(micros / 1e6, self.max_interval))

    def _lead(self, now: float) -> bool:
        if self.lease_ttl <= 0:
            return True
        if self.is_leader and now < self._renew_at:
            return True
        held = self.store.lease(LEASE_NAME)
        if held is not None and held.owner != self.owner and held.expires_at >= now:
            if self.is_leader:
                logger.warning("beat: leadership passed to %s", held.owner)
            self.is_leader = False
            # acquire_lease takes over only once expires_at < now.
            self._follow_until = held.expires_at + 0.001
            return False
        got = self.app.storage.acquire_lease(
            LEASE_NAME, self.owner, now, self.lease_ttl
        )
        if got:
            if not self.is_leader:
                logger.info("beat: %s now sends the scheduled tasks", self.owner)
            self._renew_at = round(now + self.lease_ttl / 3, 6)
        else:
            self._follow_until = now + self.lease_ttl / 3
        self.is_leader = got
        return got

    def _schedule(self, row: ScheduleRow) -> BaseSchedule:
        key = row.schedule_json
        value = self._schedules.get(key)
        if value is None:
            if len(self._schedules) > 1000:
                self._schedules.clear()
            value = self._schedules[key] = schedule_from_dict(row.schedule)
        return value

    def _decide(self, row: ScheduleRow, now_ts: float) -> Fire:
        # Runs inside the fire transaction: never raise, so one bad entry
        # cannot stop the others.
        assert row.next_run_at is not None
        try:
            value = self._schedule(row)
            fires, following = plan(
                value, from_ts(row.next_run_at), from_ts(now_ts), row.catch_up
            )
        except Exception as exc:
            logger.error(
                "Scheduler: entry %s has an unusable schedule %s (%s); it is parked "
                "until redefined",
                row.name,
                row.schedule,
                exc,
            )
            return Fire([], None, None)
        tasks = []
        for at in fires:
            try:
                _, task = self.app.build_message(
                    row.task,
                    row.args,
                    row.kwargs,
                    queue=row.queue,
                    priority=row.priority,
                    unique_key=unique_key(row.name, at),
                    now=now_ts,
                    **row.options,
                )
            except Exception as exc:
                logger.error(
                    "Scheduler: cannot send due task %s (%s): %s",
                    row.name,
                    row.task,
                    exc,
                )
                break
            tasks.append(task)
        for message in publishing.announce_written_with(tasks):
            self._announced[message.id] = message
        return Fire(
            tasks,
            fires[len(tasks) - 1].timestamp() if tasks else None,
            None if following is None else following.timestamp(),
        )

    def _report(self, item: Fired) -> None:
        row = item.row
        announced = [self._announced.pop(t.task_id, None) for t in item.fire.tasks]
        publishing.announce_after(
            [m for m in announced if m is not None and m.id in item.inserted]
        )
        for _ in item.inserted:
            logger.info("Scheduler: Sending due task %s (%s)", row.name, row.task)
        if len(item.fire.tasks) > len(item.inserted):
            logger.warning(
                "Scheduler: %s (%s) was already queued for this time; not sent twice",
                row.name,
                row.task,
            )
        if not item.fire.tasks and row.catch_up == "skip" and item.fire.next_run_at:
            logger.info(
                "Scheduler: Skipping %s (%s): missed while no beat ran (catch_up=%s)",
                row.name,
                row.task,
                row.catch_up,
            )
        if item.fire.next_run_at is None:
            logger.info("Scheduler: %s will not run again", row.name)

    # -- the loop -------------------------------------------------------------------------
    def run(self, stop_event: threading.Event | None = None) -> None:
        """Sync the configuration, then tick until ``stop_event`` (or :meth:`stop`).

        Waits between ticks for exactly the delay :meth:`tick` returns, waking
        early when the database changes (a new or changed entry). A database
        error is logged and retried.

        Raises:
            ConfigurationError: ``beat_schedule`` is malformed.
        """
        if stop_event is not None:
            self._stop = stop_event
        stop = self._stop
        logger.info("beat: Starting...")
        self.sync_config()
        signals.beat_init.send(sender=self)
        waker = self._waker = self.app.waker
        waker.start()
        try:
            while not stop.is_set():
                generation = waker.generation
                try:
                    delay = self.tick()
                except StorageError as exc:
                    logger.warning(
                        "beat: database error, retrying in %.0f s: %s",
                        ERROR_BACKOFF,
                        exc,
                    )
                    delay = ERROR_BACKOFF
                if stop.is_set():
                    break
                # The fallback poll covers a lost file-system event.
                delay = min(delay, waker.fallback)
                deadline = self.clock.monotonic() + delay
                if waker.wait(generation, delay, self.clock) != generation:
                    settle = min(CHANGE_SETTLE, deadline - self.clock.monotonic())
                    if settle > 0 and not stop.is_set():
                        self.clock.wait(stop, settle)
        finally:
            self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler or another thread)."""
        self._stop.set()
        self.wake()

    def wake(self) -> None:
        """Make a waiting :meth:`run` look at the schedule now."""
        # The Waker found at start: looking it up again takes a plain lock,
        # which a signal handler interrupting that very lookup would deadlock on.
        waker = self._waker if self._waker is not None else self.app.waker
        waker.notify()

    def close(self) -> None:
        """Give up the leader lease (another beat takes over at once)."""
        if self.is_leader and self.lease_ttl > 0:
            self.is_leader = False
            try:
                self.app.storage.release_lease(LEASE_NAME, self.owner)
            except StorageError as exc:
                logger.warning("beat: could not release the leader lease: %s", exc)
        logger.info("beat: stopped")


class EmbeddedBeat:
    """Beat in a daemon thread of another process (``liteq worker -B``).

    Args:
        app: The app.
        lease_ttl: See :class:`Beat`.
        max_interval: See :class:`Beat`.
    """

    def __init__(
        self,
        app: Liteq,
        *,
        lease_ttl: float | None = None,
        max_interval: float | None = None,
    ) -> None:
        self.beat = Beat(app, lease_ttl=lease_ttl, max_interval=max_interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: The error that stopped the beat thread, if any.
        self.error: BaseException | None = None

    def start(self) -> None:
        """Start the beat thread.

        Raises:
            RuntimeError: it was started already.
        """
        if self._thread is not None:
            raise RuntimeError("this EmbeddedBeat was started already")
        self._thread = threading.Thread(
            target=self._run, name="liteq-beat", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        try:
            self.beat.run(self._stop)
        except Exception as exc:
            # The hosting worker goes on; the error is visible in its log.
            self.error = exc
            logger.critical("beat: stopped by an error: %s", exc, exc_info=True)
        finally:
            self.beat.app.close()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the beat thread and wait for it (at most ``timeout`` seconds)."""
        self._stop.set()
        self.beat.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Return True while the beat thread runs."""
        return self._thread is not None and self._thread.is_alive()
