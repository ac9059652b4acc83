"""The schema: layout of a fresh file, query plans, and migration from version 1."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from liteq.exceptions import StorageError
from liteq.messages import new_id
from liteq.storage import Completion, Storage, schema

from .conftest import T0, new_task, result_row, task_rows

#: The schema of a version-1 file, exactly as liteq 0.1 created it
#: (``sqlite3 app.db .schema``, table statements without IF NOT EXISTS).
V1_DDL = """
CREATE TABLE "liteq_event" ("id" INTEGER NOT NULL PRIMARY KEY, "task_id" TEXT NOT NULL, "status" TEXT NOT NULL, "result" BLOB, "content_type" TEXT, "created_at" REAL NOT NULL);
CREATE INDEX "liteq_event_task_id" ON "liteq_event" ("task_id");
CREATE TABLE "liteq_group" ("group_id" TEXT NOT NULL PRIMARY KEY, "task_ids" TEXT, "remaining" INTEGER, "body" BLOB, "content_type" TEXT, "date_done" REAL, "expires_at" REAL, "created_at" REAL NOT NULL);
CREATE TABLE "liteq_lease" ("name" TEXT NOT NULL PRIMARY KEY, "owner" TEXT NOT NULL, "expires_at" REAL NOT NULL, "acquired_at" REAL NOT NULL);
CREATE TABLE "liteq_meta" ("key" TEXT NOT NULL PRIMARY KEY, "value" TEXT NOT NULL);
CREATE TABLE "liteq_ratelimit" ("key" TEXT NOT NULL PRIMARY KEY, "tokens" REAL NOT NULL, "updated_at" REAL NOT NULL);
CREATE TABLE "liteq_result" ("task_id" TEXT NOT NULL PRIMARY KEY, "status" TEXT NOT NULL, "result" BLOB, "content_type" TEXT, "traceback" TEXT, "name" TEXT, "args" BLOB, "kwargs" BLOB, "queue" TEXT, "worker" TEXT, "retries" INTEGER, "parent_id" TEXT, "root_id" TEXT, "group_id" TEXT, "children" TEXT, "raw_message" BLOB, "date_done" REAL, "expires_at" REAL);
CREATE INDEX liteq_result_expires ON liteq_result(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX liteq_result_failed ON liteq_result(date_done) WHERE status = 'FAILURE';
CREATE TABLE "liteq_revoked" ("task_id" TEXT NOT NULL PRIMARY KEY, "terminate" INTEGER NOT NULL, "signal" TEXT, "expires_at" REAL NOT NULL);
CREATE TABLE "liteq_schedule" ("name" TEXT NOT NULL PRIMARY KEY, "task" TEXT NOT NULL, "schedule" TEXT NOT NULL, "args" TEXT NOT NULL, "kwargs" TEXT NOT NULL, "options" TEXT NOT NULL, "queue" TEXT, "priority" INTEGER, "enabled" INTEGER NOT NULL, "source" TEXT NOT NULL, "catch_up" TEXT NOT NULL, "definition_hash" TEXT NOT NULL, "last_run_at" REAL, "next_run_at" REAL, "total_run_count" INTEGER NOT NULL, "last_task_id" TEXT, "updated_at" REAL NOT NULL);
CREATE INDEX liteq_schedule_due ON liteq_schedule(next_run_at) WHERE enabled = 1;
CREATE TABLE "liteq_task" ("id" INTEGER NOT NULL PRIMARY KEY, "task_id" TEXT NOT NULL, "name" TEXT NOT NULL, "queue" TEXT NOT NULL, "state" INTEGER NOT NULL, "priority" INTEGER NOT NULL, "eta" REAL NOT NULL, "expires" REAL, "message" BLOB NOT NULL, "content_type" TEXT NOT NULL, "acks_late" INTEGER NOT NULL, "reject_on_worker_lost" INTEGER NOT NULL, "retries" INTEGER NOT NULL, "deliveries" INTEGER NOT NULL, "unique_key" TEXT, "worker_id" TEXT, "claim_token" INTEGER, "lease_until" REAL, "started_at" REAL, "revoke" INTEGER NOT NULL, "revoke_signal" TEXT, "created_at" REAL NOT NULL);
CREATE UNIQUE INDEX "liteq_task_task_id" ON "liteq_task" ("task_id");
CREATE INDEX liteq_task_ready ON liteq_task(queue, priority DESC, id) WHERE state = 1;
CREATE INDEX liteq_task_sched ON liteq_task(eta) WHERE state = 0;
CREATE INDEX liteq_task_lease ON liteq_task(lease_until) WHERE state = 2;
CREATE INDEX liteq_task_worker ON liteq_task(worker_id) WHERE state = 2;
CREATE UNIQUE INDEX liteq_task_unique ON liteq_task(unique_key) WHERE unique_key IS NOT NULL;
CREATE TABLE "liteq_worker" ("worker_id" TEXT NOT NULL PRIMARY KEY, "hostname" TEXT NOT NULL, "pid" INTEGER NOT NULL, "pid_starttime" INTEGER, "boot_id" TEXT, "queues" TEXT NOT NULL, "concurrency" INTEGER NOT NULL, "info" TEXT, "started_at" REAL NOT NULL, "heartbeat_at" REAL NOT NULL);
CREATE INDEX "liteq_worker_heartbeat_at" ON "liteq_worker" ("heartbeat_at");
INSERT INTO liteq_meta(key, value) VALUES ('schema_version', '1');
"""  # noqa: E501

_V1_TASK = (
    "INSERT INTO liteq_task(task_id, name, queue, state, priority, eta, message, "
    "content_type, acks_late, reject_on_worker_lost, retries, deliveries, worker_id, "
    "claim_token, lease_until, started_at, revoke, created_at) "
    "VALUES (?, 'tests.noop', 'celery', ?, 0, ?, ?, 'application/json', 0, 0, 0, ?, ?, "
    "?, ?, ?, 0, ?)"
)


def _make_v1_file(path: Path) -> None:
    """Write a version-1 file: one ready task, one task running on worker
    "dead", and a stored result."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(V1_DDL)
        conn.execute(
            _V1_TASK, ("queued", 1, T0, b"queued-msg", 0, None, None, None, None, T0)
        )
        conn.execute(
            _V1_TASK,
            ("running", 2, T0, b"running-msg", 1, "dead", 7, T0 + 3600, T0, T0),
        )
        conn.execute(
            "INSERT INTO liteq_result(task_id, status, result, content_type, name, "
            "date_done, expires_at) VALUES ('stored', 'SUCCESS', ?, "
            "'application/json', 'tests.noop', ?, ?)",
            (b"42", T0, T0 + 86400),
        )
    finally:
        conn.close()


@pytest.fixture
def v1_path(tmp_path: Path) -> Path:
    path = tmp_path / "v1.db"
    _make_v1_file(path)
    return path


@pytest.fixture
def opened() -> Iterator[Callable[[Path], Storage]]:
    stores: list[Storage] = []

    def open_store(path: Path) -> Storage:
        stores.append(Storage(str(path), busy_timeout=0.5))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()


def _table_sql(conn: Any, name: str) -> str:
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return str(row[0])


def _index_names(conn: Any, table: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
            (table,),
        )
    }


def _layout(conn: Any, table: str) -> tuple[Any, ...]:
    """Columns, constraints, rowid-ness and indexes of ``table``, comparable."""
    columns = conn.execute(f"PRAGMA table_info({table})").fetchall()
    indexes = {
        r[0]: " ".join(r[1].split())
        for r in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = ? AND sql IS NOT NULL",
            (table,),
        )
    }
    without_rowid = _table_sql(conn, table).upper().endswith("WITHOUT ROWID")
    return columns, indexes, without_rowid


# -- the current layout ---------------------------------------------------------------
def test_fresh_result_table_is_keyed_by_task_id_without_rowid(
    storage: Storage,
) -> None:
    conn = storage.db.connection()
    assert _table_sql(conn, "liteq_result").upper().endswith("WITHOUT ROWID")
    with pytest.raises(sqlite3.OperationalError, match="rowid"):
        conn.execute("SELECT rowid FROM liteq_result")
    assert _index_names(conn, "liteq_result") == {
        "liteq_result_expires",
        "liteq_result_failed",
    }


def test_fresh_task_table_has_no_worker_index(storage: Storage) -> None:
    conn = storage.db.connection()
    assert "liteq_task_worker" not in _index_names(conn, "liteq_task")
    assert "liteq_task_lease" in _index_names(conn, "liteq_task")


def test_large_result_is_stored_and_read_back_whole(storage: Storage) -> None:
    blob = bytes(range(256)) * 4096  # 1 MiB
    task = new_task()
    storage.broker.enqueue(task, T0)
    (claimed,) = storage.claim("w", None, 1, T0, 60)
    done = Completion(
        task.task_id, claimed=claimed, result=result_row(task.task_id, result=blob)
    )
    assert storage.complete([done], T0 + 1) == [True]
    row = storage.results.get(task.task_id)
    assert row is not None and row.result == blob
    # Overwritten by a small state, then by the large one again.
    storage.results.store(result_row(task.task_id, "RETRY", result=b"1"))
    stored = storage.results.get_many([task.task_id])[task.task_id]
    assert (stored.status, stored.result) == ("RETRY", b"1")
    storage.results.store(result_row(task.task_id, result=blob))
    row = storage.results.get(task.task_id)
    assert row is not None and row.result == blob


# -- query plans ----------------------------------------------------------------------
def _plans_of(storage: Storage, run: Callable[[], object], word: str) -> list[str]:
    """Run ``run`` and return the query plan of each liteq_task statement it
    executed that mentions ``word``."""
    conn = storage.db.connection()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        run()
    finally:
        conn.set_trace_callback(None)
    statements = [s for s in seen if "liteq_task" in s and word in s]
    plans = []
    for sql in statements:
        # Bound values are inlined in traced SQL on Python 3.11+, not before.
        params = [None] * sql.count("?")
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        plans.append(" | ".join(r[3] for r in rows))
    return plans


@pytest.fixture
def running(storage: Storage) -> Storage:
    """A storage with ready tasks and tasks running on workers w1 and w2."""
    storage.broker.enqueue_many([new_task() for _ in range(20)], T0)
    storage.claim("w1", None, 3, T0, 60)
    storage.claim("w2", None, 2, T0, 60)
    return storage


_PER_WORKER: dict[str, tuple[Callable[[Storage], object], str]] = {
    "heartbeat lease renewal": (
        lambda s: s.broker.extend_lease("w1", T0 + 1, 60),
        "worker_id =",
    ),
    "terminate requests": (lambda s: s.broker.terminate_requests("w1"), "worker_id ="),
    "dead worker recovery": (
        lambda s: s.recover(T0 + 1, 5, dead_workers=["w2"]),
        "worker_id IN",
    ),
}


@pytest.mark.parametrize("query", sorted(_PER_WORKER))
def test_per_worker_query_uses_the_running_index(running: Storage, query: str) -> None:
    run, marker = _PER_WORKER[query]
    plans = _plans_of(running, lambda: run(running), marker)
    assert plans
    for plan in plans:
        assert "USING INDEX liteq_task_lease" in plan, plan


def test_listing_a_workers_running_tasks_uses_the_running_index(
    running: Storage,
) -> None:
    # What an "active tasks" listing must look like: ``state = 2`` spelled
    # out, so the partial index of running rows applies.
    conn = running.db.connection()
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT task_id, name, started_at FROM liteq_task "
        "WHERE worker_id = ? AND state = 2",
        ("w1",),
    ).fetchall()
    assert [r[3] for r in plan] == ["SCAN liteq_task USING INDEX liteq_task_lease"]
    rows = conn.execute(
        "SELECT COUNT(*) FROM liteq_task WHERE worker_id = ? AND state = 2", ("w1",)
    ).fetchone()
    assert rows[0] == 3


# -- migration from version 1 ---------------------------------------------------------
def test_version_1_file_is_migrated_to_the_current_layout(
    v1_path: Path, tmp_path: Path, opened: Callable[[Path], Storage]
) -> None:
    store = opened(v1_path)
    conn = store.db.connection()
    assert schema.SCHEMA_VERSION == 3
    assert schema.current_version(conn) == 3
    assert "liteq_task_worker" not in _index_names(conn, "liteq_task")
    fresh = opened(tmp_path / "fresh.db").db.connection()
    assert _layout(conn, "liteq_result") == _layout(fresh, "liteq_result")
    assert _layout(conn, "liteq_task") == _layout(fresh, "liteq_task")
    assert _layout(conn, "liteq_result")[2] is True
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_version_1_file_keeps_its_tasks_and_results(
    v1_path: Path, opened: Callable[[Path], Storage]
) -> None:
    store = opened(v1_path)
    stored = store.results.get("stored")
    assert stored is not None
    assert (stored.status, stored.result, stored.expires_at) == (
        "SUCCESS",
        b"42",
        T0 + 86400,
    )
    (claimed,) = store.claim("w", None, 5, T0 + 1, 60)
    assert (claimed.task_id, claimed.message) == ("queued", b"queued-msg")
    done = Completion("queued", claimed=claimed, result=result_row("queued"))
    assert store.complete([done], T0 + 2) == [True]
    row = store.results.get("queued")
    assert row is not None and row.result == b"4"
    recovery = store.recover(T0 + 3, 5, dead_workers=["dead"])
    assert [x.task_id for x in recovery.lost] == ["running"]
    assert task_rows(store) == []


def test_version_1_migration_keeps_a_users_view_of_results(
    v1_path: Path, opened: Callable[[Path], Storage]
) -> None:
    conn = sqlite3.connect(v1_path)
    conn.execute("CREATE VIEW done AS SELECT task_id FROM liteq_result")
    conn.commit()
    conn.close()
    store = opened(v1_path)
    assert store.db.execute("SELECT task_id FROM done") == [("stored",)]


def test_version_1_migration_is_undone_whole_when_it_fails(
    v1_path: Path, opened: Callable[[Path], Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails_at_the_end(models: schema.Models, conn: Any) -> None:
        schema._migrate_1_to_2(models, conn)
        raise RuntimeError("disk trouble")

    monkeypatch.setitem(schema.MIGRATIONS, 1, fails_at_the_end)
    with pytest.raises(RuntimeError, match="disk trouble"):
        opened(v1_path).db.connection()
    conn = sqlite3.connect(v1_path)
    try:
        assert schema.current_version(conn) == 1
        assert "liteq_task_worker" in _index_names(conn, "liteq_task")
        assert not _table_sql(conn, "liteq_result").upper().endswith("WITHOUT ROWID")
        assert conn.execute("SELECT task_id FROM liteq_result").fetchall() == [
            ("stored",)
        ]
    finally:
        conn.close()


def test_version_3_file_is_refused_by_a_liteq_that_knows_only_version_2(
    tmp_path: Path, opened: Callable[[Path], Storage], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "v3.db"
    opened(path).db.connection()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    with pytest.raises(StorageError, match="schema version 3, newer"):
        opened(path).db.connection()


# -- migration from version 2 ---------------------------------------------------------
@pytest.fixture
def v2_path(
    v1_path: Path, opened: Callable[[Path], Storage], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A version-2 file (the version-1 file, migrated by a liteq that knows 2)."""
    with monkeypatch.context() as patch:
        patch.setattr(schema, "SCHEMA_VERSION", 2)
        store = opened(v1_path)
        assert schema.current_version(store.db.connection()) == 2
        store.close()
    return v1_path


def test_version_2_file_is_migrated_to_the_current_layout(
    v2_path: Path, tmp_path: Path, opened: Callable[[Path], Storage]
) -> None:
    conn = opened(v2_path).db.connection()
    assert schema.current_version(conn) == 3
    fresh = opened(tmp_path / "fresh.db").db.connection()
    assert _layout(conn, "liteq_task") == _layout(fresh, "liteq_task")
    assert conn.execute(
        "SELECT task_id, id_derived FROM liteq_task ORDER BY id"
    ).fetchall() == [("queued", 0), ("running", 0)]
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_version_2_tasks_are_found_and_claimed_before_new_ones(
    v2_path: Path, opened: Callable[[Path], Storage]
) -> None:
    store = opened(v2_path)
    assert store.broker.get_task_row("queued") is not None
    assert store.results.exists("running")
    later = new_task(task_id=new_id())
    store.broker.enqueue(later, T0)
    assert [c.task_id for c in store.claim("w", None, 5, T0 + 1, 60)] == [
        "queued",
        later.task_id,
    ]
    assert store.revoke(["running"], T0 + 2, terminate=True) == {
        "running": "terminating"
    }
