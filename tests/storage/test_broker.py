"""Queue verbs: enqueue, claim with lease and fencing token, give back, recover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liteq.exceptions import StorageError
from liteq.storage import Completion, Storage
from liteq.storage import broker as broker_module
from liteq.storage.broker import task_values
from liteq.storage.schema import READY, RUNNING, SCHEDULED

from .conftest import T0, new_task, result_row, task_rows


def test_enqueue_due_task_is_ready_and_committed(storage: Storage) -> None:
    task = new_task()
    assert storage.broker.enqueue(task, T0) is True
    assert task_rows(storage) == [(task.task_id, READY, 0, 0, T0)]
    assert storage.broker.idle_facts(None) == (True, None, None)


def test_enqueue_future_eta_is_a_scheduled_row(storage: Storage) -> None:
    task = new_task(eta=T0 + 60)
    storage.broker.enqueue(task, T0)
    assert task_rows(storage) == [(task.task_id, SCHEDULED, 0, 0, T0 + 60)]
    assert storage.broker.next_eta() == T0 + 60
    assert storage.broker.idle_facts(None) == (False, T0 + 60, None)


def test_enqueue_unique_key_skips_a_duplicate_while_queued(storage: Storage) -> None:
    first = new_task(unique_key="report:1")
    assert storage.broker.enqueue(first, T0) is True
    assert storage.broker.enqueue(new_task(unique_key="report:1"), T0) is False
    claimed = storage.claim("w1", None, 1, T0, 60)
    storage.complete([Completion(first.task_id, claimed=claimed[0])], T0)
    # The key frees itself when the row is gone.
    assert storage.broker.enqueue(new_task(unique_key="report:1"), T0) is True


def test_enqueue_many_inserts_all_in_one_transaction(storage: Storage) -> None:
    tasks = [new_task() for _ in range(500)]
    commits: list[int] = []
    storage.db.add_commit_hook(lambda: commits.append(1))
    assert storage.broker.enqueue_many(tasks, T0) == 500
    assert len(commits) == 1
    assert len(task_rows(storage)) == 500
    assert storage.broker.enqueue_many([], T0) == 0


def test_claim_returns_rows_by_priority_then_fifo(storage: Storage) -> None:
    low = new_task(priority=0)
    high = new_task(priority=9)
    mid = new_task(priority=5)
    low2 = new_task(priority=0)
    storage.broker.enqueue_many([low, high, mid, low2], T0)
    claimed = storage.claim("w1", None, 10, T0, 60)
    assert [c.task_id for c in claimed] == [
        high.task_id,
        mid.task_id,
        low.task_id,
        low2.task_id,
    ]


def test_claim_sets_lease_token_and_counts_the_delivery(storage: Storage) -> None:
    task = new_task(acks_late=True, expires=T0 + 500)
    storage.broker.enqueue(task, T0)
    (claimed,) = storage.claim("w1", None, 5, T0, 60)
    assert claimed.task_id == task.task_id
    assert claimed.message == task.message
    assert claimed.deliveries == 1
    assert claimed.lease_until == T0 + 60
    assert claimed.acks_late is True
    assert claimed.expires == T0 + 500
    assert claimed.claim_token > 0
    assert task_rows(storage)[0][1] == RUNNING
    assert storage.claim("w2", None, 5, T0, 60) == []


def test_claim_only_takes_the_given_queues(storage: Storage) -> None:
    a = new_task(queue="a")
    b = new_task(queue="b")
    c = new_task(queue="c")
    storage.broker.enqueue_many([a, b, c], T0)
    assert [t.task_id for t in storage.claim("w", ["b"], 5, T0, 60)] == [b.task_id]
    got = storage.claim("w", ["a", "c"], 5, T0, 60)
    assert {t.task_id for t in got} == {a.task_id, c.task_id}
    assert storage.broker.idle_facts(["a"]) == (False, None, T0 + 60)
    assert storage.broker.idle_facts(None) == (False, None, T0 + 60)


def test_claim_promotes_due_scheduled_rows_only(storage: Storage) -> None:
    due = new_task(eta=T0 + 10)
    later = new_task(eta=T0 + 100)
    storage.broker.enqueue_many([due, later], T0)
    assert storage.claim("w", None, 5, T0, 60) == []
    got = storage.claim("w", None, 5, T0 + 10, 60)
    assert [t.task_id for t in got] == [due.task_id]
    assert storage.broker.next_eta() == T0 + 100


def test_claim_respects_the_limit(storage: Storage) -> None:
    storage.broker.enqueue_many([new_task() for _ in range(7)], T0)
    assert len(storage.claim("w", None, 3, T0, 60)) == 3
    assert len(storage.claim("w", None, 0, T0, 60)) == 0
    assert len(storage.claim("w", None, 10, T0, 60)) == 4


def test_complete_deletes_the_row_and_stores_the_result(storage: Storage) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    (claimed,) = storage.claim("w", None, 1, T0, 60)
    done = Completion(task.task_id, claimed=claimed, result=result_row(task.task_id))
    assert storage.complete([done], T0 + 1) == [True]
    assert task_rows(storage) == []
    row = storage.results.get(task.task_id)
    assert row is not None
    assert row.status == "SUCCESS"
    assert row.result == b"4"


def test_complete_with_a_stale_token_changes_nothing(storage: Storage) -> None:
    task = new_task(acks_late=True)
    storage.broker.enqueue(task, T0)
    (first,) = storage.claim("w1", None, 1, T0, 60)
    # The lease runs out and another worker takes the task over.
    storage.broker.recover_expired(T0 + 61, max_deliveries=5)
    (second,) = storage.claim("w2", None, 1, T0 + 61, 60)
    assert second.claim_token != first.claim_token
    late = Completion(task.task_id, claimed=first, result=result_row(task.task_id))
    assert storage.complete([late], T0 + 62) == [False]
    assert storage.results.get(task.task_id) is None
    assert task_rows(storage)[0][1] == RUNNING
    ok = Completion(task.task_id, claimed=second, result=result_row(task.task_id))
    assert storage.complete([ok], T0 + 63) == [True]


def test_complete_with_retry_eta_reschedules_the_row(storage: Storage) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    (claimed,) = storage.claim("w", None, 1, T0, 60)
    retry = Completion(
        task.task_id,
        claimed=claimed,
        retry_eta=T0 + 30,
        retry_message=b"next attempt",
        result=result_row(task.task_id, "RETRY"),
        event=True,
    )
    assert storage.complete([retry], T0) == [True]
    assert task_rows(storage) == [(task.task_id, SCHEDULED, 1, 0, T0 + 30)]
    assert storage.claim("w", None, 1, T0 + 29, 60) == []
    (again,) = storage.claim("w", None, 1, T0 + 30, 60)
    assert again.message == b"next attempt"
    assert again.retries == 1
    events = storage.results.events_since(task.task_id)
    assert [e.status for e in events] == ["RETRY"]


def test_complete_with_requeue_puts_the_row_back(storage: Storage) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    (claimed,) = storage.claim("w", None, 1, T0, 60)
    storage.complete([Completion(task.task_id, claimed=claimed, requeue=True)], T0)
    (again,) = storage.claim("w", None, 1, T0, 60)
    assert again.deliveries == 2


def test_complete_is_all_or_nothing(storage: Storage) -> None:
    a, b = new_task(), new_task()
    storage.broker.enqueue_many([a, b], T0)
    ca, cb = storage.claim("w", None, 2, T0, 60)
    broken = result_row(cb.task_id, result=object())  # cannot be bound: fails
    with pytest.raises(StorageError):
        storage.complete(
            [
                Completion(ca.task_id, claimed=ca, result=result_row(ca.task_id)),
                Completion(cb.task_id, claimed=cb, result=broken),
            ],
            T0,
        )
    assert storage.results.get(ca.task_id) is None
    assert [r[1] for r in task_rows(storage)] == [RUNNING, RUNNING]


def test_complete_enqueues_followups_in_the_same_transaction(
    storage: Storage,
) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    (claimed,) = storage.claim("w", None, 1, T0, 60)
    follow = new_task(name="tests.callback")
    storage.complete(
        [Completion(task.task_id, claimed=claimed, followups=[follow])], T0
    )
    assert [r[0] for r in task_rows(storage)] == [follow.task_id]


def test_give_back_returns_tasks_without_counting_a_delivery(
    storage: Storage,
) -> None:
    storage.broker.enqueue_many([new_task(), new_task()], T0)
    claimed = storage.claim("w", None, 2, T0, 60)
    assert storage.broker.give_back(claimed) == 2
    assert storage.broker.give_back(claimed) == 0  # tokens are spent
    again = storage.claim("w", None, 2, T0, 60)
    assert [c.deliveries for c in again] == [1, 1]


def test_extend_lease_renews_every_running_task_of_the_worker(
    storage: Storage,
) -> None:
    storage.broker.enqueue_many([new_task(), new_task(), new_task()], T0)
    mine = storage.claim("w1", None, 2, T0, 60)
    (theirs,) = storage.claim("w2", None, 1, T0, 60)
    assert storage.broker.extend_lease("w1", T0 + 50, 60) == []
    leases = dict(storage.db.execute("SELECT task_id, lease_until FROM liteq_task"))
    assert leases[mine[0].task_id] == T0 + 110
    assert leases[mine[1].task_id] == T0 + 110
    assert leases[theirs.task_id] == T0 + 60
    recovery = storage.broker.recover_expired(T0 + 61, max_deliveries=5)
    assert recovery.lost[0].task_id == theirs.task_id
    assert len(recovery.lost) == 1


def test_extend_lease_reports_terminate_requests(storage: Storage) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    storage.claim("w1", None, 1, T0, 60)
    assert storage.broker.mark_revoked_running(task.task_id, "SIGKILL") == "w1"
    assert storage.broker.extend_lease("w1", T0, 60) == [(task.task_id, "SIGKILL")]


def test_recover_expired_requeues_acks_late_and_loses_the_others(
    storage: Storage,
) -> None:
    late = new_task(acks_late=True)
    early = new_task()
    storage.broker.enqueue_many([late, early], T0)
    storage.claim("w", None, 2, T0, 60)
    assert storage.broker.recover_expired(T0 + 59, 5).requeued == []
    recovery = storage.broker.recover_expired(T0 + 61, max_deliveries=5)
    assert recovery.requeued == [late.task_id]
    assert [(x.task_id, x.reason) for x in recovery.lost] == [
        (early.task_id, "worker_lost")
    ]
    assert [r[0] for r in task_rows(storage)] == [late.task_id]


def test_recover_expired_gives_up_after_max_deliveries(storage: Storage) -> None:
    task = new_task(acks_late=True)
    storage.broker.enqueue(task, T0)
    now = T0
    for _ in range(3):
        assert storage.claim("w", None, 1, now, 10)
        now += 11
        recovery = storage.broker.recover_expired(now, max_deliveries=3)
    assert recovery.requeued == []
    assert [(x.task_id, x.deliveries, x.reason) for x in recovery.lost] == [
        (task.task_id, 3, "max_deliveries")
    ]
    assert task_rows(storage) == []


def test_recover_dead_workers_at_once_and_store_lost_results(
    storage: Storage,
) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    storage.claim("dead", None, 1, T0, 3600)
    recovery = storage.recover(
        T0 + 1,
        max_deliveries=5,
        dead_workers=["dead"],
        lost_result=lambda lost: result_row(lost.task_id, "FAILURE"),
    )
    assert [x.task_id for x in recovery.lost] == [task.task_id]
    row = storage.results.get(task.task_id)
    assert row is not None and row.status == "FAILURE"


def test_purge_deletes_waiting_tasks_but_not_running_ones(storage: Storage) -> None:
    running = new_task(queue="a")
    storage.broker.enqueue(running, T0)
    storage.claim("w", None, 1, T0, 60)
    storage.broker.enqueue_many(
        [new_task(queue="a"), new_task(queue="b", eta=T0 + 99)], T0
    )
    assert storage.broker.purge(["b"]) == 1
    assert storage.broker.purge() == 1
    assert [r[0] for r in task_rows(storage)] == [running.task_id]


def test_queue_stats_counts_ready_scheduled_and_running(storage: Storage) -> None:
    storage.broker.enqueue_many(
        [new_task(queue="a"), new_task(queue="a"), new_task(queue="b", eta=T0 + 5)],
        T0,
    )
    storage.claim("w", ["a"], 1, T0, 60)
    assert storage.broker.queue_stats(T0) == {
        "a": {"ready": 1, "scheduled": 0, "running": 1},
        "b": {"ready": 0, "scheduled": 1, "running": 0},
    }
    assert storage.broker.queue_stats(T0 + 5)["b"]["ready"] == 1


def test_get_task_row_reports_state_of_a_queued_task(storage: Storage) -> None:
    task = new_task(queue="q", eta=T0 + 5)
    storage.broker.enqueue(task, T0)
    assert storage.broker.get_task_row(task.task_id) == (
        SCHEDULED,
        "tests.noop",
        "q",
        0,
        T0 + 5,
    )
    assert storage.broker.get_task_row("missing") is None


def test_set_delivery_mode_fixes_acks_late_of_a_claimed_row(
    storage: Storage,
) -> None:
    storage.broker.enqueue(new_task(), T0)
    (claimed,) = storage.claim("w", None, 1, T0, 60)
    storage.broker.set_delivery_mode(claimed, True, False)
    assert storage.broker.recover_expired(T0 + 61, 5).requeued == [claimed.task_id]


def test_idle_facts_sees_ready_tasks_only_in_the_given_queues(
    storage: Storage,
) -> None:
    storage.broker.enqueue(new_task(queue="other"), T0)
    storage.broker.enqueue(new_task(queue="later", eta=T0 + 30), T0)
    assert storage.broker.idle_facts(["celery"]) == (False, T0 + 30, None)
    assert storage.broker.idle_facts(["celery", "other"]) == (True, T0 + 30, None)
    assert storage.broker.idle_facts(None) == (True, T0 + 30, None)


def _uniform_batch(
    count: int, **fields: Any
) -> tuple[tuple[Any, ...], list[str], list[bytes], tuple[Any, ...]]:
    """``(head, ids, messages, tail)`` of ``count`` rows alike but for id and message."""
    values = dict(
        name='tests.o\'dd "name" é',
        content_type="application/x-odd'type",
        queue='it\'s a "queue" ü',
        priority=7,
        eta=None,
        expires=T0 + 0.1,
        acks_late=True,
        reject_on_worker_lost=False,
        retries=2,
        unique_key=None,
    )
    values.update(fields)
    probe = task_values("", message=b"", now=T0, **values)  # type: ignore[arg-type]
    ids = [f"task-'{n}'-é" for n in range(count)]
    messages = [f'message "{n}" \0 ü'.encode() for n in range(count)]
    return probe[1:7], ids, messages, probe[8:]


def _all_rows(store: Storage) -> list[tuple[Any, ...]]:
    return store.db.execute("SELECT * FROM liteq_task ORDER BY id")


@pytest.mark.parametrize("count", [1, 7, 8, 9, 41, 128, 300])
@pytest.mark.parametrize("eta", [None, T0 + 30])
def test_insert_uniform_writes_the_rows_insert_many_writes(
    tmp_path: Path, count: int, eta: float | None
) -> None:
    head, ids, messages, tail = _uniform_batch(count, eta=eta)
    stores = [Storage(str(tmp_path / f"{n}.db"), busy_timeout=0.5) for n in (1, 2)]
    try:
        uniform, many = stores
        assert uniform.broker.insert_uniform(head, ids, messages, tail) == count
        rows = [(i, *head, m, *tail) for i, m in zip(ids, messages, strict=True)]
        assert many.broker.insert_many(rows) == count
        assert _all_rows(uniform) == _all_rows(many)
        assert [row[:2] for row in task_rows(uniform)] == [
            (i, SCHEDULED if eta else READY) for i in ids
        ]
    finally:
        for store in stores:
            store.close()


def test_insert_uniform_skips_a_queued_unique_key(storage: Storage) -> None:
    head, ids, messages, tail = _uniform_batch(40, unique_key="report:'1'")
    assert storage.broker.insert_uniform(head, ids, messages, tail) == 1
    assert [row[0] for row in task_rows(storage)] == ids[:1]
    assert storage.broker.insert_uniform(head, ids[1:2], messages[1:2], tail) == 0


def test_insert_uniform_is_one_transaction(storage: Storage) -> None:
    head, ids, messages, tail = _uniform_batch(200)
    commits: list[int] = []
    storage.db.add_commit_hook(lambda: commits.append(1))
    assert storage.broker.insert_uniform(head, ids, messages, tail) == 200
    assert len(commits) == 1
    # A duplicate task id in the last statement: nothing of the batch is kept.
    again = [f"new-{n}" for n in range(199)] + [ids[0]]
    with pytest.raises(StorageError):
        storage.broker.insert_uniform(head, again, messages, tail)
    assert len(task_rows(storage)) == 200
    assert storage.broker.insert_uniform(head, [], [], tail) == 0


def test_insert_uniform_keeps_few_statement_texts(storage: Storage) -> None:
    head, ids, messages, tail = _uniform_batch(300)
    start = 0
    for count in range(1, 24):
        batch = slice(start, start + count)
        storage.broker.insert_uniform(head, ids[batch], messages[batch], tail)
        start += count
    assert len(task_rows(storage)) == start
    assert len(broker_module._UNIFORM_SQL) <= 2 * len(broker_module._UNIFORM_SIZES)


def test_insert_uniform_rejects_ids_and_messages_of_different_lengths(
    storage: Storage,
) -> None:
    head, ids, messages, tail = _uniform_batch(3)
    with pytest.raises(ValueError, match="3 task ids for 2 messages"):
        storage.broker.insert_uniform(head, ids, messages[:2], tail)
