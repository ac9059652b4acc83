"""Wake-ups on database changes, without busy polling.

One :class:`Waker` per process and database file. It watches the file's
directory with watchdog (inotify on Linux) and keeps only events for the
``-wal`` file (and the file itself), which every commit touches; same-process
commits notify it directly. Waiters re-check their condition on every wake,
re-check once more ~2 ms after a wake that found nothing (an inotify event can
arrive before the commit is visible), and poll slowly as a fallback. When
watchdog cannot start (inotify limits, a filesystem without events), the
fallback poll drops to 50 ms.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .clock import Clock, SystemClock

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between fallback checks while the file watcher works.
DEFAULT_FALLBACK = 1.0
#: Seconds between checks when no file watcher could be started.
DEGRADED_FALLBACK = 0.05
#: Seconds before re-checking after a wake that found nothing new.
RECHECK_DELAY = 0.002
#: Seconds after a wake-up at which to look again (measured: a single look
#: 0.5 ms after the event sometimes missed a commit for the whole fallback).
RECHECKS = (RECHECK_DELAY, 0.01, 0.05, 0.25, 1.0)


class Waker:
    """Counts changes to one database file and wakes threads waiting for one."""

    def __init__(self, path: str, fallback: float = DEFAULT_FALLBACK) -> None:
        self.path = os.path.abspath(path)
        self.fallback = fallback
        self._cond = threading.Condition()
        self._generation = 0
        self._observer: Any = None
        self._started = False
        self._pid = os.getpid()
        self._listeners: list[Callable[[], None]] = []

    @property
    def generation(self) -> int:
        """A counter that increases on every change seen."""
        return self._generation

    def notify(self) -> None:
        """Record a change and wake every waiter (and call every listener)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        for listener in self._listeners:
            listener()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` on every change, in the thread that saw it.

        For a loop that waits on file descriptors rather than on this
        object's condition (the worker); the listener must be quick.
        """
        self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        self._listeners = [x for x in self._listeners if x is not listener]

    def start(self) -> bool:
        """Start watching the file (idempotent).

        Returns:
            True if a file watcher runs; False if only the fallback poll does.
        """
        if self._started:
            return self._observer is not None
        self._started = True
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

    def stop(self) -> None:
        """Stop the file watcher (waiters fall back to polling)."""
        observer, self._observer = self._observer, None
        self._started = False
        if observer is not None:
            observer.stop()
            if observer.is_alive() and threading.current_thread() is not observer:
                observer.join(timeout=2)

    def wait(self, generation: int, timeout: float, clock: Clock | None = None) -> int:
        """Wait until the generation moves past ``generation`` or ``timeout`` passes.

        Returns:
            The current generation.
        """
        if clock is not None and not isinstance(clock, SystemClock):
            # An injected clock decides how time passes; never block a test.
            clock.wait(threading.Event(), timeout)
            return self._generation
        with self._cond:
            if self._generation == generation and timeout > 0:
                self._cond.wait(timeout)
            return self._generation

    def wait_for(
        self,
        check: Callable[[], T | None],
        timeout: float | None,
        clock: Clock,
        fallback: float | None = None,
    ) -> T | None:
        """Call ``check`` until it returns something other than None.

        Args:
            check: Returns the awaited value, or None to keep waiting.
            timeout: Seconds to wait at most; None waits forever.
            clock: Supplies the deadline.
            fallback: Seconds between checks without any wake (default: ``self.fallback``).

        Returns:
            What ``check`` returned, or None if the timeout ran out.
        """
        if isinstance(clock, SystemClock):
            # Under an injected clock nothing really waits: no watcher needed.
            self.start()
        deadline = None if timeout is None else clock.monotonic() + timeout
        poll = self.fallback if fallback is None else min(fallback, self.fallback)
        generation = self._generation
        # Times (monotonic) of the extra looks after a wake-up: the event can
        # arrive before the commit is visible, so one look is not enough.
        rechecks: list[float] = []
        while True:
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
            new = self.wait(generation, step, clock)
            if new != generation:
                woke = clock.monotonic()
                rechecks = [woke + delay for delay in RECHECKS]
            generation = new


_wakers: dict[str, Waker] = {}
_wakers_lock = threading.Lock()


def _after_fork_child() -> None:
    global _wakers_lock
    # The parent's watcher threads do not exist here, and its lock may be held.
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
