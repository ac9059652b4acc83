"""The WAL seen from outside SQLite: its length, and checkpointing it in parts.

A rule of POSIX file locks shapes this module: closing *any* descriptor of
a file drops every ``fcntl`` lock the process holds on it, and SQLite keeps
its WAL locks as such locks on the ``-shm`` file, among them the one that
tells other processes the wal-index is in use. The descriptor opened here to
read the ``-shm`` header is therefore never closed while the file exists:
one per file per process, shared by every thread (a forked child inherits
and keeps using it).

:class:`WalCheckpointer` runs in processes that write a lot without a
worker's checkpoint thread (a producer enqueueing thousands of tasks).
Every ``wal_autocheckpoint`` pages, one of its commits checkpoints: it
copies the WAL's pages into the database file and syncs both files before it
returns, where a commit takes ~25 µs. The thread checkpoints the WAL in
parts while the process writes on, so that the commit that fills it has
little left. Measured on a 2-core VM with 20,000 ``.delay()`` calls: the
calls over 1 ms (about 17, one per WAL cycle) added up to 40–60 ms of a
600–700 ms loop, and took at most 2–5 ms each; with the earlier thread,
which only synced the WAL ahead of that commit, 100–130 ms and up to 9–13 ms.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Callable

from ..exceptions import StorageError

logger = logging.getLogger("liteq.storage")

#: ``mxFrame`` in the first wal-index header; ``nBackfill`` after both headers.
_U32 = struct.Struct("=I")
_MX_FRAME_AT, _BACKFILL_AT, _HEADER_SIZE = 16, 96, 100

#: ``-shm`` path -> a read-only descriptor, kept open (see the module's notes).
_shm_fds: dict[str, int] = {}
_shm_lock = threading.Lock()

#: This process's commits after which it starts a :class:`WalCheckpointer`.
START_COMMITS = 256
#: This process's commits between two looks at the WAL.
LOOK_COMMITS = 128
#: Seconds within which :data:`LOOK_COMMITS` commits (plus the pause of
#: :data:`MIN_INTERVAL`) make a stream: 6,400 commits a second or more.
STREAM_WINDOW = 0.02
#: Seconds between two looks, however fast the process commits.
MIN_INTERVAL = 0.005
#: WAL pages waiting to be checkpointed that start a checkpoint: a fifth of
#: liteq's ``wal_autocheckpoint``.
CHUNK = 800


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


class WalCheckpointer:
    """Checkpoints the WAL from a thread while this process streams commits.

    Without it, the commit that takes the WAL past ``wal_autocheckpoint``
    copies the cycle's pages into the database file and syncs both files
    before it returns. This thread runs a PASSIVE checkpoint (which blocks
    neither writers nor readers, and releases the GIL) each time
    :data:`CHUNK` pages wait, so that little is left to copy and sync by the
    time the WAL is full. It acts only while this process commits fast
    (:data:`LOOK_COMMITS` commits within :data:`STREAM_WINDOW`): an
    occasional writer leaves checkpoints to the worker's checkpoint thread
    (:mod:`liteq.worker.checkpoint`) or to SQLite, as before.

    Args:
        connect: Returns this thread's connection to the database (called in
            the thread).
        disconnect: Closes it (called in the thread when it stops).
        db_path: The database file (its ``-shm`` tells the WAL's length).
        chunk: WAL pages waiting to be checkpointed that start a checkpoint.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        disconnect: Callable[[], None],
        db_path: str,
        chunk: int = 0,
    ) -> None:
        self._connect = connect
        self._disconnect = disconnect
        self.db_path = db_path
        self.chunk = chunk or CHUNK
        self._wake = threading.Event()
        self._stopping = False
        self._pending = 0
        self._connected = False
        self._last_look = time.monotonic()
        self._thread: threading.Thread | None = None
        #: Checkpoints run (tests and logs).
        self.checkpoints = 0

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread (it sleeps until :meth:`poke` has been called enough)."""
        self._thread = threading.Thread(
            target=self._run, name="liteq-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def poke(self) -> None:
        """This process committed (a commit hook: cheap, any thread)."""
        self._pending += 1
        if self._pending >= LOOK_COMMITS and not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Stop the thread, after a checkpoint in progress."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    def due(self) -> bool:
        """Whether :attr:`chunk` pages of the WAL wait to be checkpointed."""
        frames, backfilled = read_wal_frames(self.db_path)
        return frames - backfilled >= self.chunk

    def look(self, now: float) -> bool:
        """Checkpoint if this process streams commits and :meth:`due`.

        ``now`` (monotonic) is when :data:`LOOK_COMMITS` more commits woke
        the thread: within :data:`STREAM_WINDOW` of the last look, they are a
        stream.

        Returns:
            True if a checkpoint ran.
        """
        streaming = now - self._last_look <= STREAM_WINDOW
        self._last_look = now
        return streaming and self.due() and self.checkpoint()

    def checkpoint(self) -> bool:
        """Run a PASSIVE checkpoint (in the calling thread).

        Returns:
            True if it ran; False if another checkpoint was running or the
            database could not be read (the commit that crosses
            ``wal_autocheckpoint`` then checkpoints, as without this thread).
        """
        try:
            conn = self._connect()
            self._connected = True
            # fetchall: a statement left unfinished would keep a read snapshot.
            busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][0]
        except (sqlite3.Error, StorageError) as exc:
            logger.debug("WAL checkpoint skipped: %s", exc)
            return False
        if busy:
            return False
        self.checkpoints += 1
        return True

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    break
                self._pending = 0
                self.look(time.monotonic())
                # However fast the process commits, look at most this often.
                time.sleep(MIN_INTERVAL)
        finally:
            if self._connected:
                with contextlib.suppress(sqlite3.Error, StorageError):
                    self._disconnect()


def _after_fork_child() -> None:
    global _shm_lock
    # Another thread may have held it at the fork; the descriptors stay valid.
    _shm_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_child)
