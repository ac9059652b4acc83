"""The WAL from outside SQLite: its length from -shm, and the early flush thread."""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.storage import wal
from liteq.storage.db import Database
from liteq.storage.wal import (
    FLUSH_COMMITS,
    START_COMMITS,
    WalFlusher,
    read_wal_frames,
    wal_frames,
)
from liteq.testing import wait_until
from liteq.worker.checkpoint import Checkpointer


def _header(frames: int, backfilled: int) -> bytes:
    header = bytearray(136)
    struct.pack_into("=I", header, 16, frames)
    struct.pack_into("=I", header, 96, backfilled)
    return bytes(header)


def _wal_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t(x)")
    return conn


def _shm_locks(path: Path) -> list[str]:
    """This process's POSIX locks on ``path`` (Linux's /proc/locks)."""
    inode = f":{os.stat(path).st_ino} "
    pid = f" {os.getpid()} "
    with open("/proc/locks") as f:
        return [line for line in f if inode in line and pid in line]


def test_wal_frames_reads_the_wal_index_header() -> None:
    assert wal_frames(_header(812, 300)) == (812, 300)
    assert wal_frames(b"") == (0, 0)  # no -shm yet


def test_read_wal_frames_matches_what_sqlite_reports(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    conn = _wal_db(path)
    for _ in range(20):
        conn.execute("INSERT INTO t VALUES (randomblob(2000))")
    frames, backfilled = read_wal_frames(str(path))
    busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, frames, backfilled) == (0, log, 0)
    assert read_wal_frames(str(path)) == (log, done)
    conn.close()


def test_read_wal_frames_of_a_database_without_wal_is_zero(tmp_path: Path) -> None:
    assert read_wal_frames(str(tmp_path / "none.db")) == (0, 0)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks")
def test_reading_the_wal_length_keeps_this_processs_sqlite_locks(
    tmp_path: Path,
) -> None:
    # Closing any descriptor of a file drops all of the process's fcntl locks
    # on it: a reader that opened and closed -shm would silently release the
    # lock that tells other processes the wal-index is in use.
    path = tmp_path / "w.db"
    conn = _wal_db(path)
    conn.execute("INSERT INTO t VALUES (1)")
    conn.execute("BEGIN")
    conn.execute("SELECT * FROM t").fetchall()  # a read snapshot: a read mark
    shm = tmp_path / "w.db-shm"
    held = _shm_locks(shm)
    assert len(held) >= 2
    for _ in range(3):
        read_wal_frames(str(path))
    assert _shm_locks(shm) == held
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks")
def test_a_stopped_checkpointer_leaves_the_processs_sqlite_locks_alone(
    app: Liteq,
) -> None:
    @app.task
    def ping() -> None:
        pass

    checkpointer = Checkpointer(app, frames=1)
    assert checkpointer.start() is True
    ping.delay()
    # Once its checkpoint is over, the thread holds no lock of its own: what
    # the process holds from here on is the read transaction's alone.
    wait_until(lambda: checkpointer.checkpoints >= 1, timeout=10)
    conn = app.storage.db.connection()
    conn.execute("BEGIN")
    conn.execute("SELECT count(*) FROM liteq_task").fetchall()
    shm = Path(app.storage.path + "-shm")
    held = _shm_locks(shm)
    try:
        assert checkpointer.frames_now()[0] > 0
    finally:
        checkpointer.stop()
    assert _shm_locks(shm) == held
    conn.execute("COMMIT")


def test_read_wal_frames_follows_a_new_shm_file(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    conn = _wal_db(path)
    conn.execute("INSERT INTO t VALUES (1)")
    assert read_wal_frames(str(path))[0] > 0
    conn.close()  # the last connection deletes -wal and -shm
    assert not os.path.exists(str(path) + "-shm")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    for _ in range(5):
        conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    frames, backfilled = read_wal_frames(str(path))
    assert frames >= 5 and backfilled == 0
    conn.close()


def test_flusher_syncs_the_wal_and_survives_its_deletion(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    flusher = WalFlusher(str(path), 2)
    assert flusher.flush() is False  # no WAL yet: nothing to do, no error
    conn = _wal_db(path)
    conn.execute("INSERT INTO t VALUES (1)")
    assert flusher.flush() is True
    conn.close()  # deletes the WAL the flusher has open
    conn = sqlite3.connect(path)  # WAL mode stays: a new -wal file
    conn.execute("INSERT INTO t VALUES (2)")
    conn.commit()
    assert flusher.flush() is True
    assert flusher.flushes == 2
    assert os.fstat(flusher._fd).st_nlink == 1  # the new WAL, not the deleted one
    flusher.stop()
    conn.close()


@pytest.mark.timeout(20)
def test_a_process_that_commits_a_lot_flushes_the_wal_from_a_thread(
    app: Liteq,
) -> None:
    @app.task
    def ping(i: int) -> int:
        return i

    db = app.storage.db
    for i in range(START_COMMITS - 1 - db.commits):
        ping.delay(i)
    assert db._flusher is None  # a process that commits little never starts it
    ping.delay(0)
    flusher = db._flusher
    assert flusher is not None and flusher.running
    flusher.from_frames = 1  # the test's WAL is short
    for i in range(FLUSH_COMMITS):
        ping.delay(i)
    wait_until(lambda: flusher.flushes > 0, message="the WAL was never flushed")
    app.close()
    assert not flusher.running and db._flusher is None
    assert flusher.poke not in db._commit_hooks


def test_flusher_waits_for_a_long_wal_that_nobody_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    conn = _wal_db(path)
    for _ in range(4):
        conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    frames, _ = read_wal_frames(str(path))
    flusher = WalFlusher(str(path), frames + 1)
    assert flusher.due() is False  # not long enough yet
    conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    assert flusher.due() is True
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    assert flusher.due() is False  # a checkpoint has synced it this cycle
    conn.close()


def test_durable_databases_do_not_flush_early(tmp_path: Path) -> None:
    # synchronous=FULL syncs the WAL at every commit already.
    db = Database(str(tmp_path / "d.db"), durable=True)
    assert db.flush_wal is False
    db.commits = START_COMMITS
    db.notify_commit()
    assert db._flusher is None
    db.close()


def test_a_forked_child_does_not_inherit_the_flush_thread(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "f.db"))
    db.execute("CREATE TABLE t(x)")
    db.commits = START_COMMITS
    db.notify_commit()
    flusher = db._flusher
    assert flusher is not None
    try:
        db._forget_connections()  # what a forked child runs: threads do not follow
        assert db._flusher is None
        assert flusher.poke not in db._commit_hooks
    finally:
        flusher.stop()
        wal._after_fork_child()  # a fresh lock is as good as the old one
        db.close()
