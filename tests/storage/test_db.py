"""The database file: pragmas, locking, errors, permissions, fork, schema version."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq
from liteq.exceptions import ConfigurationError, DatabaseLocked, StorageError
from liteq.storage import Completion, Storage, schema
from liteq.storage import db as db_module
from liteq.storage.db import Database, check_sqlite_version

from .conftest import T0, new_task, result_row, task_rows


def _pragma(store: Storage, name: str) -> Any:
    return store.db.execute(f"PRAGMA {name}")[0][0]


def test_new_file_uses_wal_normal_sync_and_incremental_vacuum(
    storage: Storage,
) -> None:
    assert _pragma(storage, "journal_mode") == "wal"
    assert _pragma(storage, "synchronous") == 1  # NORMAL
    assert _pragma(storage, "auto_vacuum") == 2  # INCREMENTAL
    # liteq waits for the lock itself, in shorter steps than SQLite's handler.
    assert _pragma(storage, "busy_timeout") == 0
    assert storage.db.busy_timeout == 0.5


def test_durable_storage_uses_full_sync(tmp_path: Path) -> None:
    store = Storage(str(tmp_path / "durable.db"), durable=True)
    try:
        assert _pragma(store, "synchronous") == 2  # FULL
    finally:
        store.close()


def test_durable_setting_reaches_the_storage(tmp_path: Path) -> None:
    app = Liteq("t", broker=tmp_path / "d.db", durable=True, set_as_current=False)
    try:
        assert _pragma(app.storage, "synchronous") == 2
    finally:
        app.close()


def test_created_file_and_its_wal_are_private_to_the_user(storage: Storage) -> None:
    storage.broker.enqueue(new_task(), T0)
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE(os.stat(storage.path + suffix).st_mode)
        assert mode == 0o600, (suffix, oct(mode))


def test_missing_directory_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    store = Storage(str(tmp_path / "nope" / "x.db"))
    with pytest.raises(StorageError, match="nope"):
        store.db.connection()


def test_old_sqlite_is_a_configuration_error_naming_the_fixes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(ConfigurationError, match="3.31.1.*pysqlite3-binary"):
        check_sqlite_version()


def test_write_takes_the_write_lock_at_begin(storage: Storage) -> None:
    other = sqlite3.connect(storage.path, timeout=0, isolation_level=None)
    try:
        with storage.db.write() as conn:
            assert conn.in_transaction
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_write_inside_an_open_transaction_becomes_a_savepoint(
    storage: Storage,
) -> None:
    with storage.db.transaction():
        storage.broker.enqueue(new_task(), T0)
        with pytest.raises(RuntimeError), storage.db.write() as conn:
            conn.execute("INSERT INTO liteq_meta(key, value) VALUES ('inner', 'x')")
            raise RuntimeError("inner block fails")
    assert len(task_rows(storage)) == 1
    assert storage.db.execute("SELECT 1 FROM liteq_meta WHERE key = 'inner'") == []


def test_locked_database_beyond_busy_timeout_names_the_file(
    storage: Storage,
) -> None:
    storage.broker.enqueue_many([new_task(), new_task()], T0)
    claimed = storage.claim("w", None, 2, T0, 60)
    holder = sqlite3.connect(storage.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseLocked) as info:
            storage.complete(
                [
                    Completion(c.task_id, claimed=c, result=result_row(c.task_id))
                    for c in claimed
                ],
                T0,
            )
        assert storage.path in str(info.value)
        assert info.value.path == storage.path
        assert isinstance(info.value, StorageError)
        with pytest.raises(DatabaseLocked):
            storage.broker.enqueue(new_task(), T0)
        with pytest.raises(DatabaseLocked):
            storage.broker.enqueue_many([new_task() for _ in range(10)], T0)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Nothing was half-written: both tasks still run, no result, no new rows.
    assert [r[1] for r in task_rows(storage)] == [2, 2]
    assert storage.results.get_many([c.task_id for c in claimed]) == {}


def test_locked_by_another_process_delay_raises_database_locked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    app = Liteq("t", broker=path, database_busy_timeout=0.05, set_as_current=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    app.storage.db.connection()  # create the file and schema
    script = textwrap.dedent(
        f"""
        import sqlite3, sys
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DatabaseLocked, match=str(path)):
            add.apply_async((1, 2), retry=False)
        with pytest.raises(DatabaseLocked):
            add.apply_async(
                (1, 2), retry=True, retry_policy={"max_retries": 2, "interval_step": 0}
            )
    finally:
        holder.communicate("", timeout=10)
        app.close()
    assert app.storage.broker.queue_stats(0) == {}
    add.delay(1, 2)
    assert app.storage.broker.queue_stats(0)["celery"]["ready"] == 1
    app.close()


def test_commit_hooks_run_after_each_commit(storage: Storage) -> None:
    seen: list[str] = []
    hook = lambda: seen.append("commit")  # noqa: E731
    storage.db.add_commit_hook(hook)
    storage.broker.enqueue(new_task(), T0)
    storage.broker.enqueue_many([new_task()], T0)
    with storage.db.transaction():
        storage.broker.enqueue(new_task(), T0)
        assert seen == ["commit", "commit"]
    assert len(seen) >= 3
    storage.db.remove_commit_hook(hook)
    storage.db.remove_commit_hook(hook)


def test_data_version_moves_when_another_connection_commits(
    storage: Storage,
) -> None:
    before = storage.db.data_version()
    other = Storage(storage.path)
    try:
        other.broker.enqueue(new_task(), T0)
    finally:
        other.close()
    assert storage.db.data_version() != before


def test_each_thread_gets_its_own_connection(storage: Storage) -> None:
    import threading

    mine = storage.db.connection()
    theirs: list[sqlite3.Connection] = []
    thread = threading.Thread(target=lambda: theirs.append(storage.db.connection()))
    thread.start()
    thread.join()
    assert theirs and theirs[0] is not mine


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_opens_its_own_connection_and_both_keep_working(
    tmp_path: Path,
) -> None:
    app = Liteq("t", broker=tmp_path / "fork.db", set_as_current=False)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(1, 1)
    parent_conn = app.storage.db.connection()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child_conn = app.storage.db.connection()
            add.delay(2, 2)
            ok = child_conn is not parent_conn
            ok = ok and app.storage.broker.queue_stats(0)["celery"]["ready"] == 2
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    add.delay(3, 3)
    claimed = app.storage.claim("w", None, 10, app.clock.time(), 60)
    assert len(claimed) == 3
    app.close()


def test_fresh_file_gets_the_current_schema_version(storage: Storage) -> None:
    conn = storage.db.connection()
    assert schema.current_version(conn) == schema.SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"liteq_task", "liteq_result", "liteq_event", "liteq_revoked"} <= tables


def test_file_with_user_tables_gets_liteq_tables_added(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders(id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO orders(total) VALUES (9.5)")
    conn.commit()
    conn.close()
    store = Storage(str(path))
    try:
        store.broker.enqueue(new_task(), T0)
        assert store.db.execute("SELECT total FROM orders") == [(9.5,)]
    finally:
        store.close()


def test_older_schema_version_is_migrated_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "old.db")
    old = Storage(path)
    old.broker.enqueue(new_task(task_id="kept"), T0)
    old.close()
    current = schema.SCHEMA_VERSION

    def add_note_column(models: schema.Models, conn: Any) -> None:
        conn.execute("ALTER TABLE liteq_task ADD COLUMN note TEXT")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.MIGRATIONS, current, add_note_column)
    new = Storage(path)
    try:
        conn = new.db.connection()
        assert schema.current_version(conn) == current + 1
        columns = {r[1] for r in conn.execute("PRAGMA table_info(liteq_task)")}
        assert "note" in columns
        assert [r[0] for r in task_rows(new)] == ["kept"]
    finally:
        new.close()


def test_failed_migration_leaves_the_file_at_its_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "old.db")
    Storage(path).close()
    Storage(path).db.connection()

    def broken(models: schema.Models, conn: Any) -> None:
        conn.execute("ALTER TABLE liteq_task ADD COLUMN half TEXT")
        raise RuntimeError("migration bug")

    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.MIGRATIONS, current, broken)
    with pytest.raises(RuntimeError, match="migration bug"):
        Storage(path).db.connection()
    conn = sqlite3.connect(path)
    try:
        assert schema.current_version(conn) == current
        columns = {r[1] for r in conn.execute("PRAGMA table_info(liteq_task)")}
        assert "half" not in columns
    finally:
        conn.close()


def test_file_from_a_newer_liteq_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "new.db")
    Storage(path).db.connection()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE liteq_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="schema version 99"):
        Storage(path).db.connection()


def test_database_repr_names_the_file(tmp_path: Path) -> None:
    database = Database(str(tmp_path / "r.db"), durable=True)
    assert repr(database) == f"<Database {str(tmp_path / 'r.db')!r} durable>"
    assert db_module.MIN_SQLITE == (3, 35, 0)


def test_schema_setup_failure_is_retried_on_the_next_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "old.db")
    Storage(path).db.connection()
    calls: list[int] = []

    def flaky(models: schema.Models, conn: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")

    current = schema.SCHEMA_VERSION
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(schema.MIGRATIONS, current, flaky)
    store = Storage(path)
    try:
        with pytest.raises(DatabaseLocked):
            store.db.connection()
        conn = store.db.connection()
        assert schema.current_version(conn) == current + 1
        assert len(calls) == 2
    finally:
        store.close()


class _LockReleasedOnFirstSleep:
    """Stands in for the ``time`` module of liteq.storage.db: the first sleep
    of a waiting writer ends another connection's transaction."""

    def __init__(self, holder: sqlite3.Connection) -> None:
        self.holder = holder
        self.sleeps: list[float] = []
        self.monotonic = __import__("time").monotonic

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.holder.in_transaction:
            self.holder.execute("COMMIT")


def test_writes_wait_for_a_lock_in_sub_millisecond_steps(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.db.connection()
    holder = sqlite3.connect(storage.path, isolation_level=None)
    fake = _LockReleasedOnFirstSleep(holder)
    monkeypatch.setattr(db_module, "time", fake)
    try:
        holder.execute("BEGIN IMMEDIATE")
        storage.broker.enqueue(new_task(), T0)
        holder.execute("BEGIN IMMEDIATE")
        claimed = storage.claim("w", None, 1, T0, 60)
        holder.execute("BEGIN IMMEDIATE")
        assert storage.complete([Completion(c.task_id, claimed=c) for c in claimed], T0)
    finally:
        holder.close()
    assert len(claimed) == 1
    assert len(fake.sleeps) == 3
    assert all(s < 0.001 for s in fake.sleeps)
    assert task_rows(storage) == []


def test_users_peewee_writes_on_liteq_connection_wait_for_the_lock(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peewee

    class Note(peewee.Model):
        text = peewee.TextField()

        class Meta:
            database = storage.db.pw
            table_name = "user_note"

    storage.db.connection()
    Note.create_table()
    holder = sqlite3.connect(storage.path, isolation_level=None)
    fake = _LockReleasedOnFirstSleep(holder)
    monkeypatch.setattr(db_module, "time", fake)
    try:
        holder.execute("BEGIN IMMEDIATE")
        Note.create(text="outside a transaction")
        holder.execute("BEGIN IMMEDIATE")
        with storage.db.transaction():
            Note.create(text="inside one")
    finally:
        holder.close()
    assert sorted(n.text for n in Note.select()) == [
        "inside one",
        "outside a transaction",
    ]
    assert len(fake.sleeps) == 2
