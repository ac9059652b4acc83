"""The WAL seen from outside SQLite: its length, and flushing it early.

Two rules of POSIX file locks shape this module:

* closing *any* descriptor of a file drops every ``fcntl`` lock the process
  holds on it, and SQLite keeps its WAL locks as such locks on the ``-shm``
  file, among them the one that tells other processes the wal-index is in
  use. The descriptor opened here to read the ``-shm`` header is therefore
  never closed while the file exists: one per file per process, shared by
  every thread (a forked child inherits and keeps using it);
* SQLite takes no lock on the ``-wal`` file, so a descriptor of it may be
  opened and closed freely.

:class:`WalFlusher` runs in processes that write a lot without a worker's
checkpoint thread (a producer enqueueing thousands of tasks). Every
``wal_autocheckpoint`` pages, one of its commits checkpoints, and first has
to sync the whole WAL (16 MB with liteq's limit): measured on the 2-core
test VM, that commit took 16–27 ms where a commit takes ~50 µs, and those
commits were a fifth of a 20,000-task enqueue loop. The flusher syncs the
WAL from a thread as it grows, so that commit has less left to sync: the
stalls of that loop added up to 110–140 ms instead of 350–390 ms. An early
sync changes no file contents: it only makes committed pages durable sooner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time

logger = logging.getLogger("liteq.storage")

#: ``mxFrame`` in the first wal-index header; ``nBackfill`` after both headers.
_U32 = struct.Struct("=I")
_MX_FRAME_AT, _BACKFILL_AT, _HEADER_SIZE = 16, 96, 100

#: ``-shm`` path -> a read-only descriptor, kept open (see the module's notes).
_shm_fds: dict[str, int] = {}
_shm_lock = threading.Lock()

#: This process's commits after which it starts a :class:`WalFlusher`.
START_COMMITS = 256
#: This process's commits between two flushes (a commit writes about four
#: pages, so this is about 2 MB of WAL).
FLUSH_COMMITS = 128
#: Seconds between two flushes, however fast the process commits.
MIN_INTERVAL = 0.005
#: fdatasync where the platform has it (not macOS).
_sync = getattr(os, "fdatasync", os.fsync)


def wal_frames(header: bytes) -> tuple[int, int]:
    """Pages in the WAL, and how many are checkpointed, from a ``-shm`` file's start.

    Returns:
        ``(mxFrame, nBackfill)``, or ``(0, 0)`` if ``header`` is too short.
    """
    if len(header) < _HEADER_SIZE:
        return 0, 0
    (frames,) = _U32.unpack_from(header, _MX_FRAME_AT)
    (backfilled,) = _U32.unpack_from(header, _BACKFILL_AT)
    return frames, backfilled


def read_wal_frames(db_path: str) -> tuple[int, int]:
    """``(pages in the WAL, pages checkpointed)`` of the database at ``db_path``.

    Read without a lock from the wal-index header (its layout is part of
    SQLite's documented file format): good for deciding when to look, not
    for anything that must be exact.

    Returns:
        ``(0, 0)`` if the database has no ``-shm`` file (not in WAL mode, or
        no connection has opened it yet).
    """
    path = db_path + "-shm"
    try:
        fd = _shm_fds.get(path)
        if fd is None or os.fstat(fd).st_nlink == 0:
            fd = _open_shm(path, fd)
        return wal_frames(os.pread(fd, _HEADER_SIZE, 0))
    except OSError:
        return 0, 0


def _open_shm(path: str, stale: int | None) -> int:
    with _shm_lock:
        current = _shm_fds.get(path)
        if current is not None and current != stale:
            return current  # another thread reopened it meanwhile
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        _shm_fds[path] = fd
        if stale is not None:
            # The old file is unlinked: SQLite only deletes it once no
            # connection uses it, so no lock of this process lives on it.
            with contextlib.suppress(OSError):
                os.close(stale)
        return fd


class WalFlusher:
    """Syncs a database's WAL to disk from a thread, ahead of the checkpoints.

    It flushes only near the end of a WAL cycle that nobody has
    checkpointed yet (from ``from_frames`` pages on): earlier, the commit
    that checkpoints is far off, and a worker's checkpoint thread starts
    before that point and syncs the WAL itself. Measured with a producer
    and a worker at full speed: flushing from half the limit on made the
    mixed workload about 6 % slower; from four fifths, no difference showed.

    Args:
        db_path: The database file (its WAL is ``db_path + "-wal"``).
        from_frames: WAL pages from which it flushes (the database uses
            four fifths of ``wal_autocheckpoint``; a worker's checkpoint
            thread starts at three quarters).
    """

    def __init__(self, db_path: str, from_frames: int) -> None:
        self.db_path = db_path
        self.wal_path = db_path + "-wal"
        self.from_frames = from_frames
        self._wake = threading.Event()
        self._stopping = False
        self._pending = 0
        self._fd = -1
        self._thread: threading.Thread | None = None
        #: Flushes made (tests and logs).
        self.flushes = 0

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread (it sleeps until :meth:`poke` has been called enough)."""
        self._thread = threading.Thread(
            target=self._run, name="liteq-wal-flush", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        """This process committed (a commit hook: cheap, any thread)."""
        self._pending += 1
        if self._pending >= FLUSH_COMMITS and not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Stop the thread, after a flush in progress."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    def due(self) -> bool:
        """Whether the WAL is long enough, and not yet checkpointed, to flush."""
        frames, backfilled = read_wal_frames(self.db_path)
        return frames >= self.from_frames and backfilled == 0

    def flush(self) -> bool:
        """Sync the WAL now; return False if there is none or it cannot be synced."""
        try:
            if self._fd < 0 or os.fstat(self._fd).st_nlink == 0:
                self._reopen()
            _sync(self._fd)
        except OSError as exc:
            # No WAL right now (the last connection deleted it): the next
            # commit makes a new one, and the next flush opens that.
            logger.debug("WAL flush skipped: %s", exc)
            self._close()
            return False
        self.flushes += 1
        return True

    def _reopen(self) -> None:
        self._close()
        self._fd = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)

    def _close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    break
                self._pending = 0
                if self.due():
                    self.flush()
                # However fast the process commits, flush at most this often.
                time.sleep(MIN_INTERVAL)
        finally:
            self._close()


def _after_fork_child() -> None:
    global _shm_lock
    # Another thread may have held it at the fork; the descriptors stay valid.
    _shm_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
