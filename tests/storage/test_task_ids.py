"""Where a queue row is stored and found: at the rowid its task id encodes,
or elsewhere through the task id index."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from liteq import messages
from liteq.exceptions import StorageError
from liteq.messages import SEQ_BITS, new_id, rowid_of
from liteq.storage import Completion, Storage

from .conftest import T0, new_task, result_row


def _rows(store: Storage) -> list[tuple[Any, ...]]:
    """``(task_id, id_derived)`` of every queued row, in claim order."""
    return store.db.execute("SELECT task_id, id_derived FROM liteq_task ORDER BY id")


def _same_rowid(task_id: str) -> str:
    """Another id that encodes the same rowid (its random end differs)."""
    other = task_id[:24] + ("0" * 12 if task_id[24:] != "0" * 12 else "1" * 12)
    assert rowid_of(other) == rowid_of(task_id)
    return other


def _indexed(store: Storage) -> list[str]:
    """The task ids the ``liteq_task_task_id`` index holds."""
    rows = store.db.execute(
        "SELECT task_id FROM liteq_task INDEXED BY liteq_task_task_id "
        "WHERE id_derived = 0 AND task_id > '' ORDER BY task_id"
    )
    return [r[0] for r in rows]


# -- the ids -------------------------------------------------------------------------
def test_ids_made_one_after_another_encode_increasing_rowids() -> None:
    ids = [new_id() for _ in range(5000)]
    rowids = [rowid_of(i) for i in ids]
    assert rowids == sorted(rowids) and len(set(rowids)) == len(ids)
    for value, rowid in zip(ids, rowids, strict=True):
        assert rowid is not None
        # The rowid is the id's milliseconds, then its sequence number.
        assert rowid >> SEQ_BITS == uuid.UUID(value).int >> 80
        # Parsed back from the text, not only remembered from new_id.
        assert rowid_of("".join(value)) == rowid


def test_a_sequence_that_runs_out_moves_on_to_the_next_millisecond() -> None:
    ahead = time.time_ns() // 1_000_000 + 1000
    messages._last[:] = [ahead, messages._SEQ_MASK, messages._time_part(ahead)]
    try:
        value = new_id()
    finally:
        messages._forget_ids()
    assert uuid.UUID(value).int >> 80 == ahead + 1
    rowid = rowid_of(value)
    assert rowid is not None and rowid >> SEQ_BITS == ahead + 1


def test_a_clock_that_went_back_keeps_counting_in_the_last_millisecond() -> None:
    ahead = time.time_ns() // 1_000_000 + 1000
    messages._last[:] = [ahead, 7, messages._time_part(ahead)]
    try:
        first, second = new_id(), new_id()
    finally:
        messages._forget_ids()
    assert [rowid_of(first), rowid_of(second)] == [
        ahead << SEQ_BITS | 8,
        ahead << SEQ_BITS | 9,
    ]


@pytest.mark.parametrize(
    "value",
    [
        "task-1",
        str(uuid.uuid4()),
        "01A2026E-2FC6-761A-888C-3DB2F05FA863",  # upper case
        "01a2026e-2fc6-761a-c88c-3db2f05fa863",  # not the RFC variant
        "01a2026e-2fc6-761a-888c-3db2f05fa863 ",
        "fffffffff-fff-7fff-bfff-ffffffffffff",
        "ffffffff-ffff-7fff-bfff-ffffffffffff",  # past what a rowid holds
    ],
)
def test_other_ids_encode_no_rowid(value: str) -> None:
    assert rowid_of(value) is None


# -- storing and finding -------------------------------------------------------------
def test_a_new_id_is_stored_at_its_rowid_and_not_indexed(storage: Storage) -> None:
    task = new_task(task_id=new_id())
    assert storage.broker.enqueue(task, T0) is True
    (rowid,) = storage.db.execute("SELECT id FROM liteq_task")[0]
    assert rowid == rowid_of(task.task_id)
    assert _rows(storage) == [(task.task_id, 1)]
    assert _indexed(storage) == []
    assert storage.broker.get_task_row(task.task_id) is not None
    assert storage.results.exists(task.task_id)


def test_other_ids_are_stored_elsewhere_and_indexed(storage: Storage) -> None:
    custom = new_task(task_id="report-2024")
    uuid4 = new_task(task_id=str(uuid.uuid4()))
    storage.broker.enqueue(custom, T0)
    storage.broker.enqueue(uuid4, T0)
    assert [r[1] for r in _rows(storage)] == [0, 0]
    assert set(_indexed(storage)) == {custom.task_id, uuid4.task_id}
    assert storage.broker.get_task_row(custom.task_id) is not None
    assert storage.broker.get_task_row(uuid4.task_id) is not None


def test_a_taken_rowid_stores_the_second_task_elsewhere(storage: Storage) -> None:
    first = new_task(task_id=new_id())
    second = new_task(task_id=_same_rowid(first.task_id))
    assert storage.broker.enqueue(first, T0) is True
    assert storage.broker.enqueue(second, T0) is True
    assert _rows(storage) == [(first.task_id, 1), (second.task_id, 0)]
    assert _indexed(storage) == [second.task_id]
    for task in (first, second):
        assert storage.broker.get_task_row(task.task_id) is not None
        assert storage.results.exists(task.task_id)
    claimed = storage.claim("w", None, 5, T0, 60)
    assert [c.task_id for c in claimed] == [first.task_id, second.task_id]


def test_a_taken_rowid_with_a_unique_key_stores_elsewhere(storage: Storage) -> None:
    first = new_task(task_id=new_id())
    second = new_task(task_id=_same_rowid(first.task_id), unique_key="k")
    storage.broker.enqueue(first, T0)
    assert storage.broker.enqueue(second, T0) is True
    assert _rows(storage) == [(first.task_id, 1), (second.task_id, 0)]
    # The key still counts, whichever way a row was stored.
    again = new_task(task_id=new_id(), unique_key="k")
    assert storage.broker.enqueue(again, T0) is False
    assert storage.broker.task_id_for_unique_key("k") == second.task_id


def test_a_new_id_with_a_unique_key_is_stored_at_its_rowid(storage: Storage) -> None:
    task = new_task(task_id=new_id(), unique_key="k")
    assert storage.broker.enqueue(task, T0) is True
    assert _rows(storage) == [(task.task_id, 1)]
    assert (
        storage.broker.enqueue(new_task(task_id=new_id(), unique_key="k"), T0) is False
    )


@pytest.mark.parametrize("made", [new_id, lambda: "custom-id"])
def test_an_id_already_queued_is_refused_whichever_way_it_was_stored(
    storage: Storage, made: Any
) -> None:
    task = new_task(task_id=made())
    storage.broker.enqueue(task, T0)
    for unique_key in (None, "k"):
        with pytest.raises(StorageError, match="UNIQUE constraint failed"):
            storage.broker.enqueue(
                new_task(task_id=task.task_id, unique_key=unique_key), T0
            )
    assert _rows(storage) == [(task.task_id, int(made is new_id))]


@pytest.mark.parametrize("ms", [-1_500, -3_600_000])
def test_an_id_made_earlier_goes_to_the_back_of_the_queue(
    storage: Storage, ms: int
) -> None:
    # A chain's next step, or an id sent again: made over a second ago.
    stale = _shifted_id(ms)
    queued = new_task(task_id=new_id())
    storage.broker.enqueue(queued, T0)
    assert rowid_of(stale) is not None and rowid_of(stale) < rowid_of(queued.task_id)
    storage.broker.enqueue(new_task(task_id=stale), T0)
    assert _rows(storage) == [(queued.task_id, 1), (stale, 0)]


def test_tasks_are_claimed_in_the_order_sent_however_stored(storage: Storage) -> None:
    sent = []
    for n in range(30):
        task_id = new_id() if n % 3 else f"custom-{n}"
        sent.append(task_id)
        storage.broker.enqueue(new_task(task_id=task_id), T0)
    storage.broker.enqueue_many([new_task(task_id=new_id()) for _ in range(3)], T0)
    storage.broker.enqueue(new_task(task_id=new_id()), T0)
    claimed = storage.claim("w", None, 100, T0, 60)
    assert [c.task_id for c in claimed][:30] == sent
    assert len(claimed) == 34


def test_revoke_finds_rows_stored_either_way(storage: Storage) -> None:
    at_rowid = new_task(task_id=new_id())
    elsewhere = new_task(task_id=_same_rowid(at_rowid.task_id))
    running = new_task(task_id=new_id())
    storage.broker.enqueue(running, T0)
    storage.claim("w", None, 1, T0, 60)
    storage.broker.enqueue(at_rowid, T0)
    storage.broker.enqueue(elsewhere, T0)
    outcome = storage.revoke(
        [at_rowid.task_id, elsewhere.task_id, running.task_id], T0, terminate=True
    )
    assert outcome == {
        at_rowid.task_id: "revoked",
        elsewhere.task_id: "revoked",
        running.task_id: "terminating",
    }
    assert _rows(storage) == [(running.task_id, 1)]
    assert storage.broker.mark_revoked_running(running.task_id, "SIGKILL") == "w"


def test_followups_of_a_completed_task_are_stored_at_their_rowids(
    storage: Storage,
) -> None:
    task = new_task(task_id=new_id())
    storage.broker.enqueue(task, T0)
    (claimed,) = storage.claim("w", None, 1, T0, 60)
    follow = [new_task(task_id=new_id()), new_task(task_id="custom-follow")]
    done = Completion(
        task.task_id, claimed=claimed, result=result_row(task.task_id), followups=follow
    )
    assert storage.complete([done], T0) == [True]
    assert _rows(storage) == [(follow[0].task_id, 1), ("custom-follow", 0)]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 FROM liteq_task WHERE {} AND state = 2",
        "DELETE FROM liteq_task WHERE {} AND state IN (0, 1) RETURNING id",
        "UPDATE liteq_task SET revoke = 2 WHERE {} AND state = 2 RETURNING id",
        "SELECT EXISTS(SELECT 1 FROM liteq_task WHERE {})",
    ],
)
def test_finding_a_task_by_id_probes_its_rowid_and_the_index(
    storage: Storage, query: str
) -> None:
    from liteq.storage.broker import BY_TASK_ID, task_key

    conn = storage.db.connection()
    plan = conn.execute(
        "EXPLAIN QUERY PLAN " + query.format(BY_TASK_ID), task_key(new_id())
    ).fetchall()
    details = [r[3] for r in plan]
    assert "MULTI-INDEX OR" in details
    assert any("INTEGER PRIMARY KEY (rowid=?)" in d for d in details)
    assert any("USING INDEX liteq_task_task_id (task_id=?)" in d for d in details)
    assert not any(d.startswith("SCAN liteq_task") for d in details)


def _shifted_id(ms: int) -> str:
    """An id made ``ms`` milliseconds from now (negative: before), as a
    process with that clock, or one sending an id made earlier, has it."""
    value = new_id()
    when = int(value[:8] + value[9:13], 16) + ms
    return f"{when >> 16:08x}-{when & 0xFFFF:04x}{value[13:]}"


@pytest.fixture
def other(storage: Storage) -> Iterator[Storage]:
    """A second Storage on the same file: another process's view of it."""
    store = Storage(storage.path, busy_timeout=0.5)
    yield store
    store.close()


def test_after_a_row_stored_elsewhere_a_process_keeps_its_order(
    storage: Storage, other: Storage
) -> None:
    ahead = new_task(task_id=_shifted_id(500))
    other.broker.enqueue(ahead, T0)  # the highest rowid in the table
    first = new_task(task_id=new_id())
    other.broker.enqueue(new_task(task_id=_same_rowid(first.task_id)), T0)
    storage.broker.enqueue(first, T0)  # its rowid is taken: placed above `ahead`
    second = new_task(task_id=new_id())  # its own rowid is free, but lower
    storage.broker.enqueue(second, T0)
    claimed = [c.task_id for c in storage.claim("w", None, 10, T0, 60)]
    assert claimed.index(first.task_id) < claimed.index(second.task_id)


def test_a_task_sent_after_a_bulk_is_claimed_after_it(
    storage: Storage, other: Storage
) -> None:
    other.broker.enqueue(new_task(task_id=_shifted_id(500)), T0)
    bulk = [new_task() for _ in range(3)]
    storage.broker.enqueue_many(bulk, T0)
    later = new_task(task_id=new_id())
    storage.broker.enqueue(later, T0)
    claimed = [c.task_id for c in storage.claim("w", None, 10, T0, 60)]
    assert claimed[-4:] == [t.task_id for t in bulk] + [later.task_id]


def test_an_id_queued_by_another_process_is_refused_however_stored(
    storage: Storage, other: Storage
) -> None:
    later, earlier = new_id(), new_id()
    storage.broker.enqueue(new_task(task_id=earlier), T0)
    # Below the rowid this process last stored at: stored elsewhere.
    storage.broker.enqueue(new_task(task_id=later), T0)
    assert _rows(storage) == [(earlier, 1), (later, 0)]
    for task_id in (earlier, later):
        with pytest.raises(StorageError, match="already queued"):
            other.broker.enqueue(new_task(task_id=task_id), T0)
    assert len(_rows(storage)) == 2


@pytest.mark.parametrize("first", ["one", "bulk"])
def test_an_id_queued_one_way_is_refused_the_other(
    storage: Storage, first: str
) -> None:
    task_id = new_id()
    one = new_task(task_id=task_id)
    bulk = [new_task(), new_task(task_id=task_id)]
    if first == "one":
        storage.broker.enqueue(one, T0)
        with pytest.raises(StorageError, match="already queued"):
            storage.broker.enqueue_many(bulk, T0)
    else:
        storage.broker.enqueue_many(bulk, T0)
        with pytest.raises(StorageError, match="UNIQUE constraint failed"):
            storage.broker.enqueue(one, T0)
    assert [r[0] for r in _rows(storage)].count(task_id) == 1


def test_a_forked_child_gets_a_lock_of_its_own_for_making_ids() -> None:
    held = messages._last_lock
    with held:  # as another thread of the parent may hold it at the fork
        messages._forget_ids()  # what the after-fork hook runs in the child
        try:
            assert messages._last_lock is not held
            assert rowid_of(new_id()) is not None  # does not wait for `held`
        finally:
            messages._forget_ids()


@pytest.mark.parametrize("value", [None, 42, b"01a2026e-2fc6-761a-888c-3db2f05fa863"])
def test_what_is_not_a_string_encodes_no_rowid(value: Any) -> None:
    assert rowid_of(value) is None
