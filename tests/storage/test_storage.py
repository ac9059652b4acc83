"""Verbs over both queue and results: revoke, leases, rate tokens, chords, maintain."""

from __future__ import annotations

from typing import Any

from liteq.storage import Completion, GroupRow, Storage, WorkerRow
from liteq.storage.schema import RUNNING

from .conftest import T0, new_task, result_row, task_rows


def test_revoke_waiting_task_deletes_it_and_stores_revoked(storage: Storage) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    outcome = storage.revoke(
        [task.task_id],
        T0,
        revoked_result=lambda tid, name: result_row(tid, "REVOKED", name=name),
    )
    assert outcome == {task.task_id: "revoked"}
    assert task_rows(storage) == []
    row = storage.results.get(task.task_id)
    assert row is not None and (row.status, row.name) == ("REVOKED", "tests.noop")
    assert storage.is_revoked(task.task_id)


def test_revoke_before_publish_is_remembered(storage: Storage) -> None:
    assert storage.revoke(["later"], T0) == {"later": "remembered"}
    storage.broker.enqueue(new_task(task_id="later"), T0)
    assert storage.revoked_among(["later", "other"]) == {"later"}


def test_revoke_running_task_with_terminate_flags_its_worker(
    storage: Storage,
) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    storage.claim("w", None, 1, T0, 60)
    assert storage.revoke([task.task_id], T0) == {task.task_id: "running"}
    assert storage.broker.terminate_requests("w") == []
    outcome = storage.revoke([task.task_id], T0, terminate=True, signal="SIGKILL")
    assert outcome == {task.task_id: "terminating"}
    assert storage.broker.terminate_requests("w") == [(task.task_id, "SIGKILL")]
    # A terminated task whose lease runs out is lost as revoked, not re-run.
    recovery = storage.broker.recover_expired(T0 + 61, 5)
    assert [(x.task_id, x.reason) for x in recovery.lost] == [(task.task_id, "revoked")]


def test_revokes_persist_across_storage_instances(storage: Storage) -> None:
    storage.revoke(["gone"], T0)
    other = Storage(storage.path)
    try:
        assert other.is_revoked("gone")
    finally:
        other.close()


def test_acquire_lease_is_exclusive_until_it_expires(storage: Storage) -> None:
    assert storage.acquire_lease("beat", "a", T0, 30)
    assert storage.acquire_lease("beat", "a", T0 + 10, 30)  # renew
    assert not storage.acquire_lease("beat", "b", T0 + 20, 30)
    assert storage.acquire_lease("beat", "b", T0 + 41, 30)
    assert not storage.acquire_lease("beat", "a", T0 + 42, 30)
    storage.release_lease("beat", "b")
    assert storage.acquire_lease("beat", "a", T0 + 43, 30)


def test_take_token_refills_at_the_rate(storage: Storage) -> None:
    # 2 tokens per second, bucket of 2.
    assert storage.take_token("tests.add", 2.0, 2.0, T0) == 0.0
    assert storage.take_token("tests.add", 2.0, 2.0, T0) == 0.0
    assert storage.take_token("tests.add", 2.0, 2.0, T0) == 0.5
    assert storage.take_token("tests.add", 2.0, 2.0, T0 + 0.5) == 0.0
    assert storage.take_token("other", 2.0, 2.0, T0) == 0.0


def test_register_worker_then_list_and_unregister(storage: Storage) -> None:
    row = WorkerRow("w1", "host", 123, 456, "boot", ["celery"], 2, {"v": 1}, T0, T0)
    storage.register_worker(row)
    storage.register_worker(
        WorkerRow("w1", "host", 123, 456, "boot", ["a"], 4, {}, T0, T0 + 5)
    )
    (got,) = storage.workers()
    assert (got.queues, got.concurrency, got.heartbeat_at) == (["a"], 4, T0 + 5)
    storage.unregister_worker("w1")
    assert storage.workers() == []


def test_chord_counter_fires_the_hook_exactly_once(storage: Storage) -> None:
    calls: list[tuple[str, Any]] = []
    body = new_task(name="tests.body")

    def hook(conn: Any, group_id: str, failed: Any, now: float) -> Any:
        calls.append((group_id, failed))
        return [body], [result_row(group_id, "SUCCESS")]

    storage.chord_hook = hook
    parts = [new_task(), new_task(), new_task()]
    storage.results.save_group(
        GroupRow("chord1", [p.task_id for p in parts], remaining=3), T0
    )
    storage.broker.enqueue_many(parts, T0)
    claimed = storage.claim("w", None, 3, T0, 60)
    for c in reversed(claimed):
        storage.complete([Completion(c.task_id, claimed=c, chord_group="chord1")], T0)
    assert calls == [("chord1", None)]
    assert [r[0] for r in task_rows(storage)] == [body.task_id]
    row = storage.results.get("chord1")
    assert row is not None and row.status == "SUCCESS"


def test_chord_part_failure_fires_the_hook_once_with_the_error(
    storage: Storage,
) -> None:
    calls: list[Any] = []
    storage.chord_hook = lambda conn, gid, failed, now: (
        calls.append(failed),
        ([], []),
    )[1]
    parts = [new_task(), new_task()]
    storage.results.save_group(
        GroupRow("c2", [p.task_id for p in parts], remaining=2), T0
    )
    storage.broker.enqueue_many(parts, T0)
    first, second = storage.claim("w", None, 2, T0, 60)
    failure = result_row(first.task_id, "FAILURE")
    storage.complete(
        [
            Completion(
                first.task_id,
                claimed=first,
                result=failure,
                chord_group="c2",
                chord_failed=True,
            )
        ],
        T0,
    )
    storage.complete([Completion(second.task_id, claimed=second, chord_group="c2")], T0)
    assert calls == [failure]


def test_maintain_expires_results_and_returns_the_count(storage: Storage) -> None:
    storage.results.store(result_row("old", expires_at=T0 + 1))
    storage.results.store(result_row("new", expires_at=T0 + 100))
    assert storage.maintain(T0 + 2) == 1
    assert storage.results.get("old") is None
    assert storage.maintain(T0 + 2) == 0


def test_maintain_returns_free_pages_to_the_filesystem(storage: Storage) -> None:
    big = b"x" * 4000
    storage.broker.enqueue_many([new_task(message=big) for _ in range(3000)], T0)
    storage.broker.purge()
    conn = storage.db.connection()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] > 2000
    storage.maintain(T0)
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] < 2000


def test_complete_without_claim_stores_only_the_result(storage: Storage) -> None:
    assert storage.complete([Completion("eager", result=result_row("eager"))], T0)
    assert storage.results.get("eager") is not None
    assert task_rows(storage) == []
    assert RUNNING == 2
