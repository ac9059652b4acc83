"""A file descriptor that becomes readable when the database file changes (Linux).

The worker loop sleeps in ``poll`` on its pipes and pool processes; an
inotify descriptor on the database's directory joins that ``poll`` directly.
Compared with a watchdog observer, it needs no thread: while the worker is
busy it simply does not read the descriptor, and the kernel merges the
repeated ``IN_MODIFY`` events of the ``-wal`` file. Measured on the 2-core
test VM, watchdog's threads cost the busy worker ~70 µs of CPU per task at
~4,000 tasks/s (they wake on every commit, the worker's own included); this
costs nothing until the worker is idle.

The implementation lives in :mod:`liteq.wakeup`, whose :class:`~liteq.wakeup.Waker`
polls the same kind of descriptor from the waiting thread (``AsyncResult.get``,
beat). Elsewhere (macOS, Windows) or when inotify is unavailable (instance
limit), :func:`open_watch` returns None and the worker falls back to the
Waker's watchdog observer.
"""

from __future__ import annotations

from ..wakeup import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_MODIFY,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    FileWatch,
    open_watch,
)

__all__ = [
    "IN_CLOSE_WRITE",
    "IN_CREATE",
    "IN_MODIFY",
    "IN_MOVED_TO",
    "IN_Q_OVERFLOW",
    "FileWatch",
    "open_watch",
]
