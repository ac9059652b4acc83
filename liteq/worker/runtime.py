"""``Worker.run``: the loop around ``step``, signals, shutdown and restart.

Signals only set flags (and wake the loop through a pipe):

* SIGTERM, first SIGINT — warm shutdown: claim nothing more, let running
  tasks finish within ``shutdown_grace`` seconds, give back anything claimed
  but not started, unregister, exit 0;
* second SIGINT, SIGQUIT, or the grace period over — cold shutdown: pool
  processes are killed and their tasks follow the worker-lost rule
  (``acks_late`` → back to the queue, otherwise FAILURE(WorkerLostError));
  exit 1. A third SIGINT gets Python's default (KeyboardInterrupt);
* SIGHUP — restart in place: a warm shutdown, then the process re-executes
  its own command line, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from .. import signals
from ..exceptions import ConfigurationError, StorageError
from .checkpoint import Checkpointer
from .supervisor import Supervisor
from .wakeups import DATABASE, TIMEOUT, Wakeups

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("liteq.worker")

#: Seconds a cold shutdown waits for killed children to be reaped.
COLD_JOIN = 5.0
#: Attempts at writing the last outcomes when the database is busy at exit.
FINAL_ATTEMPTS = 20


class Runtime:
    """One ``run()`` of a worker."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.wakeups: Wakeups | None = None
        self.supervisor: Supervisor | None = None
        self.checkpointer: Checkpointer | None = None
        self._checkpoint_wal = False
        self.beat: Any = None
        self._old_handlers: dict[int, Any] = {}
        self._sigints = 0
        self._signal_name: str | None = None
        self._grace_deadline: float | None = None
        self._announced = False
        #: Why the worker stops when no signal asked it to ("burst" or "requested").
        self._reason = "requested"

    def poke(self) -> None:
        """Wake the loop (thread- and signal-safe)."""
        if self.wakeups is not None:
            self.wakeups.poke()

    def tasks_started(self) -> None:
        """Tasks were handed to the pool: make sure the supervisor watches them."""
        supervisor = self.supervisor
        if supervisor is not None and not supervisor.busy:
            supervisor.kick()

    # -- signals ---------------------------------------------------------------------------
    def _install_signals(self) -> None:
        if not self.worker.install_signal_handlers:
            return
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not in the main thread: signal handlers not installed")
            return
        for name, handler in (
            ("SIGTERM", self._on_term),
            ("SIGINT", self._on_int),
            ("SIGQUIT", self._on_quit),
            ("SIGHUP", self._on_hup),
        ):
            signum = getattr(signal, name, None)
            if signum is not None:
                self._old_handlers[signum] = signal.signal(signum, handler)

    def _restore_signals(self) -> None:
        for signum, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)
        self._old_handlers.clear()

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        self._signal_name = self._signal_name or "SIGTERM"
        self.worker.warm_requested = True
        self.poke()

    def _on_int(self, signum: int, frame: FrameType | None) -> None:
        self._sigints += 1
        self._signal_name = "SIGINT"
        if self._sigints == 1:
            self.worker.warm_requested = True
        else:
            self.worker.cold_requested = True
            # A third Ctrl-C interrupts whatever is still going on.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.poke()

    def _on_quit(self, signum: int, frame: FrameType | None) -> None:
        self._signal_name = "SIGQUIT"
        self.worker.cold_requested = True
        self.poke()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self._signal_name = "SIGHUP"
        self.worker.restart_requested = True
        self.worker.warm_requested = True
        self.poke()

    # -- the run ------------------------------------------------------------------------
    def run(self, burst: bool) -> int:
        """Run the worker; see :meth:`Worker.run`."""
        worker = self.worker
        app = worker.app
        worker.runtime = self
        beat_class = self._beat_class() if worker.beat else None
        signals.worker_init.send(sender=worker)
        self.wakeups = Wakeups(app.waker, app.storage.db.data_version)
        self._install_signals()
        code = 1
        try:
            worker.start()
            self.wakeups.start()
            if not self.wakeups.watching:
                worker.fallback_poll = min(worker.fallback_poll, app.waker.fallback)
            self.supervisor = Supervisor(worker)
            self.supervisor.start()
            checkpointer = Checkpointer(app)
            with contextlib.suppress(StorageError):
                if checkpointer.start():
                    self.checkpointer = checkpointer
                    # It checkpoints for every writer: no second thread.
                    self._checkpoint_wal = app.storage.db.checkpoint_wal
                    app.storage.db.checkpoint_wal = False
                    app.storage.db.stop_wal_checkpointer()
            if beat_class is not None:
                self.beat = beat_class(app)
                self.beat.start()
            signals.worker_ready.send(sender=worker)
            logger.info("%s ready.", worker.hostname)
            code = self._loop(burst)
        finally:
            code = self._shutdown(code)
        if worker.restart_requested and not worker.cold_requested:
            self._reexec()
        return code

    @staticmethod
    def _beat_class() -> Any:
        try:
            # Beat lives beside the worker, not below it: resolved at run time.
            return importlib.import_module("liteq.beat").EmbeddedBeat
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                f"beat is not available in this liteq installation ({exc}); "
                "run without -B/--beat"
            ) from exc

    def _loop(self, burst: bool) -> int:
        worker = self.worker
        pool = worker.pool
        assert self.wakeups is not None
        while True:
            self._handle_requests()
            if worker.cold_requested:
                return 1
            if worker.stopping:
                if pool.running() == 0 and not worker._pending:
                    return 0
                assert self._grace_deadline is not None
                if time.monotonic() >= self._grace_deadline:
                    logger.warning(
                        "Shutdown grace period (%.0fs) over: stopping running tasks",
                        worker.shutdown_grace,
                    )
                    worker.cold_requested = True
                    continue
            delay = worker.step()
            fatal = pool.fatal()
            if fatal is not None:
                logger.critical("the pool cannot run tasks; stopping the worker")
                worker.cold_requested = True
                return 1
            if delay <= 0:
                continue
            if (
                burst
                and not worker.stopping
                and pool.running() == 0
                and pool.idle() > 0
                and not worker._pending
                and not worker.holding
            ):
                # An expected end, not a stop request: INFO, never WARNING.
                self._reason = "burst"
                logger.info("Burst: nothing due, exiting")
                return 0
            if worker.stopping and self._grace_deadline is not None:
                delay = min(delay, max(0.0, self._grace_deadline - time.monotonic()))
            # Not while the pacer holds the next claim back: each of a
            # producer's commits would wake the loop for nothing.
            listen = not worker.stopping and pool.idle() > 0 and not worker.holding
            fds = pool.wait_objects()
            quiet = worker.quiet_left() if listen else 0.0
            if quiet > 0:
                # Commits kept waking it for nothing: sleep through them,
                # then listen (and look once for what came meanwhile).
                woke = self.wakeups.wait(min(delay, quiet), fds, database=False)
                if woke == TIMEOUT and delay > quiet:
                    woke = self.wakeups.wait(delay - quiet, fds, database=True)
            else:
                woke = self.wakeups.wait(delay, fds, database=listen)
            # Before the pool's messages are read: a pool process's report
            # that came with the commit does not make it look idle.
            worker.woken_by_commit = woke == DATABASE and pool.running() == 0

    def _handle_requests(self) -> None:
        worker = self.worker
        if worker.pool_restart_requested:
            worker.pool_restart_requested = False
            if worker.pool.kind == "prefork":
                logger.warning("Restarting the pool processes")
                worker.pool.restart()
            else:
                # Threads cannot re-import changed code: restart the process.
                worker.restart_requested = True
                worker.warm_requested = True
        if worker.warm_requested and not worker.stopping:
            self._announce("Warm", 0)
            worker.stopping = True
            self._grace_deadline = time.monotonic() + worker.shutdown_grace
            worker.pool.stop()

    def _announce(self, how: str, exitcode: int) -> None:
        if self._announced:
            return
        self._announced = True
        worker = self.worker
        what = "restart" if worker.restart_requested and how == "Warm" else "shutdown"
        level = logging.WARNING if self._signal_name or how == "Cold" else logging.INFO
        logger.log(
            level, "worker: %s %s (%s)", how, what, self._signal_name or self._reason
        )
        signals.worker_shutting_down.send(
            sender=worker.hostname, sig=self._signal_name, how=how, exitcode=exitcode
        )

    # -- shutdown ------------------------------------------------------------------------
    def _shutdown(self, code: int) -> int:
        worker = self.worker
        pool = worker.pool
        cold = worker.cold_requested or code != 0
        worker.stopping = True
        self._announce("Cold" if cold else "Warm", code)
        if cold and worker._started:
            worker.cold_requested = True
            pool.kill()
        elif worker._started:
            pool.stop()
        if worker._started:
            if not cold:
                pool.join(max(1.0, worker.shutdown_grace))
            elif pool.kind == "prefork":
                pool.join(COLD_JOIN)
            self._final_finish()
            if pool.running():
                # Threads cannot be killed: hand their tasks over now rather
                # than after their leases expire.
                with contextlib.suppress(StorageError):
                    worker.recover([worker.worker_id])
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
            # A process that goes on committing after an in-process worker
            # gets its WAL checkpoint thread back (from its next commit on).
            worker.app.storage.db.checkpoint_wal = self._checkpoint_wal
        if self.beat is not None:
            try:
                self.beat.stop()
            except Exception as exc:  # noqa: BLE001 - shutting down anyway
                logger.warning("beat did not stop cleanly: %s", exc)
        if self.wakeups is not None:
            self.wakeups.close()
            self.wakeups = None
        if worker._started:
            try:
                worker.upkeep.unregister()
            except StorageError as exc:
                logger.warning("could not unregister the worker: %s", exc)
        if worker.handoffs is not None:
            # Whatever still runs was handed over above, without the files.
            worker.handoffs.close()
        self._restore_signals()
        worker.runtime = None
        signals.worker_shutdown.send(sender=worker)
        with contextlib.suppress(StorageError):
            worker.app.close()
        return 1 if cold else code

    def _final_finish(self) -> None:
        worker = self.worker
        finished = worker.pool.collect()
        for attempt in range(FINAL_ATTEMPTS):
            try:
                worker._finish(finished)
                return
            except StorageError as exc:
                finished = worker.pool.collect()
                if attempt == FINAL_ATTEMPTS - 1:
                    logger.error(
                        "could not record the last outcomes (%s); their tasks will be "
                        "recovered by the next worker",
                        exc,
                    )
                    return
                time.sleep(min(1.0, 0.05 * 2**attempt))

    def _reexec(self) -> None:
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        logger.warning("Restarting in place: %s", " ".join(argv))
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        try:
            os.execv(sys.executable, [sys.executable, *argv[1:]])
        except OSError as exc:
            logger.critical("cannot restart: %s", exc)
