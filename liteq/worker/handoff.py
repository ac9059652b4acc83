"""Which tasks of a batch have started, kept where the next worker can read it.

A worker hands short tasks to a pool slot in batches (see :mod:`.pool`), and
the claim marks them all RUNNING. When a worker process dies, another worker
recovers its tasks: ``acks_late`` ones go back to the queue, the others end
FAILURE(WorkerLostError), since they may have run and run at most once. A task
still waiting in its batch has not run, though: like a message Celery
prefetched and never started, it goes back to the queue.

To tell the two apart, each slot has a small file in a directory beside the
database (``<database>-batches``), and so has the worker's last claim until
it is handed over (:data:`CLAIM_SLOT`). Before handing a batch over, the worker
writes the batch into the slot's file (its claim token and row ids); before
starting each of its tasks, the slot writes how many it has started. Both are
plain writes into the page cache, without fsync: they survive the death of the
process, not of the machine, so they are read only for workers that died since
the machine last booted. A file left from an older batch names another claim
token, and nothing it says applies to the rows of a newer claim.

Every process that writes a slot's file holds a shared ``flock`` on it while
it lives (a pool process takes it before it says it is ready), and a recovery
reads a file only under an exclusive one: a pool process that outlives its
worker by a few milliseconds cannot mark a task started after the recovery
has read that it was not.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import logging
import os
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..storage.broker import Claimed

logger = logging.getLogger("liteq.worker")

#: The "slot" of a worker's last claim until it is handed to the pool: its
#: file lists the claimed tasks, none started, and is marked all started (the
#: slots' own files then tell) just before the hand-over.
CLAIM_SLOT = -1
#: File header: the batch's claim token, its number of tasks, how many started.
_HEADER = struct.Struct("<qqq")
#: Offset of the started count in the header.
_STARTED_AT = 16
_COUNT = struct.Struct("<q")
_ID = struct.Struct("<q")


def handoff_dir(database: str) -> str:
    """Return the directory of the batch files of workers on ``database``."""
    return f"{database}-batches"


def _prefix(directory: str, worker_id: str) -> str:
    # Worker ids hold a host name given on the command line: hash it into a
    # file name that is always valid.
    digest = hashlib.sha1(worker_id.encode(), usedforsecurity=False).hexdigest()
    return os.path.join(directory, digest[:20])


class Handoffs:
    """The worker's side: one file per pool slot, written when a batch is handed over.

    Writing is best effort: a batch whose file could not be written counts as
    started at recovery, as every claimed task does without these files.
    """

    def __init__(self, directory: str, worker_id: str) -> None:
        self.directory = directory
        self.prefix = _prefix(directory, worker_id)
        self._fds: dict[int, int] = {}
        self._broken = False

    def path(self, slot: int) -> str:
        """Return the file of pool slot ``slot``."""
        return f"{self.prefix}.{slot}"

    def _fd(self, slot: int) -> int:
        fd = self._fds.get(slot)
        if fd is None:
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)
            fd = os.open(self.path(slot), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_SH)  # an in-process pool marks through it
            self._fds[slot] = fd
        return fd

    def create(self, slot: int) -> str | None:
        """Make sure the file of ``slot`` exists, before its pool process starts.

        Returns:
            Its path, for the pool process's :class:`StartMarks`; None if it
            cannot be created (that slot's batches then count as started).
        """
        try:
            self._fd(slot)
        except OSError as exc:
            logger.warning("cannot create %s: %s", self.path(slot), exc)
            return None
        return self.path(slot)

    def hand(self, slot: int, tasks: Sequence[Claimed]) -> bool:
        """Record ``tasks`` (one claim's) as handed to ``slot``, none started.

        Returns:
            True if the slot should mark the tasks it starts
            (:class:`StartMarks`); False when nothing could be recorded.
        """
        if self._broken:
            return False
        ids = b"".join([_ID.pack(t.id) for t in tasks])
        data = _HEADER.pack(tasks[0].claim_token, len(tasks), 0) + ids
        try:
            fd = self._fd(slot)
            if os.pwrite(fd, data, 0) == len(data):
                return True
            os.pwrite(fd, _HEADER.pack(0, 0, 0), 0)
        except OSError as exc:
            logger.warning(
                "cannot record a batch in %s (%s): if this worker dies, the tasks "
                "of its batches end FAILURE(WorkerLostError) even if they never started",
                self.directory,
                exc,
            )
            self._broken = True
        return False

    def started(self, slot: int, count: int) -> bool:
        """:meth:`StartMarks.started` for a slot in this process (in-process pools)."""
        try:
            fd = self._fd(slot)
        except OSError as exc:
            return _unmarked(self.path(slot), str(exc))
        return _mark(fd, self.path(slot), count)

    def close(self, remove: bool = True) -> None:
        """Close the files; remove them after a clean exit (nothing is running)."""
        for slot, fd in list(self._fds.items()):
            os.close(fd)
            if remove:
                with contextlib.suppress(OSError):
                    os.unlink(self.path(slot))
        self._fds.clear()


class StartMarks:
    """A slot's side: before starting a task of a batch, write how many have started."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def open(self) -> None:
        """Open the file and hold a shared lock on it for the life of this process.

        Call before the worker may hand a batch over; a file that cannot be
        opened is dealt with at the first mark.
        """
        if self._fd is None:
            try:
                fd = os.open(self.path, os.O_WRONLY)
            except OSError:
                return
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._fd = fd

    def started(self, count: int) -> bool:
        """Record that the first ``count`` tasks of the slot's batch have started.

        Returns:
            True if the task may start: recorded, or the file is gone (with
            no file, a recovery counts every task of the batch as started).
            On False the task must not start: the file could say it had
            not, and a recovery would run it again.
        """
        if self._fd is None:
            # Not opened (or it could not be): a recovery must not read the
            # file at all, so it goes.
            return _unmarked(self.path, "not open")
        return _mark(self._fd, self.path, count)

    def close(self) -> None:
        """Close the file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _mark(fd: int, path: str, count: int) -> bool:
    """Write the started count into ``path`` (open as ``fd``); see :meth:`StartMarks.started`."""
    try:
        if os.pwrite(fd, _COUNT.pack(count), _STARTED_AT) == _COUNT.size:
            return True
        error = "short write"
    except OSError as exc:
        error = str(exc)
    return _unmarked(path, error)


def _unmarked(path: str, error: str) -> bool:
    """After a failed mark, remove the file so that the task may still start.

    Returns:
        True once the file is gone; False if it stays (the task must not start).
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.error(
            "cannot mark a task started in %s (%s) nor remove the file (%s): "
            "the rest of the batch goes back to the queue",
            path,
            error,
            exc,
        )
        return False
    logger.error(
        "cannot mark a task started in %s (%s); removed it: if this worker dies, "
        "the tasks of its batches end FAILURE(WorkerLostError) even if never started",
        path,
        error,
    )
    return True


def unstarted(directory: str, worker_id: str) -> list[tuple[int, list[int]]]:
    """Return the batches of a dead worker that had tasks not started yet.

    Returns:
        ``(claim_token, row ids not started)`` per slot file that has some.
    """
    found = []
    for path in glob.glob(glob.escape(_prefix(directory, worker_id)) + ".*"):
        try:
            with open(path, "rb") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    # A pool process of the dead worker still lives (it
                    # exits within milliseconds): its batch counts as started.
                    logger.info("batch file %s is still in use; not read", path)
                    continue
                data = f.read()
        except OSError:
            continue
        batch = _not_started(data)
        if batch is not None:
            found.append(batch)
    return found


def _not_started(data: bytes) -> tuple[int, list[int]] | None:
    """Read a batch file: ``(claim token, ids not started)``, or None if none."""
    if len(data) < _HEADER.size:
        return None
    token, count, started = _HEADER.unpack_from(data)
    if token == 0 or count <= started or len(data) < _HEADER.size + count * _ID.size:
        return None
    ids = [
        _ID.unpack_from(data, _HEADER.size + i * _ID.size)[0]
        for i in range(max(started, 0), count)
    ]
    return token, ids


def remove(directory: str, worker_id: str) -> None:
    """Remove the files of a worker whose tasks were recovered."""
    for path in glob.glob(glob.escape(_prefix(directory, worker_id)) + ".*"):
        with contextlib.suppress(OSError):
            os.unlink(path)
