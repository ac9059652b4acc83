"""The WAL seen from outside SQLite, and the thread that checkpoints it in parts."""

from __future__ import annotations

import os
import sqlite3
import struct
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.exceptions import StorageError
from liteq.storage import wal
from liteq.storage.db import Database
from liteq.storage.wal import (
    LOOK_COMMITS,
    START_COMMITS,
    STREAM_WINDOW,
    WalCheckpointer,
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


def _checkpointer(db: Database, chunk: int) -> WalCheckpointer:
    return WalCheckpointer(db.connection, db.close, db.path, chunk=chunk)


def _fill(db: Database, rows: int) -> None:
    for _ in range(rows):
        db.execute("INSERT INTO t VALUES (randomblob(3000))")


def test_checkpoint_copies_the_waiting_pages_in_the_calling_thread(
    tmp_path: Path,
) -> None:
    db = Database(str(tmp_path / "c.db"))
    db.execute("CREATE TABLE t(x)")
    _fill(db, 5)
    frames, backfilled = read_wal_frames(db.path)
    assert frames > 0 and backfilled == 0
    checkpointer = _checkpointer(db, chunk=1)
    assert checkpointer.checkpoint() is True
    assert read_wal_frames(db.path) == (frames, frames)
    assert checkpointer.checkpoints == 1
    db.close()


def test_a_checkpoint_that_cannot_open_the_database_is_skipped(tmp_path: Path) -> None:
    def broken() -> sqlite3.Connection:
        raise StorageError("database is gone")

    checkpointer = WalCheckpointer(broken, lambda: None, str(tmp_path / "x.db"))
    assert checkpointer.checkpoint() is False
    assert checkpointer.checkpoints == 0


def test_due_counts_the_pages_not_checkpointed_yet(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "d.db"))
    db.execute("CREATE TABLE t(x)")
    db.execute("PRAGMA wal_autocheckpoint=0")
    _fill(db, 4)
    frames, _ = read_wal_frames(db.path)
    checkpointer = _checkpointer(db, chunk=frames + 1)
    assert checkpointer.due() is False  # not enough pages wait yet
    _fill(db, 1)
    assert checkpointer.due() is True
    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    assert checkpointer.due() is False  # copied: nothing waits
    _fill(db, 5)
    assert checkpointer.due() is True  # the WAL goes on growing: these wait
    db.close()


def test_only_a_stream_of_commits_makes_it_checkpoint(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "s.db"))
    db.execute("CREATE TABLE t(x)")
    db.execute("PRAGMA wal_autocheckpoint=0")
    _fill(db, 3)
    checkpointer = _checkpointer(db, chunk=1)
    checkpointer._last_look = 100.0
    # The last LOOK_COMMITS commits took longer than the window: no stream.
    assert checkpointer.look(100.0 + STREAM_WINDOW + 0.001) is False
    assert checkpointer.checkpoints == 0
    # The next ones came within it.
    assert checkpointer.look(100.0 + 2 * STREAM_WINDOW) is True
    assert checkpointer.checkpoints == 1
    # A stream with nothing waiting: nothing to do.
    assert checkpointer.look(100.0 + 2.5 * STREAM_WINDOW) is False
    db.close()


@pytest.mark.timeout(20)
def test_a_process_that_commits_a_lot_checkpoints_from_a_thread(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    def ping(i: int) -> int:
        return i

    # However slowly this machine runs the loop, it counts as a stream.
    monkeypatch.setattr(wal, "STREAM_WINDOW", 3600.0)
    db = app.storage.db
    for i in range(START_COMMITS - 1 - db.commits):
        ping.delay(i)
    assert db._wal_checkpointer is None  # a process that commits little never starts it
    ping.delay(0)
    checkpointer = db._wal_checkpointer
    assert checkpointer is not None and checkpointer.running
    checkpointer.chunk = 1  # the test's WAL is short
    for i in range(LOOK_COMMITS):
        ping.delay(i)
    wait_until(
        lambda: checkpointer.checkpoints > 0, message="the WAL was never checkpointed"
    )
    app.close()
    assert not checkpointer.running and db._wal_checkpointer is None
    assert checkpointer.poke not in db._commit_hooks


def test_a_process_told_not_to_never_starts_the_thread(tmp_path: Path) -> None:
    # The worker turns it off: its own checkpoint thread does the work.
    db = Database(str(tmp_path / "d.db"))
    db.checkpoint_wal = False
    db.commits = START_COMMITS
    db.notify_commit()
    assert db._wal_checkpointer is None
    db.close()


def test_a_forked_child_does_not_inherit_the_checkpoint_thread(
    tmp_path: Path,
) -> None:
    db = Database(str(tmp_path / "f.db"))
    db.execute("CREATE TABLE t(x)")
    db.commits = START_COMMITS
    db.notify_commit()
    checkpointer = db._wal_checkpointer
    assert checkpointer is not None
    try:
        db._forget_connections()  # what a forked child runs: threads do not follow
        assert db._wal_checkpointer is None
        assert checkpointer.poke not in db._commit_hooks
    finally:
        checkpointer.stop()
        wal._after_fork_child()  # a fresh lock is as good as the old one
        db.close()
