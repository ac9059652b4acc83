"""Wake-ups on database changes, without busy polling.

One :class:`Waker` per process and database file. Every commit writes the
file's ``-wal`` file, so a watch on the file's directory, kept to the ``-wal``
file (and the file itself), sees the commits of every process; same-process
commits notify the Waker directly.

On Linux the watch is a raw inotify descriptor and no thread is involved: a
waiting thread sleeps in ``poll`` on it itself (when several threads wait,
one of them polls and wakes the others), so another process's commit wakes
the waiter directly instead of through watchdog's two threads. The
directory is watched only while a :meth:`Waker.wait_for` runs (or for good
after :meth:`Waker.start`): a watched directory makes every write of every
process an event, which a process enqueuing between its waits would pay
for at each commit. Elsewhere, or
when inotify cannot be used, a watchdog observer thread watches the
directory. Waiters re-check their condition on every wake, look again a few
times shortly after a wake that found nothing (an event can arrive before
the commit is visible, see :data:`RECHECKS`), and poll slowly as a fallback.
When no watcher can start (inotify limits, a filesystem without events), the
fallback poll drops to 50 ms.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .clock import Clock, SystemClock

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between fallback checks while the file watcher works.
DEFAULT_FALLBACK = 1.0
#: Seconds between checks when no file watcher could be started.
DEGRADED_FALLBACK = 0.05
#: Seconds before the first re-check after a wake that found nothing new.
RECHECK_DELAY = 0.001
#: Seconds after a wake-up at which to look again. A commit's last ``-wal``
#: write makes the event, and the commit becomes visible just after it, when
#: the wal-index (shared memory, no event) is updated: usually microseconds
#: later, but a writer preempted in between can take milliseconds, so the
#: looks thin out rather than stop (measured: a single look 0.5 ms after the
#: event sometimes missed a commit for the whole fallback).
RECHECKS = (RECHECK_DELAY, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0)
#: Wake-ups of a :meth:`Waker.wait_for` (``get()``, ``join()``) in a row,
#: each within :data:`QUIET_RESET` of the last, after which it pauses
#: :data:`QUIET_FOR` seconds before each further look: a stream of other
#: processes' commits (other tasks, other results) otherwise costs it a look
#: per commit, about 85 µs of CPU each, most of a core at 10,000 commits a
#: second. High, since the steps of the awaited work wake it too (a chain's
#: claims and acks: two per step, so a chain of up to eight steps never
#: pauses).
WAIT_QUIET_AFTER = 16
#: Seconds between two wake-ups for nothing after which their count starts
#: again (see :class:`WakeStreak`), here and in a worker's loop: a commit now
#: and then is no stream, and never delays the look that finds the work.
QUIET_RESET = 0.05
#: Seconds of such a pause, here and in a worker's loop; at most this much
#: later does the waiter see what it waits for, and only while such a stream
#: goes on.
QUIET_FOR = 0.002
#: Sleeps shorter than this (seconds) use ``select``, whose timeout has
#: microseconds, where ``poll`` rounds up to a whole millisecond.
SHORT_SLEEP = 0.002
#: Seconds to spin on a cheap "did the file change?" probe after a file
#: event, before looking: a commit writes its pages one by one, each write an
#: event, and is visible only after the last. Spinning, not sleeping: waking
#: from a sleep this short took 100-150 µs on the test VM.
SETTLE = 0.0002
#: ``select`` only takes descriptors below this number.
_FD_SETSIZE = 1024

#: inotify event bits (linux/inotify.h).
IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
IN_Q_OVERFLOW = 0x4000
_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, 0o2000000
_HEADER = struct.Struct("iIII")
_libc: Any = None


class FileWatch:
    """An inotify descriptor watching one SQLite file and its ``-wal`` (Linux).

    The descriptor is non-blocking and becomes readable when the file
    changes; the kernel merges repeated events nobody has read yet. A watch
    still costs every write to the directory an event (measured: about 10 µs
    per ``delay()``, and as much again when each commit's events are read),
    so a :class:`Waker` keeps it armed only while someone waits, and the
    worker loop only while it listens for commits.

    Args:
        fd: The inotify descriptor.
        names: File names (in ``directory``) whose events matter.
        directory: The watched directory.
        wd: The watch descriptor, if armed.
    """

    def __init__(
        self, fd: int, names: frozenset[bytes], directory: bytes, wd: int | None
    ) -> None:
        self.fd = fd
        self.names = names
        self.directory = directory
        self.wd = wd

    def fileno(self) -> int:
        """The descriptor to poll."""
        return self.fd

    def drain(self) -> bool:
        """Read every pending event; return True if one concerns the database."""
        relevant = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return relevant
            except OSError:
                return True  # closed under us: let the caller look
            if not data:
                return relevant
            offset = 0
            while offset + _HEADER.size <= len(data):
                _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                start = offset + _HEADER.size
                name = data[start : start + length].rstrip(b"\0")
                offset = start + length
                if mask & IN_Q_OVERFLOW or name in self.names:
                    relevant = True

    def discard(self) -> None:
        """Drop the pending events without looking at them (one ``read``)."""
        with contextlib.suppress(OSError):
            os.read(self.fd, 65536)

    @property
    def armed(self) -> bool:
        """True if changes in the directory produce events."""
        return self.wd is not None

    def arm(self) -> bool:
        """Watch the directory again after :meth:`disarm` (no-op if armed).

        Stale events (the removal's own) are dropped first; a change made
        after this returns is an event.

        Returns:
            False if the directory can no longer be watched.
        """
        if self.armed:
            return True
        self.discard()
        wd = _libc.inotify_add_watch(self.fd, self.directory, _MASK)
        if wd < 0:
            return False
        self.wd = wd
        return True

    def disarm(self) -> None:
        """Stop the directory's writes from producing events (until :meth:`arm`)."""
        wd, self.wd = self.wd, None
        if wd is not None:
            _libc.inotify_rm_watch(self.fd, wd)

    def close(self) -> None:
        """Close the descriptor."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


def open_watch(path: str) -> FileWatch | None:
    """Watch the SQLite file at ``path`` with inotify.

    Returns:
        The watch, or None where inotify cannot be used (not Linux, the
        per-user instance limit reached, a directory that cannot be watched).
    """
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    try:
        if _libc is None:
            import ctypes

            # The running program's own symbols include libc's (no search
            # through ldconfig, which would start a subprocess).
            _libc = ctypes.CDLL(None, use_errno=True)
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:
        return None
    directory = os.fsencode(os.path.dirname(os.path.abspath(path)) or ".")
    wd = _libc.inotify_add_watch(fd, directory, _MASK)
    if wd < 0:
        os.close(fd)
        return None
    base = os.fsencode(os.path.basename(path))
    return FileWatch(fd, frozenset({base, base + b"-wal"}), directory, wd)


class WakeStreak:
    """Counts wake-ups for nothing in a row, each within :data:`QUIET_RESET` of the last.

    Args:
        at: The count from which :meth:`woke` returns True (time to pause).
    """

    __slots__ = ("at", "count", "last")

    def __init__(self, at: int) -> None:
        self.at = at
        self.count = 0
        self.last = 0.0

    def woke(self, now: float) -> bool:
        """Count a wake-up at ``now`` (monotonic); True once ``at`` came in a row."""
        if now - self.last > QUIET_RESET:
            self.count = 0
        self.last = now
        self.count += 1
        return self.count >= self.at

    def reset(self) -> None:
        """The last wake-up found work: the streak is over."""
        self.count = 0


def warn_watch_lost(path: str) -> None:
    """Log that the file at ``path`` can no longer be watched (its waiters poll)."""
    logger.warning(
        "cannot watch %s for changes any more; polling every %.0f ms",
        path,
        DEGRADED_FALLBACK * 1000,
    )


def wait_readable(poller: Any, fds: list[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for one of ``fds`` to become readable.

    ``poller`` is a ``select.poll`` object with exactly ``fds`` registered;
    short timeouts go through ``select`` instead, for sub-millisecond sleeps.

    Returns:
        The readable descriptors (empty after a timeout).
    """
    if timeout < SHORT_SLEEP and max(fds, default=0) < _FD_SETSIZE:
        try:
            readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
        except InterruptedError:  # pragma: no cover - retried by callers
            return []
        return list(readable)
    return [fd for fd, _ in poller.poll(max(0.0, timeout) * 1000.0)]


def spin_until(done: Callable[[], bool], seconds: float) -> bool:
    """Call ``done`` without sleeping until it returns True or ``seconds`` pass.

    Returns:
        What ``done`` returned last.
    """
    end = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= end:
            return False
    return True


def _drain_pipe(fd: int) -> None:
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(fd, 4096):
            pass


class Waker:
    """Counts changes to one database file and wakes threads waiting for one."""

    def __init__(self, path: str, fallback: float = DEFAULT_FALLBACK) -> None:
        self.path = os.path.abspath(path)
        self.fallback = fallback
        # notify() takes the lock itself: entering the Condition is a Python
        # call, entering the lock is not (notify runs on every commit).
        self._mutex = threading.RLock()
        self._cond = threading.Condition(self._mutex)
        self._generation = 0
        self._observer: Any = None
        self._started = False
        self._pid = os.getpid()
        self._listeners: list[Callable[[], None]] = []
        # Watching without a thread: the waiting thread that holds ``_lead``
        # polls the inotify descriptor and a pipe that ``notify`` writes to
        # while it polls; other waiting threads wait on ``_cond``.
        self._watch: FileWatch | None = None
        self._poller: Any = None
        self._lead = threading.Lock()
        self._leading = False
        self._followers = 0
        self._kick_r = self._kick_w = -1
        # The direct watch is armed while a wait_for() runs, or for good
        # once start() was called (beat, listeners): a process that only
        # enqueues between its waits then pays nothing for it.
        self._waiting = 0
        self._pinned = False

    @property
    def generation(self) -> int:
        """A counter that increases on every change seen."""
        return self._generation

    @property
    def watching(self) -> bool:
        """True if changes made by other processes wake waiters."""
        return self._watch is not None or self._observer is not None

    def notify(self) -> None:
        """Record a change and wake every waiter (and call every listener)."""
        cond = self._cond
        with self._mutex:
            self._generation += 1
            # Usually nobody waits (a producer's own commits): skip the
            # bookkeeping of notify_all. Waiters register under this lock.
            if cond._waiters:  # type: ignore[attr-defined]
                cond.notify_all()
        watch = self._watch  # stop() may clear it meanwhile
        if watch is not None:
            if self._leading:
                self._kick()
            elif watch.armed and self._lead.acquire(blocking=False):
                # Nobody polls: the events of this process's own commit are
                # queued already; drop them so that they do not wake the next
                # wait for nothing. (Another process's events read here lose
                # nothing: waiters look again after any change of generation.)
                try:
                    watch = self._watch
                    if watch is not None:
                        watch.discard()
                finally:
                    self._lead.release()
        for listener in self._listeners:
            listener()

    def _kick(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._kick_w, b"k")

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` on every change, in the thread that saw it.

        For a loop that waits on file descriptors rather than on this
        object's condition (the worker); the listener must be quick. File
        events reach listeners only while a watcher thread runs (see
        :meth:`start`) or a thread waits in :meth:`wait`.
        """
        self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        # ``!=``, not ``is not``: a bound method is a new object at each access.
        self._listeners = [x for x in self._listeners if x != listener]

    def start(self, threaded: bool = False) -> bool:
        """Start watching the file (idempotent).

        Args:
            threaded: Watch from a thread of its own (watchdog), so that
                listeners hear of other processes' commits while no thread
                waits; otherwise inotify is polled by the waiting thread
                itself where possible.

        Returns:
            True if a file watcher runs; False if only the fallback poll does.
        """
        started = self._start(threaded)
        with self._mutex:
            self._pinned = True
            self._arm()
        return started

    def _start(self, threaded: bool) -> bool:
        if self._started:
            if threaded and self._observer is None and self._watch is not None:
                # Watched so far only while someone waits: listeners need more.
                self._start_observer()
            return self.watching
        self._started = True
        if not threaded and self._start_direct():
            return True
        return self._start_observer()

    def _start_direct(self) -> bool:
        watch = open_watch(self.path)
        if watch is None:
            return False
        if self._kick_r < 0:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._kick_r, self._kick_w = r, w
        poller = select.poll()
        poller.register(watch.fd, select.POLLIN)
        poller.register(self._kick_r, select.POLLIN)
        with self._lead:
            self._poller = poller
            self._watch = watch
        return True

    def _start_observer(self) -> bool:
        try:
            from watchdog.events import FileSystemEvent, FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            self.fallback = min(self.fallback, DEGRADED_FALLBACK)
            return False
        names = {self.path, self.path + "-wal"}
        waker = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if (
                    event.src_path in names
                    or getattr(event, "dest_path", None) in names
                ):
                    waker.notify()

        try:
            observer = Observer()
            observer.daemon = True
            observer.schedule(
                _Handler(), os.path.dirname(self.path) or ".", recursive=False
            )
            observer.start()
        except Exception as exc:
            logger.warning(
                "cannot watch %s for changes (%s); polling every %.0f ms instead",
                self.path,
                exc,
                DEGRADED_FALLBACK * 1000,
            )
            self.fallback = min(self.fallback, DEGRADED_FALLBACK)
            return False
        self._observer = observer
        return True

    def _arm(self) -> None:
        """Make sure the direct watch produces events (holding ``_mutex``)."""
        watch = self._watch
        if watch is not None and not watch.armed and not watch.arm():
            if self.fallback > DEGRADED_FALLBACK:  # once, not at every wait
                warn_watch_lost(self.path)
                self.fallback = DEGRADED_FALLBACK

    def _enter_wait(self) -> None:
        with self._mutex:
            self._waiting += 1
            self._arm()

    def _leave_wait(self) -> None:
        with self._mutex:
            self._waiting -= 1
            watch = self._watch
            if not self._waiting and not self._pinned and watch is not None:
                watch.disarm()

    def stop(self) -> None:
        """Stop the file watcher (waiters fall back to polling)."""
        observer, self._observer = self._observer, None
        self._started = False
        self._pinned = False
        if self._watch is not None:
            self._kick()
            # Close the descriptor only once no thread polls it: a number
            # reused by another open() must never be read from here.
            with self._lead:
                watch, self._watch = self._watch, None
                self._poller = None
            if watch is not None:
                watch.close()
            with self._cond:
                self._cond.notify_all()
        if observer is not None:
            observer.stop()
            if observer.is_alive() and threading.current_thread() is not observer:
                observer.join(timeout=2)

    def _forget_after_fork(self) -> None:
        # In a forked child: no thread polls here, and the descriptors are
        # copies of the parent's.
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        self._waiting = 0
        self._pinned = False
        for fd in (self._kick_r, self._kick_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._kick_r = self._kick_w = -1

    def wait(
        self,
        generation: int,
        timeout: float,
        clock: Clock | None = None,
        settled: Callable[[], bool] | None = None,
    ) -> int:
        """Wait until the generation moves past ``generation`` or ``timeout`` passes.

        Args:
            generation: The generation last seen.
            timeout: Seconds to wait at most.
            clock: An injected clock makes this return at once.
            settled: Returns True once the database shows a change (e.g.
                ``PRAGMA data_version`` moved); after a file event it is
                called for up to :data:`SETTLE` seconds, so that the waiter
                wakes once the commit is visible rather than halfway through.

        Returns:
            The current generation.
        """
        if clock is not None and not isinstance(clock, SystemClock):
            # An injected clock decides how time passes; never block a test.
            clock.wait(threading.Event(), timeout)
            return self._generation
        if self._watch is None:
            with self._cond:
                if self._generation == generation and timeout > 0:
                    self._cond.wait(timeout)
                return self._generation
        deadline = time.monotonic() + timeout
        while self._generation == generation:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._lead.acquire(blocking=False):
                try:
                    seen = self._poll_file(generation, remaining, settled)
                finally:
                    self._lead.release()
                if seen:
                    self.notify()
                elif self._followers:
                    # Leaving without news: another waiting thread polls now.
                    with self._cond:
                        self._cond.notify()
                continue
            with self._cond:
                if self._generation != generation:
                    break
                self._followers += 1
                try:
                    self._cond.wait(remaining)
                finally:
                    self._followers -= 1
        return self._generation

    def _poll_file(
        self, generation: int, timeout: float, settled: Callable[[], bool] | None
    ) -> bool:
        """Poll the watch (holding ``_lead``); True if the database changed."""
        watch, poller = self._watch, self._poller
        if watch is None or poller is None:
            # Stopped meanwhile: an ordinary wait, woken by notify().
            with self._cond:
                if self._generation == generation:
                    self._cond.wait(timeout)
            return False
        self._leading = True
        try:
            if self._generation != generation:
                return False
            ready = wait_readable(poller, [watch.fd, self._kick_r], timeout)
        finally:
            self._leading = False
        seen = False
        for fd in ready:
            if fd == self._kick_r:
                _drain_pipe(fd)
            elif fd == watch.fd:
                seen = watch.drain() or seen
        if seen and settled is not None:
            spin_until(settled, SETTLE)
        return seen

    def wait_for(
        self,
        check: Callable[[], T | None],
        timeout: float | None,
        clock: Clock,
        fallback: float | None = None,
        version: Callable[[], int] | None = None,
    ) -> T | None:
        """Call ``check`` until it returns something other than None.

        Args:
            check: Returns the awaited value, or None to keep waiting.
            timeout: Seconds to wait at most; None waits forever.
            clock: Supplies the deadline.
            fallback: Seconds between checks without any wake (default: ``self.fallback``).
            version: A cheap probe that changes with every commit by another
                connection (``PRAGMA data_version`` of the connection
                ``check`` reads with): read before each check, it tells when
                a commit whose file event woke the wait has become visible.

        Returns:
            What ``check`` returned, or None if the timeout ran out.
        """
        if not isinstance(clock, SystemClock):
            # Under an injected clock nothing really waits: no watcher needed.
            return self._wait_for(check, timeout, clock, fallback, version)
        self._start(False)
        # Armed before the first check: a commit after it is an event.
        self._enter_wait()
        try:
            return self._wait_for(check, timeout, clock, fallback, version)
        finally:
            self._leave_wait()

    def _wait_for(
        self,
        check: Callable[[], T | None],
        timeout: float | None,
        clock: Clock,
        fallback: float | None,
        version: Callable[[], int] | None,
    ) -> T | None:
        deadline = None if timeout is None else clock.monotonic() + timeout
        poll = self.fallback if fallback is None else min(fallback, self.fallback)
        generation = self._generation
        # Times (monotonic) of the extra looks after a wake-up: the event can
        # arrive before the commit is visible, so one look is not enough.
        rechecks: list[float] = []
        before = 0
        # From its 17th wake-up in such a row on, the wait pauses first.
        streak = WakeStreak(WAIT_QUIET_AFTER + 1)

        def settled() -> bool:
            assert version is not None
            return version() != before

        while True:
            if version is not None:
                before = version()
            value = check()
            if value is not None:
                return value
            now = clock.monotonic()
            if deadline is not None and now >= deadline:
                return None
            while rechecks and rechecks[0] <= now:
                rechecks.pop(0)
            step = rechecks[0] - now if rechecks else poll
            if deadline is not None:
                step = min(step, max(0.0, deadline - now))
            new = self.wait(
                generation, step, clock, settled if version is not None else None
            )
            if new != generation:
                if streak.woke(clock.monotonic()):
                    # Commits keep waking this wait for nothing: let them
                    # gather, and look once for all of them.
                    pause = QUIET_FOR
                    if deadline is not None:
                        pause = min(pause, max(0.0, deadline - clock.monotonic()))
                    clock.wait(_NEVER, pause)
                woke = clock.monotonic()
                rechecks = [woke + delay for delay in RECHECKS]
            generation = new


#: Never set: :meth:`Clock.wait` on it is a plain sleep.
_NEVER = threading.Event()

_wakers: dict[str, Waker] = {}
_wakers_lock = threading.Lock()


def _after_fork_child() -> None:
    global _wakers_lock
    # The parent's watcher threads do not exist here, and its lock may be held.
    for waker in _wakers.values():
        waker._forget_after_fork()
    _wakers.clear()
    _wakers_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)


def get_waker(path: str) -> Waker:
    """Return this process's Waker for the database at ``path``."""
    key = os.path.abspath(path)
    with _wakers_lock:
        waker = _wakers.get(key)
        if waker is None or waker._pid != os.getpid():
            waker = _wakers[key] = Waker(key)
        return waker
