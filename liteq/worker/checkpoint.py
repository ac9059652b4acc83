"""WAL checkpoints in a thread of the worker, off the tasks' path.

SQLite checkpoints the WAL automatically in whichever connection's commit
takes it past ``wal_autocheckpoint`` pages: that commit then copies the
pages into the database file and syncs both files before it returns, and
the first commit after it syncs the new WAL header. Measured on the 2-core
test VM, such commits took 2–10 ms and 0.4–5 ms instead of ~20 µs, and they
could be a client's ``delay()``, the worker's claim or its ack: with
SQLite's default of 1,000 pages, one ``delay().get()`` round trip in ~70 was
that much slower.

The :class:`Checkpointer` runs PASSIVE checkpoints from its own thread and
connection once the WAL holds :data:`SHARE` of ``wal_autocheckpoint`` pages
(see :data:`liteq.storage.db.WAL_AUTOCHECKPOINT`), and again soon after for
the pages written meanwhile. When the writes pause long enough for it to
catch up, the next writer starts the WAL over and no commit checkpoints;
under a steady stream of commits the commit that reaches the limit still
does, but it only has the last few pages to copy. A PASSIVE checkpoint takes no
lock that writers or readers wait for, and SQLite releases the GIL meanwhile.
The page counts come from the WAL index header in the ``-shm`` file, read
without a lock (:func:`liteq.storage.wal.read_wal_frames`): they only decide
when to look.

The thread is woken by the worker's own commits (every task makes two), at
most once per :data:`MIN_INTERVAL`, and sleeps while nothing is written.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from typing import TYPE_CHECKING

from ..exceptions import StorageError
from ..storage.wal import read_wal_frames

if TYPE_CHECKING:
    from ..app import Liteq

logger = logging.getLogger("liteq.worker")

#: Share of ``wal_autocheckpoint`` at which the thread starts checkpointing
#: (the rest is the margin for pages written while it runs).
SHARE = 0.75
#: Seconds between two looks at the WAL, however often the worker commits.
MIN_INTERVAL = 0.02
#: Seconds between looks while nothing wakes the thread.
IDLE_INTERVAL = 30.0


class Checkpointer:
    """Checkpoints the WAL from a thread once enough pages wait.

    Args:
        app: The worker's app.
        frames: WAL pages that start a checkpoint (default: :data:`SHARE`
            of the connection's ``wal_autocheckpoint``).
    """

    def __init__(self, app: Liteq, frames: int | None = None) -> None:
        self.app = app
        self.frames = frames
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: Checkpoints run (tests and logs).
        self.checkpoints = 0

    def start(self) -> bool:
        """Start the thread and listen to this process's commits.

        Returns:
            False (and nothing started) if automatic checkpoints are off.

        Raises:
            StorageError: the database cannot be read.
        """
        if self.frames is None:
            limit = int(self.app.storage.db.query_one("PRAGMA wal_autocheckpoint")[0])
            if limit <= 0:
                return False  # checkpoints are left to the application
            self.frames = max(1, int(limit * SHARE))
        self._thread = threading.Thread(
            target=self._run, name="liteq-checkpoint", daemon=True
        )
        self._thread.start()
        self.app.waker.add_listener(self.poke)
        return True

    def poke(self) -> None:
        """Something was committed: look at the WAL soon (cheap, any thread)."""
        if not self._wake.is_set():
            self._wake.set()

    def stop(self) -> None:
        """Stop the thread (it finishes a checkpoint in progress first)."""
        self.app.waker.remove_listener(self.poke)
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    def frames_now(self) -> tuple[int, int]:
        """``(pages in the WAL, pages checkpointed)``; ``(0, 0)`` if unreadable."""
        return read_wal_frames(self.app.storage.path)

    def check(self) -> bool:
        """Checkpoint if the WAL is long enough; return True if a checkpoint ran."""
        frames, backfilled = self.frames_now()
        if self.frames is None or frames < self.frames or backfilled >= frames:
            return False
        try:
            conn = self.app.storage.db.connection()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (sqlite3.Error, StorageError) as exc:
            # Busy (another checkpoint runs) or a passing error: the commit
            # that crosses wal_autocheckpoint does it instead, as without us.
            logger.debug("checkpoint skipped: %s", exc)
            return False
        self.checkpoints += 1
        return True

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.wait(IDLE_INTERVAL)
                self._wake.clear()
                if self._stopping:
                    break
                if self.check():
                    # Pages written during the checkpoint: look again soon.
                    self._wake.set()
                # However often the worker commits, look at most this often.
                self._stopped.wait(MIN_INTERVAL)
        finally:
            with contextlib.suppress(StorageError):
                self.app.storage.db.close()
