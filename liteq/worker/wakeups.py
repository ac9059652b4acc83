"""How the worker loop sleeps: on file descriptors, woken by what matters.

The loop blocks in one ``poll`` over

* a control pipe — signal handlers, ``stop()``, pool restarts and the
  threads pool's finished tasks write one byte to it;
* the database: an inotify descriptor on its directory (Linux, see
  :func:`liteq.wakeup.open_watch`), or else a pipe fed by the process's
  :class:`~liteq.wakeup.Waker` (a watchdog observer); same-process commits
  by other threads (beat, the supervisor, a threads-pool task) come through
  the Waker either way;
* the pool's pipes and process sentinels (a child finished or died).

The database is only watched while the pool has a free slot (and the pacer
does not hold the next claim back). Meanwhile the inotify watch is removed:
even unread, it costs every write to the directory an event, which
producers pay on each commit. When the loop listens again it re-arms the
watch and looks at once, and again on the re-check schedule below, for the
commits made meanwhile. A database
wake is confirmed with ``PRAGMA data_version`` before the loop goes to work.
The event of a commit's first page comes before the commit is visible: a
wake that shows no change yet is confirmed by spinning on ``data_version``
for up to :data:`~liteq.wakeup.SETTLE` seconds (unless the loop's own commit
made the event). After any file event the loop looks again a few times up
to a second later (see :data:`~liteq.wakeup.RECHECKS`), across its sleeps:
a wake that showed an earlier commit, or a pool message read first, may
leave a later commit whose events came with it not visible yet (with
``durable=True`` a commit shows only after its WAL is synced, milliseconds
after its last event). Commits made by the loop's own thread do
not wake it: their inotify events are read as soon as the commit returns,
and the next wait looks again a few times in case another process's commit
was among them.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Iterable

from ..exceptions import StorageError
from ..wakeup import (
    DEGRADED_FALLBACK,
    RECHECKS,
    SETTLE,
    FileWatch,
    Waker,
    open_watch,
    spin_until,
    wait_readable,
    warn_watch_lost,
)

#: Why :meth:`Wakeups.wait` returned.
TIMEOUT, CONTROL, DATABASE, POOL = "timeout", "control", "database", "pool"


def _pipe() -> tuple[int, int]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(fd, 4096):
            pass


class Wakeups:
    """The worker loop's interruptible sleep.

    Args:
        waker: The process's waker for the database file.
        data_version: Returns ``PRAGMA data_version`` of the loop's connection.
        inotify: Watch the file with inotify where possible (else the Waker's
            watchdog observer).
    """

    def __init__(
        self, waker: Waker, data_version: Callable[[], int], inotify: bool = True
    ) -> None:
        self.waker = waker
        self.data_version = data_version
        self._use_inotify = inotify
        self._ctl_r, self._ctl_w = _pipe()
        self._db_r, self._db_w = _pipe()
        self._db_pending = False
        self._own_commit = False
        self._drained_own = False
        #: When to look again for commits whose file events came before they
        #: were visible: kept from one wait to the next, since the loop may
        #: have gone to work (on a pool process's report, or on an earlier
        #: commit that was visible) before they showed.
        self._rechecks: list[float] = []
        self._loop_ident = threading.get_ident()
        self._version: int | None = None
        self._watch: FileWatch | None = None
        self._poll = select.poll()
        self._poll.register(self._ctl_r, select.POLLIN)
        self._registered: set[int] = set()
        self._started_waker = False
        #: Seconds between looks while listening, once the watch was lost.
        self._poll_every: float | None = None
        #: True if file changes by other processes wake the loop (else it polls).
        self.watching = False

    def start(self) -> None:
        """Listen to the waker and start watching the file."""
        self._loop_ident = threading.get_ident()
        self.waker.add_listener(self._on_change)
        if self._use_inotify:
            self._watch = open_watch(self.waker.path)
        if self._watch is None:
            # A watcher thread: the waker's listener feeds this loop's pipe.
            self._started_waker = self.waker.start(threaded=True)
        self.watching = self._watch is not None or self._started_waker
        with contextlib.suppress(StorageError):
            self._version = self.data_version()

    def close(self) -> None:
        """Stop listening and close the descriptors."""
        self.waker.remove_listener(self._on_change)
        if self._watch is not None:
            self._watch.close()
        if self._started_waker:
            self.waker.stop()
        for fd in (self._ctl_r, self._ctl_w, self._db_r, self._db_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _on_change(self) -> None:
        if threading.get_ident() == self._loop_ident:
            watch = self._watch
            if watch is not None and watch.armed:
                # The loop's own commit: its file events are queued already
                # (each write makes its event before it returns). Read them
                # now instead of waking up for them; the next wait looks
                # again shortly, for another process's commit whose events
                # were read with these.
                watch.discard()
                self._drained_own = True
            elif watch is None:
                # Its events come later, through the Waker: no settling.
                self._own_commit = True
            return
        if self._db_pending:
            return
        self._db_pending = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._db_w, b"d")

    def poke(self) -> None:
        """Wake the loop now (safe from signal handlers and other threads)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._ctl_w, b"c")

    def _changed(self) -> bool:
        try:
            version = self.data_version()
        except StorageError:
            return True  # let the loop find out, and back off
        if version != self._version:
            self._version = version
            return True
        return False

    def _watch_fds(self, pool_fds: Iterable[int], database: bool) -> set[int]:
        wanted = set(pool_fds)
        if database:
            wanted.add(self._db_r)
            if self._watch is not None:
                wanted.add(self._watch.fd)
        registered = self._registered
        if wanted != registered:
            for fd in registered - wanted:
                with contextlib.suppress(KeyError, ValueError):
                    self._poll.unregister(fd)
            for fd in wanted - registered:
                self._poll.register(fd, select.POLLIN)
            self._registered = wanted
        return wanted

    def _listen(self, database: bool) -> bool:
        """Arm the watch if the loop listens for commits, else disarm it.

        Returns:
            True if it was just re-armed: commits made while it was off
            produced no event, so the caller must look for them itself.
        """
        watch = self._watch
        if watch is None:
            return False
        if not database:
            watch.disarm()
            return False
        if watch.armed:
            return False
        if not watch.arm():
            warn_watch_lost(self.waker.path)
            self._watch = None
            watch.close()
            self._poll_every = DEGRADED_FALLBACK
            self.watching = False
        return True

    def _look_again(self) -> list[float]:
        """Schedule the looks for a commit not visible yet; return the schedule."""
        now = time.monotonic()
        self._rechecks = [now + delay for delay in RECHECKS]
        return self._rechecks

    def wait(self, timeout: float, pool_fds: Iterable[int], database: bool) -> str:
        """Sleep until something happens or ``timeout`` seconds pass.

        Args:
            timeout: Seconds to sleep at most.
            pool_fds: The pool's pipes and process sentinels.
            database: Also wake on database changes (the pool has a free slot).

        Returns:
            :data:`CONTROL`, :data:`POOL`, :data:`DATABASE` or :data:`TIMEOUT`.
        """
        rearmed = self._listen(database)
        self._watch_fds(pool_fds, database)
        watch_fd = self._watch.fd if self._watch is not None else -1
        deadline = time.monotonic() + timeout
        if rearmed or (self._drained_own and database):
            self._look_again()
        self._drained_own = False
        if rearmed and self._changed():
            return DATABASE
        while True:
            # Commits are looked for only while the database is watched.
            rechecks = self._rechecks if database else []
            if database and self._poll_every is not None and not rechecks:
                rechecks.append(time.monotonic() + self._poll_every)
            until = min(deadline, rechecks[0]) if rechecks else deadline
            fds = [self._ctl_r, *self._registered]
            ready = set(wait_readable(self._poll, fds, until - time.monotonic()))
            if self._ctl_r in ready:
                _drain(self._ctl_r)
                return CONTROL
            seen = False
            if database and self._db_r in ready:
                self._db_pending = False
                _drain(self._db_r)
                seen = True
            if database and watch_fd in ready:
                assert self._watch is not None
                seen = self._watch.drain() or seen
            if seen:
                # Some of these events' commits may not be visible yet, even
                # if an earlier commit is: look again over the next second.
                rechecks = self._look_again()
                if self._changed():
                    return DATABASE
                own, self._own_commit = self._own_commit, False
                if (
                    not own
                    and not ready - {self._db_r, watch_fd}
                    and spin_until(self._changed, SETTLE)
                ):
                    # Woken by a commit's first page: it is visible now.
                    return DATABASE
            if ready - {self._db_r, watch_fd}:
                return POOL
            now = time.monotonic()
            if rechecks and now >= rechecks[0]:
                while rechecks and now >= rechecks[0]:
                    rechecks.pop(0)
                if self._changed():
                    return DATABASE
            if now >= deadline:
                return TIMEOUT
