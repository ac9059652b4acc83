"""The schedule store: config sync, runtime entries, the exactly-once fire transaction."""

from __future__ import annotations

import threading
from typing import Any

from liteq.storage import Storage
from liteq.storage.beat_store import (
    SOURCE_API,
    SOURCE_CONFIG,
    BeatStore,
    Definition,
    Fire,
    ScheduleRow,
)

from .conftest import T0, new_task


def definition(name: str = "every-minute", **fields: Any) -> Definition:
    fields.setdefault("task", "tests.noop")
    fields.setdefault("schedule", {"type": "interval", "every": 60.0})
    fields.setdefault("args", [])
    fields.setdefault("kwargs", {})
    fields.setdefault("options", {})
    fields.setdefault("queue", None)
    fields.setdefault("priority", None)
    fields.setdefault("catch_up", "once")
    fields.setdefault("definition_hash", f"hash-{fields['schedule']}-{fields['args']}")
    fields.setdefault("next_run_at", T0 + 60)
    return Definition(name=name, **fields)


def advance_by_a_minute(row: ScheduleRow) -> Fire:
    assert row.next_run_at is not None
    task = new_task(unique_key=f"beat:{row.name}:{row.next_run_at}")
    return Fire([task], row.next_run_at, row.next_run_at + 60)


def queued_keys(storage: Storage) -> list[str]:
    return [
        r[0]
        for r in storage.db.execute("SELECT unique_key FROM liteq_task ORDER BY id")
    ]


def test_sync_adds_new_entries_with_their_first_due_time(storage: Storage) -> None:
    store = BeatStore(storage.db)
    report = store.sync([definition("a"), definition("b")], T0)
    assert (report.added, report.updated, report.removed) == (["a", "b"], [], [])
    row = store.get("a")
    assert row is not None
    assert (row.source, row.enabled, row.next_run_at, row.total_run_count) == (
        SOURCE_CONFIG,
        True,
        T0 + 60,
        0,
    )
    assert store.next_due_at() == T0 + 60


def test_sync_with_same_definition_keeps_run_state(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    store.fire_due(T0 + 60, advance_by_a_minute)
    report = store.sync([definition(next_run_at=T0 + 999)], T0 + 70)
    assert report.unchanged == ["every-minute"]
    row = store.get("every-minute")
    assert row is not None
    assert (row.last_run_at, row.next_run_at, row.total_run_count) == (
        T0 + 60,
        T0 + 120,
        1,
    )


def test_sync_of_changed_arguments_keeps_the_next_run(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition(args=[1])], T0)
    report = store.sync([definition(args=[2], next_run_at=T0 + 999)], T0 + 10)
    assert report.updated == ["every-minute"]
    row = store.get("every-minute")
    assert row is not None and (row.args, row.next_run_at) == ([2], T0 + 60)


def test_sync_of_changed_schedule_recomputes_the_next_run(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    changed = definition(
        schedule={"type": "interval", "every": 5.0}, next_run_at=T0 + 15
    )
    assert store.sync([changed], T0 + 10).updated == ["every-minute"]
    row = store.get("every-minute")
    assert row is not None
    assert (row.schedule, row.next_run_at) == (
        {"type": "interval", "every": 5.0},
        T0 + 15,
    )


def test_sync_deletes_dropped_config_entries_but_keeps_runtime_ones(
    storage: Storage,
) -> None:
    store = BeatStore(storage.db)
    store.sync([definition("kept"), definition("dropped")], T0)
    store.put(definition("runtime", source=SOURCE_API), T0)
    report = store.sync([definition("kept")], T0)
    assert report.removed == ["dropped"]
    assert [r.name for r in store.all()] == ["kept", "runtime"]


def test_sync_of_a_config_name_takes_over_a_runtime_entry(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.put(definition("shared", source=SOURCE_API), T0)
    assert store.sync([definition("shared")], T0).updated == ["shared"]
    row = store.get("shared")
    assert row is not None and row.source == SOURCE_CONFIG


def test_fire_due_advances_and_enqueues_in_one_transaction(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    assert store.fire_due(T0 + 59, advance_by_a_minute) == []
    fired = store.fire_due(T0 + 60, advance_by_a_minute)
    assert [f.row.name for f in fired] == ["every-minute"]
    assert len(fired[0].inserted) == 1
    row = store.get("every-minute")
    assert row is not None
    assert (row.next_run_at, row.total_run_count, row.last_task_id) == (
        T0 + 120,
        1,
        fired[0].inserted[0],
    )
    assert queued_keys(storage) == [f"beat:every-minute:{T0 + 60}"]


def test_fire_due_twice_at_the_same_time_fires_once(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    store.fire_due(T0 + 60, advance_by_a_minute)
    assert store.fire_due(T0 + 60, advance_by_a_minute) == []
    assert len(queued_keys(storage)) == 1


def test_fire_due_skips_a_row_whose_next_run_moved_meanwhile(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)

    def moved_by_someone_else(row: ScheduleRow) -> Fire:
        # The compare-and-set must see the value changed since the read.
        storage.db.connection().execute(
            "UPDATE liteq_schedule SET next_run_at = ? WHERE name = ?",
            (T0 + 120, row.name),
        )
        return advance_by_a_minute(row)

    assert store.fire_due(T0 + 60, moved_by_someone_else) == []
    assert queued_keys(storage) == []


def test_fire_due_counts_a_duplicate_key_but_inserts_nothing(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    storage.broker.enqueue(new_task(unique_key=f"beat:every-minute:{T0 + 60}"), T0)
    fired = store.fire_due(T0 + 60, advance_by_a_minute)
    assert fired[0].inserted == []
    row = store.get("every-minute")
    assert row is not None and row.total_run_count == 1


def test_fire_due_never_fires_disabled_entries(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    assert store.set_enabled("every-minute", False, T0)
    assert store.next_due_at() is None
    assert store.fire_due(T0 + 600, advance_by_a_minute) == []


def test_enable_restarts_a_disabled_entry_at_the_given_time(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    store.set_enabled("every-minute", False, T0)
    store.set_enabled("every-minute", True, T0 + 600, next_run_at=T0 + 660)
    assert store.next_due_at() == T0 + 660
    # Enabling an enabled entry leaves its next run alone.
    store.set_enabled("every-minute", True, T0 + 700, next_run_at=T0 + 9999)
    assert store.next_due_at() == T0 + 660
    assert not store.set_enabled("missing", True, T0, next_run_at=T0)


def test_fire_due_with_no_next_run_parks_the_entry(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    store.fire_due(T0 + 60, lambda row: Fire([new_task()], row.next_run_at, None))
    row = store.get("every-minute")
    assert row is not None and (row.enabled, row.next_run_at) == (True, None)
    assert store.next_due_at() is None


def test_run_now_sends_without_moving_the_schedule(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    task = new_task()
    assert store.run_now("every-minute", task, T0 + 5)
    row = store.get("every-minute")
    assert row is not None
    assert (row.next_run_at, row.last_task_id, row.total_run_count) == (
        T0 + 60,
        task.task_id,
        1,
    )
    assert not store.run_now("missing", new_task(), T0)


def test_remove_deletes_the_entry(storage: Storage) -> None:
    store = BeatStore(storage.db)
    store.put(definition(source=SOURCE_API), T0)
    assert store.remove("every-minute")
    assert not store.remove("every-minute")
    assert store.all() == []


def test_lease_reports_its_holder(storage: Storage) -> None:
    store = BeatStore(storage.db)
    assert store.lease("beat") is None
    assert storage.acquire_lease("beat", "me", T0, 10)
    held = store.lease("beat")
    assert held is not None and (held.owner, held.expires_at) == ("me", T0 + 10)


def test_fire_due_from_many_threads_sends_each_occurrence_once(
    storage: Storage,
) -> None:
    store = BeatStore(storage.db)
    store.sync([definition()], T0)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def fire() -> None:
        try:
            barrier.wait()
            for minute in range(1, 21):
                BeatStore(storage.db).fire_due(T0 + 60 * minute, advance_by_a_minute)
        except BaseException as exc:
            errors.append(exc)
        finally:
            storage.db.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    keys = queued_keys(storage)
    assert sorted(keys) == sorted(
        f"beat:every-minute:{T0 + 60 * m}" for m in range(1, 21)
    )
    row = store.get("every-minute")
    assert row is not None and row.total_run_count == 20
