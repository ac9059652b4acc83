"""The worker: claims tasks, runs them in a pool, acks them with their results.

:meth:`Worker.step` does one round and returns how long to wait before the
next one:

1. housekeeping when due: recover the tasks of workers on this host whose
   process is gone (at once) and of expired leases, enforce hard time limits,
   maintenance (result expiry, WAL checkpoint) by one worker a minute;
2. read what the pool finished;
3. claim as many tasks as the pool has idle slots — after a read-only probe
   unless the last claim came back full, or a commit woke the loop and the
   claim after the last such wake-up found tasks — and hand them over (a
   task over its rate limit goes back to the database, due when a token
   will be);
4. apply every finished outcome in ONE transaction (group commit), then log.

The parent claims and acks; pool slots execute, except that a prefork pool
process acks a lone task itself (see :mod:`.child`). :meth:`Worker.run`
(in :mod:`.runtime`) loops over ``step`` and sleeps on file descriptors in
between, woken by commits from any process, by the pool, and by signals.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import signals, states
from ..exceptions import ConfigurationError, StorageError, TaskRevokedError
from ..execution import Outcome, end_claimed, execute, received_request
from ..wakeup import QUIET_FOR, WakeStreak
from . import outcomes
from .handoff import CLAIM_SLOT, Handoffs, handoff_dir
from .pacing import ClaimPacer
from .pool import Finished, Pool, SoloPool, ThreadPool
from .ratelimit import RateLimiter
from .runner import Limits, Report
from .upkeep import Upkeep

if TYPE_CHECKING:
    from ..app import Liteq
    from ..storage import Completion
    from ..storage.broker import Claimed
    from .prefork import PreforkPool

logger = logging.getLogger("liteq.worker")

#: Commit wake-ups in a row that found nothing to do, after which the run
#: loop pauses :data:`~liteq.wakeup.QUIET_FOR` seconds before each further
#: look (see ``Worker._found_nothing``): a stream of other processes' commits
#: (other queues' tasks, other workers' acks) otherwise costs a look per
#: commit, about 85 µs of CPU each, most of a core at 10,000 commits a second.
QUIET_AFTER = 3

_SUCCESS = states.SUCCESS


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


#: Longest back-off after a storage error.
MAX_BACKOFF = 5.0
#: Pool names as Celery spells them.
POOLS = {
    "prefork": "prefork",
    "processes": "prefork",
    "threads": "threads",
    "solo": "solo",
}


def expand_hostname(name: str | None) -> str:
    """Expand Celery's ``%h`` (host), ``%n`` (short name) and ``%d`` (domain)."""
    host = socket.gethostname()
    if not name:
        return f"liteq@{host}"
    short, _, domain = host.partition(".")
    for key, value in (("%h", host), ("%n", short), ("%d", domain), ("%%", "%")):
        name = name.replace(key, value)
    return name


def _setting(value: Any, app: Liteq, key: str) -> Any:
    return app.conf[key] if value is None else value


def configured_queues(conf: Any) -> list[str]:
    """The queues a worker consumes when none are given (``-Q``): Celery's rule.

    Every queue named in ``task_queues`` (names, ``kombu.Queue`` objects or
    anything with a ``name``, mappings with a ``"name"``, or a dict keyed by
    name), else ``task_default_queue`` alone.

    Raises:
        ConfigurationError: an entry of ``task_queues`` names no queue.
    """
    declared = conf.task_queues
    if not declared:
        return [conf.task_default_queue]
    if isinstance(declared, str):
        declared = [q.strip() for q in declared.split(",") if q.strip()]
    elif isinstance(declared, Mapping):
        declared = list(declared)
    names: list[str] = []
    for entry in declared:
        if isinstance(entry, Mapping):
            name = entry.get("name")
        else:
            name = entry if isinstance(entry, str) else getattr(entry, "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"task_queues: {entry!r} names no queue")
        if name not in names:
            names.append(name)
    return names


class Worker:
    """Claims tasks from the database and runs them in a pool.

    Args:
        app: The app.
        queues: Queues to consume (default: ``task_default_queue``).
        concurrency: Pool slots (default ``worker_concurrency``, else the CPU count).
        pool: ``"prefork"``, ``"threads"`` or ``"solo"`` (or a pool object).
        hostname: Node name (``-n``; ``%h`` expands to the host name).
        max_tasks_per_child: Replace a prefork child after this many tasks.
        max_memory_per_child: Replace a prefork child above this RSS, in KiB.
        time_limit: Hard time limit for tasks that set none (seconds).
        soft_time_limit: Soft time limit for tasks that set none (seconds).
        autoimport: Import the module of an unknown ``module.function`` task.
        lease: Seconds a claim stays valid without a heartbeat (``task_lease``).
        fallback_poll: Seconds between checks without any wake-up.
        claim_linger: Seconds between claims while a stream of short tasks
            keeps the queue nearly empty (``worker_claim_linger``; see
            :mod:`.pacing`), from 0 to 1; 0 claims as soon as a slot is free.
        shutdown_grace: Seconds running tasks get to finish on a warm shutdown.
        beat: Also run the beat scheduler in this process.
        start_method: ``"forkserver"`` or ``"spawn"`` for prefork children.
        install_signal_handlers: Handle SIGTERM/SIGINT/SIGQUIT/SIGHUP in ``run``.
        app_path: ``"module:attr"`` the prefork children import the app from.

    Raises:
        ConfigurationError: an unknown pool, a ``fork`` start method, or a
            claim linger outside 0 to 1 second.
    """

    def __init__(
        self,
        app: Liteq,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        pool: Any = None,
        hostname: str | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        autoimport: bool = True,
        lease: float | None = None,
        fallback_poll: float | None = None,
        claim_linger: float | None = None,
        shutdown_grace: float | None = None,
        beat: bool = False,
        start_method: str | None = None,
        install_signal_handlers: bool = True,
        app_path: str | None = None,
    ) -> None:
        conf = app.conf
        self.app = app
        if isinstance(queues, str):
            queues = [q.strip() for q in queues.split(",") if q.strip()]
        self.queues = list(queues) if queues else configured_queues(conf)
        self.hostname = expand_hostname(hostname)
        self.worker_id = f"{self.hostname}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease = float(_setting(lease, app, "task_lease"))
        self.max_deliveries = int(conf.task_max_deliveries)
        self.autoimport = bool(autoimport and conf.worker_autoimport)
        self.max_tasks_per_child = _setting(
            max_tasks_per_child, app, "worker_max_tasks_per_child"
        )
        self.max_memory_per_child = _setting(
            max_memory_per_child, app, "worker_max_memory_per_child"
        )
        self.limits = Limits(
            _setting(time_limit, app, "task_time_limit"),
            _setting(soft_time_limit, app, "task_soft_time_limit"),
        )
        self.fallback_poll = float(_setting(fallback_poll, app, "worker_fallback_poll"))
        linger = float(_setting(claim_linger, app, "worker_claim_linger"))
        if not 0 <= linger <= 1:
            # A pause also puts off the loop's timers (time limits,
            # heartbeats): it is meant to last milliseconds.
            raise ConfigurationError(
                f"worker_claim_linger must be from 0 to 1 second, not {linger!r}"
            )
        #: Spaces out claims while the worker keeps up with a stream of tasks.
        self.pacer = ClaimPacer(linger)
        #: Seconds this round's claim was put off by the pacer (0.0: not put off).
        self._held = 0.0
        #: Commit wake-ups in a row whose look found nothing (see QUIET_AFTER).
        self._empty_wakes = WakeStreak(QUIET_AFTER)
        #: Monotonic time before which commits do not wake the worker (QUIET_FOR).
        self._quiet_until = 0.0
        self.shutdown_grace = float(
            _setting(shutdown_grace, app, "worker_shutdown_grace")
        )
        self.beat = beat
        self.start_method = start_method or conf.worker_start_method
        if self.start_method == "fork":
            raise ConfigurationError(
                "the prefork pool does not use the 'fork' start method: a child "
                "forked from the worker would share its database connections; use "
                "'forkserver' or 'spawn'"
            )
        self.install_signal_handlers = install_signal_handlers
        self.app_path = app_path
        #: Where the pool records its batches (see :mod:`.handoff`).
        self.handoffs: Handoffs | None = None
        if pool is None or isinstance(pool, str):
            kind = POOLS.get(str(pool or conf.worker_pool or "prefork").lower())
            if kind is None:
                raise ConfigurationError(
                    f"unknown pool {pool!r}: use prefork, threads or solo "
                    "(eventlet and gevent are not supported; threads suits I/O-bound tasks)"
                )
            self.pool_kind = kind
            self._pool: Pool | None = None
        else:
            self.pool_kind = getattr(pool, "kind", "custom")
            self._pool = pool
        #: The prefork pool this worker made: its processes ack lone tasks.
        self._acking_pool: PreforkPool | None = None
        wanted = _setting(concurrency, app, "worker_concurrency")
        self.concurrency = (
            1 if self.pool_kind == "solo" else int(wanted or os.cpu_count() or 1)
        )
        self.rate_limiter = RateLimiter(app, self.autoimport)
        self.upkeep = Upkeep(self)
        #: Tasks acked (or requeued) by this worker.
        self.processed = 0
        #: Set when a warm shutdown began: claim nothing more.
        self.stopping = False
        self._pending: list[tuple[Claimed, Any]] = []
        self._give_back: list[Claimed] = []
        self._deferred: list[tuple[Claimed, float]] = []
        self._more = True
        #: Set by the run loop when a commit woke it while nothing ran here
        #: (else the commit may well be the ack of a pool process's lone
        #: task, which queued nothing), for the next claim.
        self.woken_by_commit = False
        #: The claim after the last such wake-up (with nothing running) found
        #: tasks: the next one goes without the probe, since the commit that
        #: woke it likely queued one (a client sending tasks one at a time).
        self._wakes_find_work = False
        #: (step, commits, next wake-up) when the queue was last found idle.
        self._idle_seen: tuple[int, int, float | None] | None = None
        self._steps = 0
        self._started = False
        self._backoff = 0.0
        self._trouble_logged = 0.0
        self._info = logger.isEnabledFor(logging.INFO)
        # Set from signal handlers or other threads; read by the run loop.
        self.warm_requested = False
        self.cold_requested = False
        self.restart_requested = False
        self.pool_restart_requested = False
        self.runtime: Any = None

    # -- the pool -----------------------------------------------------------------------
    @property
    def pool(self) -> Pool:
        """The execution pool (created on first use)."""
        if self._pool is None:
            self._pool = self._make_pool()
        return self._pool

    def _make_pool(self) -> Pool:
        self.handoffs = Handoffs(handoff_dir(self.app.storage.db.path), self.worker_id)
        if self.pool_kind == "prefork":
            from .prefork import PreforkPool
            from .spec import child_spec

            self.import_modules()
            pool = PreforkPool(
                child_spec(self),
                self.concurrency,
                start_method=self.start_method,
                max_tasks_per_child=self.max_tasks_per_child,
                handoffs=self.handoffs,
            )
            self._acking_pool = pool
            return pool
        kind = SoloPool if self.pool_kind == "solo" else ThreadPool
        return kind(
            self.app,
            self.hostname,
            concurrency=self.concurrency,
            autoimport=self.autoimport,
            limits=self.limits,
            wake=self._poke,
            halted=self._halted,
            handoffs=self.handoffs,
        )

    def _halted(self) -> bool:
        return self.warm_requested or self.cold_requested or self.stopping

    def _poke(self) -> None:
        runtime = self.runtime
        if runtime is not None:
            runtime.poke()

    def import_modules(self) -> None:
        """Import the app's ``include``/``imports`` modules (once)."""
        if not getattr(self.app, "_imported", False):
            self.app.import_modules()

    # -- running one task in this process --------------------------------------------------
    def execute(self, claimed: Claimed) -> Outcome:
        """Run one claimed task in this process."""
        return execute(
            self.app, claimed, hostname=self.hostname, autoimport=self.autoimport
        )

    # -- one round --------------------------------------------------------------------------
    def start(self) -> None:
        """Register the worker and start the pool (``step`` calls it on first use)."""
        if self._started:
            return
        self._started = True
        self._info = logger.isEnabledFor(logging.INFO)
        self.import_modules()
        self.app.finalize()
        self.pool.start()
        try:
            self.upkeep.register()
        except StorageError as exc:
            logger.warning("cannot register the worker yet (%s); will retry", exc)

    def step(self) -> float:
        """Do one round of work.

        Returns:
            0.0 if anything was claimed or finished, or if this round's acks
            queued tasks a free slot can take; otherwise the seconds
            until something is due (the next ETA, a housekeeping timer, the
            fallback poll), or a back-off delay after a storage error.
        """
        self.start()
        app = self.app
        self._steps += 1
        self._held = 0.0
        try:
            self.upkeep.run_due(app.clock.monotonic())
            self.pool.enforce(time.monotonic())
            finished = self.pool.collect()
            if not self.upkeep.ready:
                self.upkeep.check_ready()
            self._absorb(finished)
            claimed: list[Claimed] = []
            ack_later = False
            if not self.stopping:
                free = self.pool.wanted()
                if free > 0:
                    claimed = self._claim_and_submit(free)
                    if claimed:
                        self._absorb(self.pool.collect())
                        # A pool process is idle again (it finished while
                        # this round ran): the next step, at once, acks its
                        # outcomes in the transaction that claims its next
                        # tasks. In-process pools ack within the step.
                        ack_later = (
                            self.pool.kind == "prefork" and self.pool.wanted() > 0
                        )
            # Only for the claim right after the wake-up.
            self.woken_by_commit = False
            if ack_later or self._held:
                # Acked by the next claim's transaction.
                self._flush_side()
            else:
                self._flush()
            if self._held:
                delay = self._held
            elif claimed or finished or self._claim_now():
                delay = 0.0
            else:
                delay = self._idle_delay()
        except StorageError as exc:
            return self._trouble(exc)
        self._backoff = 0.0
        return delay

    def _claim_and_submit(self, free: int) -> list[Claimed]:
        """Ack what is pending and claim up to ``free`` tasks (one transaction); start them."""
        app = self.app
        now = app.clock.time()
        woke = self.woken_by_commit  # step() clears it after this claim
        pacer = self.pacer
        mono = app.clock.monotonic()
        held = pacer.wait(mono)
        if held > 0:
            self._held = held
            return []
        if mono < self._quiet_until and not self._more and not pacer.paced:
            # Woken meanwhile by something else (a pool process, a timer):
            # the look waits for the end of the quiet spell.
            return []
        if (
            not self._more
            and not pacer.paced
            and not (woke and self._wakes_find_work)
            and not self._maybe_ready(now)
        ):
            if woke:
                self._found_nothing(mono)
            return []
        done, self._pending = self._pending, []
        try:
            applied, claimed, revoked = app.storage.complete_and_claim(
                self._completions(done),
                now,
                self.worker_id,
                self.queues,
                free,
                self.lease,
            )
        except StorageError:
            self._pending = done + self._pending
            raise
        self._more = len(claimed) >= free
        pacer.claimed(len(claimed), free, mono)
        if woke:
            self._wakes_find_work = bool(claimed)
            if not claimed:
                self._found_nothing(mono)
        if claimed:
            self._empty_wakes.reset()
        self._finished(done, applied)
        if not claimed:
            return claimed
        receivers = signals.task_received.has_receivers()
        recorded = self._record_claim(claimed, receivers)
        claimed = self._screen(claimed, revoked)
        runtime = self.runtime
        if runtime is not None:
            runtime.tasks_started()
        if receivers:
            self._received(claimed)
        admitted = []
        for c in claimed:
            eta = self.rate_limiter.admit(c, now)
            if eta is not None:
                self._deferred.append((c, eta))
                continue
            if self._info:
                logger.info("Task %s[%s] received", c.name, c.task_id)
            admitted.append(c)
        if recorded is not None and not self._handing_over(recorded):
            # Still on record as not started: they must not start here.
            self._give_back.extend(admitted)
            admitted = []
        if admitted:
            acking = self._acking_pool
            if (
                acking is not None
                and len(admitted) == 1
                and not self._more
                and not self._pending
                and acking.running() == 0
            ):
                # A lone task (the queue held no other, nothing else runs):
                # no ack to group it with, so its pool process acks it at
                # once, and whoever waits for its result need not wait for
                # this process to hear of it first.
                acking.submit_many(admitted, ack_lone=True)
            else:
                self.pool.submit_many(admitted)
        return claimed

    def _found_nothing(self, mono: float) -> None:
        """A commit woke the worker and it found nothing to run: count it.

        From :data:`QUIET_AFTER` such wake-ups in a row on, the run loop
        listens for commits again only :data:`QUIET_FOR` seconds later (see
        :meth:`quiet_left`), until a look finds tasks. Wake-ups more than
        :data:`~liteq.wakeup.QUIET_RESET` seconds apart are no stream: the
        count starts again.
        """
        if self._empty_wakes.woke(mono):
            self._quiet_until = mono + QUIET_FOR

    def _record_claim(self, claimed: list[Claimed], receivers: bool) -> int | None:
        """Record a claim as held and not started, until it is handed to the pool.

        Between the claim's commit and the hand-over come the ``task_received``
        receivers and a log line per task: a worker killed meanwhile must not
        leave these tasks to end WorkerLostError, since none started; recovery
        puts them back in the queue (see :mod:`.handoff`). A lone task without
        receivers or INFO logging is handed over at once and is not recorded.

        Returns:
            How many tasks were recorded, or None if none were.
        """
        handoffs = self.handoffs
        if handoffs is None or (len(claimed) == 1 and not receivers and not self._info):
            return None
        return len(claimed) if handoffs.hand(CLAIM_SLOT, claimed) else None

    def _handing_over(self, recorded: int) -> bool:
        """Mark the recorded claim as handed over; False if it stays "not started"."""
        assert self.handoffs is not None
        return self.handoffs.started(CLAIM_SLOT, recorded)

    def _received(self, claimed: list[Claimed]) -> None:
        """Send ``task_received`` for each task taken, before rate limits apply (as Celery)."""
        for c in claimed:
            request = received_request(self.app, c, self.hostname)
            if request is not None:
                signals.task_received.send(sender=self, request=request)

    def claim(self, limit: int) -> list[Claimed]:
        """Claim up to ``limit`` tasks; revoked ones are set aside to end REVOKED.

        Raises:
            StorageError: the claim failed (nothing was claimed).
        """
        app = self.app
        claimed = app.storage.claim(
            self.worker_id, self.queues, limit, app.clock.time(), self.lease
        )
        return self._screen(claimed) if claimed else claimed

    def _screen(
        self, claimed: list[Claimed], revoked: set[str] | None = None
    ) -> list[Claimed]:
        """Set revoked tasks among ``claimed`` aside (they end REVOKED); return the rest.

        ``revoked``: the revoked ids among them, if the claim looked them up.
        """
        app = self.app
        if revoked is None:
            try:
                revoked = app.storage.revoked_among([c.task_id for c in claimed])
            except StorageError as exc:
                # The tasks are ours now: run them rather than strand them.
                logger.warning("could not check the revoked list (%s)", exc)
                revoked = set()
        if revoked:
            for c in claimed:
                if c.task_id in revoked:
                    logger.info("Discarding revoked task: %s[%s]", c.name, c.task_id)
                    if signals.task_revoked.has_receivers():
                        signals.task_revoked.send(
                            sender=app.tasks.get(c.name),
                            request=received_request(app, c, self.hostname),
                            terminated=False,
                            signum=None,
                            expired=False,
                            task_id=c.task_id,
                        )
                    outcome = end_claimed(
                        app,
                        c,
                        TaskRevokedError("revoked"),
                        states.REVOKED,
                        hostname=self.hostname,
                    )
                    self._pending.append((c, outcome))
            claimed = [c for c in claimed if c.task_id not in revoked]
        return claimed

    def _absorb(self, finished: Finished) -> None:
        """Queue what the pool finished: outcomes to apply, tasks to give back."""
        for item in finished.interrupted:
            if item.self_acked and self._acked_before_death(item.claimed):
                continue
            if item.lost_message:
                logger.error("%s", item.lost_message)
            outcome = outcomes.interrupted_outcome(
                self.app, item, self.hostname, self.max_deliveries
            )
            self._pending.append((item.claimed, outcome))
        if finished.done:
            self._pending.extend(finished.done)
        if finished.acked:
            # Acked by the pool process itself: count and log them only.
            acked = finished.acked
            self._finished(acked, [report.acked is True for _, report in acked])
        if finished.unstarted:
            self._give_back.extend(finished.unstarted)

    def _acked_before_death(self, claimed: Claimed) -> bool:
        """True if the pool process that died acked ``claimed`` first.

        Its stored outcome then stands: the task is counted, not reported
        lost (no ``task_failure``, no "lease lost" warning).
        """
        try:
            if self.app.storage.broker.holds(claimed):
                return False
        except StorageError as exc:
            logger.warning("could not read the claim of %s (%s)", claimed.task_id, exc)
            return False
        logger.debug(
            "Task %s[%s]: its pool process acked it, then exited",
            claimed.name,
            claimed.task_id,
        )
        self.processed += 1
        return True

    def _flush(self) -> None:
        """Apply pending outcomes, give back unstarted tasks, defer rate-limited ones."""
        if self._pending:
            done, self._pending = self._pending, []
            try:
                self.finish(done)
            except StorageError:
                self._pending = done + self._pending
                raise
        self._flush_side()

    def _flush_side(self) -> None:
        """Give back unstarted tasks and defer rate-limited ones."""
        if self._give_back or self._deferred:
            broker = self.app.storage.broker
            if self._give_back:
                broker.give_back(self._give_back)
                self._give_back = []
            if self._deferred:
                broker.defer(self._deferred, self.app.clock.time())
                self._deferred = []

    def _finish(self, finished: Finished) -> None:
        """Apply what the pool finished (and anything pending), in one transaction."""
        self._absorb(finished)
        self._flush()

    def finish(self, done: Sequence[tuple[Claimed, Any]]) -> None:
        """Apply finished outcomes in one transaction, then log them.

        Raises:
            StorageError: the transaction failed; nothing was applied.
        """
        if not done:
            return
        applied = self.app.storage.complete(
            self._completions(done), self.app.clock.time()
        )
        self._finished(done, applied)

    @staticmethod
    def _completions(done: Sequence[tuple[Claimed, Any]]) -> list[Completion]:
        items = []
        for claimed, outcome in done:
            completion = outcome.completion
            completion.claimed = claimed
            items.append(completion)
        return items

    def _finished(
        self, done: Sequence[tuple[Claimed, Any]], applied: Sequence[bool]
    ) -> None:
        """Count and log applied outcomes (after their commit)."""
        self.processed += len(done)
        info = self._info
        more = False
        for (_claimed, outcome), ok in zip(done, applied, strict=True):
            completion = outcome.completion
            if (
                completion.followups
                or completion.requeue
                or completion.chord_group is not None
                or completion.retry_eta is not None
            ):
                # The commit may have queued tasks (callbacks, a chord's
                # body, a retry due now): claim again without probing.
                more = True
            if not ok:
                logger.warning(
                    "Task %s[%s] finished after its lease was lost; its outcome was dropped",
                    outcome.name,
                    outcome.task_id,
                )
            elif info or outcome.state != _SUCCESS:
                self.log_outcome(outcome)
        if more:
            self._more = True

    def log_outcome(self, outcome: Outcome | Report) -> None:
        """Log one outcome the way Celery does."""
        outcomes.log_outcome(outcome, self._info)

    def more_ready(self) -> None:
        """Tasks became ready (recovered, re-queued): claim without probing first."""
        self._more = True

    @property
    def holding(self) -> bool:
        """True if this round's claim was put off by the pacer (the run loop
        then waits for the pause, not for commits)."""
        return self._held > 0

    def quiet_left(self) -> float:
        """Seconds before commits may wake the worker again (0.0: now).

        Set after :data:`QUIET_AFTER` commit wake-ups in a row that found
        nothing: the run loop sleeps that long without listening, then
        looks once for the commits made meanwhile.
        """
        left = self._quiet_until - self.app.clock.monotonic()
        return left if left > 0 else 0.0

    def _claim_now(self) -> bool:
        """True if this round's acks queued tasks (callbacks, a chord's body,
        a retry) that a free pool slot should claim without waiting."""
        return self._more and not self.stopping and self.pool.wanted() > 0

    def _maybe_ready(self, now: float) -> bool:
        """Read-only probe before a claim: is anything ready or due?

        One query, which also tells the next ETA and lease expiry: when it
        finds nothing, :meth:`_idle_delay` in the same step needs no query
        of its own. (Keeps idle wake-ups off the write lock.)
        """
        commits = self.app.storage.db.commits
        ready, eta, lease = self.app.storage.broker.idle_facts(self.queues)
        if ready or (eta is not None and eta <= now):
            self._idle_seen = None
            return True
        self._idle_seen = (self._steps, commits, _earliest(eta, lease))
        return False

    # -- upkeep (see :mod:`.upkeep`) -------------------------------------------------------
    def recover(self, dead_workers: Sequence[str] = ()) -> None:
        """Recover expired leases (and the tasks of ``dead_workers`` at once).

        Raises:
            StorageError: the recovery failed (nothing was changed).
        """
        self.upkeep.recover(dead_workers)

    def check_liveness(self) -> list[str]:
        """Recover the tasks of registered workers on this host whose process is gone."""
        return self.upkeep.check_liveness()

    def heartbeat(self) -> list[tuple[str, str | None]]:
        """Refresh the registration and renew the leases of running tasks.

        Returns:
            ``(task_id, signal)`` of running tasks someone asked to terminate.
        """
        return self.upkeep.heartbeat()

    def _idle_delay(self) -> float:
        app = self.app
        now = app.clock.time()
        delay = self.fallback_poll
        seen = self._idle_seen
        if (
            seen is not None
            and seen[0] == self._steps
            and seen[1] == app.storage.db.commits
        ):
            # Read in this very step, and this process committed nothing
            # since: another process's commit would wake the loop anyway.
            nxt = seen[2]
        else:
            _ready, eta, lease = app.storage.broker.idle_facts(self.queues)
            nxt = _earliest(eta, lease)
        if nxt is not None and nxt > now:
            delay = min(delay, nxt - now)
        delay = min(delay, self.upkeep.next_due() - app.clock.monotonic())
        deadline = self.pool.next_deadline()
        if deadline is not None:
            delay = min(delay, deadline - time.monotonic())
        return max(0.001, delay)

    def _trouble(self, exc: StorageError) -> float:
        self._backoff = min(MAX_BACKOFF, max(0.05, self._backoff * 2))
        mono = time.monotonic()
        if mono - self._trouble_logged > 30.0 or self._backoff <= 0.05:
            self._trouble_logged = mono
            logger.warning(
                "%s; retrying in %.2fs (nothing is lost)", exc, self._backoff
            )
        return self._backoff

    # -- running ----------------------------------------------------------------------------
    def run(self, burst: bool = False) -> int:
        """Run until stopped (or, with ``burst``, until nothing is due).

        Returns:
            The process exit code: 0 after a normal or warm shutdown.
        """
        from .runtime import Runtime

        return Runtime(self).run(burst)

    def stop(self, graceful: bool = True) -> None:
        """Ask the worker to stop (thread-safe): warm if ``graceful``, else cold."""
        if graceful:
            self.warm_requested = True
        else:
            self.cold_requested = True
        self._poke()

    def request_pool_restart(self) -> None:
        """Replace the pool's processes once their running tasks end (thread-safe)."""
        self.pool_restart_requested = True
        self._poke()

    def banner(self) -> str:
        """Return the start-up banner: database, queues, concurrency, pool, tasks."""
        from .. import __version__

        self.import_modules()
        pool = self.pool_kind
        if pool == "prefork":
            from .prefork import default_start_method

            pool = f"prefork, {self.start_method or default_start_method()}"
        lines = [
            f"liteq {__version__} worker {self.hostname} (pid {os.getpid()})",
            f"  app:         {self.app.main or '__main__'}",
            f"  database:    {self.app.storage.path}",
            f"  concurrency: {self.concurrency} ({pool})",
            f"  queues:      {', '.join(self.queues)}",
        ]
        if self.limits.hard or self.limits.soft:
            lines.append(
                f"  time limits: soft {self.limits.soft or '-'}s, hard {self.limits.hard or '-'}s"
            )
        if self.beat:
            lines.append("  beat:        embedded")
        names = sorted(
            n for n in self.app.tasks if not n.startswith(("liteq.", "celery."))
        )
        lines.append("")
        lines.append("[tasks]")
        lines.extend(f"  . {name}" for name in names)
        if self.autoimport:
            lines.append("  (other module.function tasks are imported when first seen)")
        return "\n".join(lines)
