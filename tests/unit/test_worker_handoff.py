"""Batch files: which tasks of a dead worker's batches never started, and their recovery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.exceptions import WorkerLostError
from liteq.storage.broker import Claimed
from liteq.testing import drain
from liteq.worker import Worker, handoff
from liteq.worker.handoff import Handoffs, StartMarks, handoff_dir, unstarted

DEAD = "w1@host:4242:cafe"


@pytest.fixture
def tasks(app: Liteq) -> list[Any]:
    @app.task
    def quick(i: int) -> int:
        return i

    return [quick.delay(i) for i in range(4)]


def _claim(app: Liteq, worker_id: str = DEAD) -> list[Claimed]:
    return app.storage.claim(worker_id, ["celery"], 10, app.clock.time(), 60.0)


def _recorded(app: Liteq, started: int = 0) -> list[Claimed]:
    """Claim the queued tasks as the dead worker, record them as one batch."""
    claimed = _claim(app)
    handoffs = Handoffs(handoff_dir(app.storage.db.path), DEAD)
    assert handoffs.hand(0, claimed)
    assert not started or handoffs.started(0, started)
    handoffs.close(remove=False)  # its process is gone
    return claimed


def _peek(directory: str, worker_id: str) -> list[tuple[int, list[int]]]:
    """What :func:`unstarted` would say, read while the files are still in use."""
    found = []
    for path in sorted(
        Path(directory).glob(Path(handoff._prefix(directory, worker_id)).name + ".*")
    ):
        batch = handoff._not_started(path.read_bytes())
        if batch is not None:
            found.append(batch)
    return found


def _rows(app: Liteq) -> list[tuple[Any, ...]]:
    return app.storage.db.execute(
        "SELECT task_id, state, deliveries, worker_id FROM liteq_task ORDER BY id"
    )


def test_unstarted_are_the_tasks_of_the_batch_after_those_marked_started(
    app: Liteq, tasks: list[Any], tmp_path: Path
) -> None:
    claimed = _claim(app)
    directory = str(tmp_path / "batches")
    handoffs = Handoffs(directory, DEAD)
    token = claimed[0].claim_token
    ids = [c.id for c in claimed]
    assert handoffs.hand(0, claimed)
    assert _peek(directory, DEAD) == [(token, ids)]
    marks = StartMarks(handoffs.path(0))  # as a pool process marks them
    marks.open()
    assert marks.started(1) and marks.started(2)
    assert _peek(directory, DEAD) == [(token, ids[2:])]
    # While a process that may still mark holds the file, a recovery does
    # not read it: the batch counts as started.
    assert unstarted(directory, DEAD) == []
    handoffs.close(remove=False)
    assert unstarted(directory, DEAD) == []  # the pool process still lives
    marks.close()
    assert unstarted(directory, DEAD) == [(token, ids[2:])]
    # A later, shorter batch in the same file replaces it entirely.
    assert handoffs.hand(0, claimed[3:])
    assert _peek(directory, DEAD) == [(token, ids[3:])]
    assert handoffs.started(0, 1)
    assert _peek(directory, DEAD) == []
    assert _peek(directory, "another worker") == []
    handoffs.close()
    assert list(Path(directory).iterdir()) == []


def test_recovery_requeues_what_a_dead_worker_never_started_and_fails_the_rest(
    app: Liteq, tasks: list[Any]
) -> None:
    _recorded(app, started=1)
    Worker(app, pool="solo", hostname="t@h").upkeep.recover([DEAD], [DEAD])
    # The started one ran at most once: WorkerLostError. The others go back
    # to the queue, their delivery not counted, and the files are gone.
    assert tasks[0].state == states.FAILURE
    assert isinstance(tasks[0].result, WorkerLostError)
    assert _rows(app) == [(t.id, 1, 0, None) for t in tasks[1:]]
    assert unstarted(handoff_dir(app.storage.db.path), DEAD) == []


def test_a_batch_file_of_another_claim_changes_nothing(
    app: Liteq, tasks: list[Any]
) -> None:
    _recorded(app)
    # As if the rows had been given back and claimed again by the same
    # worker: a new claim token, which the file does not name.
    app.storage.db.execute(
        "UPDATE liteq_task SET claim_token = claim_token + 1 WHERE worker_id = ?",
        (DEAD,),
    )
    Worker(app, pool="solo", hostname="t@h").upkeep.recover([DEAD], [DEAD])
    assert [t.state for t in tasks] == [states.FAILURE] * 4
    assert _rows(app) == []


def test_batch_files_are_read_only_for_workers_named_as_gone_since_boot(
    app: Liteq, tasks: list[Any]
) -> None:
    _recorded(app)
    Worker(app, pool="solo", hostname="t@h").upkeep.recover([DEAD])
    assert [t.state for t in tasks] == [states.FAILURE] * 4
    assert unstarted(handoff_dir(app.storage.db.path), DEAD) == []  # removed


def test_solo_pool_records_its_batches_and_marks_each_task_as_it_starts(
    app: Liteq, tasks: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from liteq.worker import pool as pools

    monkeypatch.setattr(pools, "FAST_STREAK", 0)
    monkeypatch.setattr(pools, "FAST_TASK", 60.0)
    worker = Worker(app, pool="solo", hostname="t@h")
    seen: list[list[tuple[int, list[int]]]] = []
    directory = handoff_dir(app.storage.db.path)
    run = pools.run_task

    def watching(app_: Liteq, claimed: Claimed, *args: Any) -> Any:
        seen.append([(n, list(ids)) for n, ids in _peek(directory, worker.worker_id)])
        return run(app_, claimed, *args)

    monkeypatch.setattr(pools, "run_task", watching)
    worker.step()
    assert [t.get(timeout=0) for t in tasks] == [0, 1, 2, 3]
    # While task k ran, the tasks after it were recorded as not started.
    assert [[len(ids) for _, ids in batch] for batch in seen] == [[3], [2], [1], []]


def test_a_task_dropped_from_its_batch_does_not_shift_the_marks(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liteq.worker import pool as pools

    monkeypatch.setattr(pools, "FAST_STREAK", 0)
    monkeypatch.setattr(pools, "FAST_TASK", 60.0)
    worker = Worker(app, pool="solo", hostname="t@h")
    holder: dict[str, str] = {}

    @app.task
    def first() -> str:
        assert worker.pool.terminate(holder["victim"], 15)  # still waiting: dropped
        return "first"

    @app.task
    def quick(i: int) -> int:
        return i

    results = [first.delay(), quick.delay(1), quick.delay(2), quick.delay(3)]
    holder["victim"] = results[1].id
    directory = handoff_dir(app.storage.db.path)
    seen: list[int] = []
    run = pools.run_task

    def watching(*args: Any) -> Any:
        seen.append(sum(len(ids) for _, ids in _peek(directory, worker.worker_id)))
        return run(*args)

    monkeypatch.setattr(pools, "run_task", watching)
    worker.step()
    worker.step()
    assert [r.state for r in results] == [
        states.SUCCESS,
        states.REVOKED,
        states.SUCCESS,
        states.SUCCESS,
    ]
    # While the third task ran, only the fourth was still not started.
    assert seen == [3, 1, 0]


def test_a_mark_that_cannot_be_written_removes_the_file_or_stops_the_batch(
    app: Liteq, tasks: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    claimed = _claim(app)
    directory = str(tmp_path / "batches")
    handoffs = Handoffs(directory, DEAD)
    assert handoffs.hand(0, claimed) and handoffs.hand(1, claimed)

    def broken_disk(*args: Any) -> int:
        raise OSError(5, "Input/output error")

    marks = StartMarks(handoffs.path(0))
    marks.open()
    monkeypatch.setattr(handoff.os, "pwrite", broken_disk)
    # The file could not say the task started: it is removed instead, and a
    # batch without a file counts as started at recovery. The task may run.
    assert marks.started(1)
    assert not Path(handoffs.path(0)).exists()
    # If the file cannot be removed either, the task must not start.
    monkeypatch.setattr(handoff.os, "unlink", broken_disk)
    assert not handoffs.started(1, 1)
    monkeypatch.setattr(handoff.os, "unlink", os.unlink)
    marks.close()
    handoffs.close(remove=False)
    assert unstarted(directory, DEAD) == [
        (claimed[0].claim_token, [c.id for c in claimed])
    ]


def test_a_claim_is_on_record_as_not_started_until_it_is_handed_over(
    app: Liteq, tasks: list[Any]
) -> None:
    from liteq import signals

    worker = Worker(app, pool="solo", hostname="t@h")
    directory = handoff_dir(app.storage.db.path)
    seen: list[list[tuple[int, list[int]]]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(_peek(directory, worker.worker_id))

    signals.task_received.connect(receiver)
    try:
        drain(app, worker)
    finally:
        signals.task_received.disconnect(receiver)
    # While the receivers ran, every task of the claim was on record as not
    # started: a worker killed then would have them put back in the queue.
    assert seen and all(batch and all(ids for _, ids in batch) for batch in seen)
    assert [t.get(timeout=0) for t in tasks] == [0, 1, 2, 3]
    assert _peek(directory, worker.worker_id) == []


def test_a_worker_killed_before_handing_its_claim_over_loses_none_of_it(
    app: Liteq, tasks: list[Any]
) -> None:
    claimed = _claim(app)
    handoffs = Handoffs(handoff_dir(app.storage.db.path), DEAD)
    assert handoffs.hand(handoff.CLAIM_SLOT, claimed)
    handoffs.close(remove=False)  # killed before the hand-over
    Worker(app, pool="solo", hostname="t@h").upkeep.recover([DEAD], [DEAD])
    # None started: all READY again, their delivery not counted.
    assert _rows(app) == [(t.id, 1, 0, None) for t in tasks]
