"""The worker's supervisor thread: heartbeat, terminate requests, in-process limits.

It runs beside the worker loop so that these keep happening while the loop
is busy — or, with the solo pool, while the loop itself is running a task:

* every ``lease / 3`` seconds it refreshes the worker's registration and
  renews the lease of every task the worker runs (one transaction each);
* while tasks run, it looks ten times a second (one ``PRAGMA data_version``,
  and a query only when the file changed) for ``revoke(terminate=True)``
  requests and has the pool stop those tasks;
* for the solo and threads pools it fires soft and hard time limits.

When nothing runs it sleeps until the next heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

from ..exceptions import StorageError

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("liteq.worker")

#: Seconds between terminate-request checks while tasks run.
TERMINATE_CHECK = 0.1
#: Seconds before retrying a heartbeat that failed.
HEARTBEAT_RETRY = 2.0


def signal_number(name: str | None) -> int:
    """Return the number of a signal name (``"SIGKILL"``, ``"KILL"``, ``"9"``); SIGTERM by default."""
    if not name:
        return int(signal.SIGTERM)
    text = str(name).strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal, text))
    except AttributeError:
        logger.warning("unknown signal %r for terminate; using SIGTERM", name)
        return int(signal.SIGTERM)


class Supervisor:
    """Runs :meth:`loop` in a daemon thread until :meth:`stop`."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.interval = max(0.05, worker.lease / 3.0)
        self._stop = threading.Event()
        self._kick = threading.Event()
        #: True while the loop watches running tasks (no kick needed).
        self.busy = False
        self._thread: threading.Thread | None = None
        self._requested: set[str] = set()
        self._data_version: int | None = None
        #: A request named a task not running here (yet): ask again next time.
        self._unresolved = False

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(
            target=self.loop, name="liteq-supervisor", daemon=True
        )
        self._thread.start()

    def kick(self) -> None:
        """Tasks started: look after them now rather than at the next heartbeat."""
        self._kick.set()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def loop(self) -> None:
        """Heartbeat, terminate and enforce limits until stopped; never dies of an error."""
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception:
                logger.exception("supervisor error; going on")
                self._stop.wait(1.0)
        with contextlib.suppress(StorageError):
            self.worker.app.storage.close()  # this thread's connection

    def _loop(self) -> None:
        worker = self.worker
        pool = worker.pool
        next_beat = time.monotonic() + self.interval
        next_check = 0.0
        watch_until = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                try:
                    self.handle_terminates(worker.heartbeat())
                    next_beat = now + self.interval
                except StorageError as exc:
                    logger.warning("heartbeat failed (%s); retrying", exc)
                    next_beat = now + min(self.interval, HEARTBEAT_RETRY)
            if pool.kind != "prefork":
                pool.enforce(now)
            if self._kick.is_set():
                self._kick.clear()
                # The task may reach the pool just after this look.
                watch_until = now + 1.0
            busy = self.busy = pool.running() > 0 or now < watch_until
            if busy and now >= next_check:
                next_check = now + TERMINATE_CHECK
                self.check_terminates()
            elif not busy:
                self._requested.clear()
            wait = next_beat - now
            if busy:
                wait = min(wait, max(0.0, next_check - now))
            if pool.kind != "prefork":
                deadline = pool.next_deadline()
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - now))
            self._kick.wait(max(0.001, wait))

    def check_terminates(self) -> None:
        """Read terminate requests if the file changed since the last look."""
        storage = self.worker.app.storage
        try:
            version = storage.db.data_version()
            if version == self._data_version and not self._unresolved:
                return
            self._data_version = version
            requests = storage.broker.terminate_requests(self.worker.worker_id)
        except StorageError as exc:
            logger.debug("terminate check failed: %s", exc)
            return
        self.handle_terminates(requests)

    def handle_terminates(self, requests: list[tuple[str, str | None]]) -> None:
        """Have the pool stop each requested task (once each)."""
        self._unresolved = False
        for task_id, sig in requests:
            if task_id in self._requested:
                continue
            signum = signal_number(sig)
            if self.worker.pool.terminate(task_id, signum):
                self._requested.add(task_id)
                logger.info("Terminating task %s (signal %s)", task_id, signum)
            else:
                self._unresolved = True
