"""Result-backend verbs: store, get, events, forget, expire, groups."""

from __future__ import annotations

from liteq.storage import GroupRow, Storage

from .conftest import T0, new_task, result_row


def test_store_then_get_returns_the_row(storage: Storage) -> None:
    row = result_row("t1", traceback="tb", name="tests.add", retries=2, worker="w")
    storage.results.store(row)
    got = storage.results.get("t1")
    assert got == row
    assert storage.results.get("missing") is None


def test_store_upsert_keeps_known_fields_not_given_again(storage: Storage) -> None:
    storage.results.store(result_row("t1", "STARTED", name="tests.add", worker="w"))
    storage.results.store(result_row("t1", "SUCCESS", result=b"8"))
    got = storage.results.get("t1")
    assert got is not None
    assert (got.status, got.result, got.name, got.worker) == (
        "SUCCESS",
        b"8",
        "tests.add",
        "w",
    )


def test_store_with_event_appends_every_change_in_order(storage: Storage) -> None:
    for n, status in enumerate(["STARTED", "PROGRESS", "PROGRESS", "RETRY"]):
        storage.results.store(result_row("t1", status, result=str(n).encode()), True)
    events = storage.results.events_since("t1")
    assert [(e.status, e.result) for e in events] == [
        ("STARTED", b"0"),
        ("PROGRESS", b"1"),
        ("PROGRESS", b"2"),
        ("RETRY", b"3"),
    ]
    assert storage.results.events_since("t1", events[1].id) == events[2:]
    assert storage.results.events_since("other") == []


def test_get_many_returns_only_stored_ids(storage: Storage) -> None:
    storage.results.store(result_row("a"))
    storage.results.store(result_row("b", "FAILURE"))
    got = storage.results.get_many(["a", "b", "c"])
    assert sorted(got) == ["a", "b"]
    assert got["b"].status == "FAILURE"
    assert storage.results.get_many([]) == {}


def test_exists_tells_unknown_ids_from_queued_or_stored_ones(
    storage: Storage,
) -> None:
    task = new_task()
    storage.broker.enqueue(task, T0)
    storage.results.store(result_row("done"))
    assert storage.results.exists(task.task_id)
    assert storage.results.exists("done")
    assert not storage.results.exists("never-seen")


def test_forget_deletes_result_and_events(storage: Storage) -> None:
    storage.results.store(result_row("t1", "PROGRESS"), event=True)
    storage.results.store(result_row("t1"))
    storage.results.store(result_row("t2"))
    storage.results.forget(["t1"])
    assert storage.results.get("t1") is None
    assert storage.results.events_since("t1") == []
    assert storage.results.get("t2") is not None


def test_expire_deletes_results_past_their_expiry_in_batches(
    storage: Storage,
) -> None:
    for n in range(25):
        storage.results.store(result_row(f"old{n}", expires_at=T0 + 10))
    storage.results.store(result_row("old0", "SUCCESS", expires_at=T0 + 10), True)
    storage.results.store(result_row("fresh", expires_at=T0 + 1000))
    storage.results.store(result_row("forever", expires_at=None))
    assert storage.results.expire(T0 + 5) == 0
    assert storage.results.expire(T0 + 11, batch=10) == 25
    assert storage.results.get("old3") is None
    assert storage.results.events_since("old0") == []
    assert storage.results.get("fresh") is not None
    assert storage.results.get("forever") is not None


def test_expire_also_drops_expired_groups_and_revokes(storage: Storage) -> None:
    storage.results.save_group(GroupRow("g", ["a"], expires_at=T0 + 1), T0)
    storage.revoke(["r"], T0, keep_for=1)
    storage.results.expire(T0 + 2)
    assert storage.results.get_group("g") is None
    assert not storage.is_revoked("r")


def test_save_group_then_get_group_returns_members_in_order(
    storage: Storage,
) -> None:
    storage.results.save_group(GroupRow("g1", ["c", "a", "b"]), T0)
    got = storage.results.get_group("g1")
    assert got is not None
    assert got.task_ids == ["c", "a", "b"]
    storage.results.save_group(GroupRow("g1", ["x"], remaining=1), T0)
    again = storage.results.get_group("g1")
    assert again is not None and (again.task_ids, again.remaining) == (["x"], 1)
    storage.results.delete_group("g1")
    assert storage.results.get_group("g1") is None


def test_recent_failures_lists_newest_first(storage: Storage) -> None:
    storage.results.store(result_row("f1", "FAILURE", date_done=T0))
    storage.results.store(result_row("ok", "SUCCESS", date_done=T0 + 1))
    storage.results.store(result_row("f2", "FAILURE", date_done=T0 + 2))
    assert [r.task_id for r in storage.results.recent_failures()] == ["f2", "f1"]
