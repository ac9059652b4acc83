"""Many processes on one file: every task is claimed exactly once, none is lost.

Three producer processes publish 10,000 tasks each with ``.delay()`` while
three consumer processes claim them in batches and ack them. Each consumer
records the ids it claimed; the union must be every published id, with no id
claimed twice. Processes start with ``spawn`` so nothing is inherited.

Then producers whose ids are made to encode the same rowids: each task is
stored once, found by its id, and claimed in the order its producer sent it.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq
from liteq.storage import Completion

PRODUCERS = 3
CONSUMERS = 3
PER_PRODUCER = 10_000
#: Claims per transaction: what a worker with free slots asks for.
BATCH = 200


def _app(path: str) -> Liteq:
    # A generous busy_timeout: under this much contention a writer may wait.
    app = Liteq("load", broker=path, database_busy_timeout=30.0, set_as_current=False)
    app.task(name="load.noop")(_noop)
    return app


def _noop(n: int) -> None:
    """The task body (never run here; consumers only claim and ack)."""


def _produce(path: str, producer: int, start: Any, out: str | None = None) -> None:
    """Send PER_PRODUCER tasks: with ids ``p<producer>-<n>``, or with ids
    liteq makes, written to ``out``."""
    app = _app(path)
    noop = app.tasks["load.noop"]
    start.wait(60)
    if out is None:
        for n in range(PER_PRODUCER):
            noop.apply_async((n,), task_id=f"p{producer}-{n}")
    else:
        ids = [noop.delay(n).id for n in range(PER_PRODUCER)]
        Path(out).write_text("\n".join(ids))
    app.close()


def _consume(path: str, consumer: int, start: Any, produced: Any, out: str) -> None:
    app = _app(path)
    storage = app.storage
    worker_id = f"consumer-{consumer}"
    claimed_ids: list[str] = []
    start.wait(60)
    while True:
        # Read the flag before claiming: an empty claim after every producer
        # finished means the queue really is empty.
        finished = produced.value == PRODUCERS
        claimed = storage.claim(worker_id, None, BATCH, time.time(), 300)
        if claimed:
            claimed_ids.extend(c.task_id for c in claimed)
            storage.complete(
                [Completion(c.task_id, claimed=c) for c in claimed], time.time()
            )
        elif finished:
            break
        else:
            time.sleep(0.001)
    Path(out).write_text("\n".join(claimed_ids))
    app.close()


def _run_producer(
    path: str, producer: int, start: Any, produced: Any, out: str | None
) -> None:
    _produce(path, producer, start, out)
    with produced.get_lock():
        produced.value += 1


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("ids", ["given", "made"])
def test_concurrent_producers_and_consumers_claim_each_task_exactly_once(
    tmp_path: Path, ids: str
) -> None:
    path = str(tmp_path / "load.db")
    _app(path).storage.db.connection()  # create the schema once
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    produced = context.Value("i", 0)
    outputs = [str(tmp_path / f"consumer-{n}.txt") for n in range(CONSUMERS)]
    sent = [str(tmp_path / f"producer-{n}.txt") for n in range(PRODUCERS)]
    processes = [
        context.Process(
            target=_run_producer,
            args=(path, n, start, produced, sent[n] if ids == "made" else None),
        )
        for n in range(PRODUCERS)
    ] + [
        context.Process(target=_consume, args=(path, n, start, produced, outputs[n]))
        for n in range(CONSUMERS)
    ]
    for process in processes:
        process.start()
    began = time.monotonic()
    start.set()
    for process in processes:
        process.join(200)
    elapsed = time.monotonic() - began
    assert [p.exitcode for p in processes] == [0] * len(processes)

    per_consumer = [Path(out).read_text().split("\n") for out in outputs]
    claimed = [task_id for ids in per_consumer for task_id in ids if task_id]
    if ids == "made":
        expected = {i for out in sent for i in Path(out).read_text().split("\n")}
    else:
        expected = {f"p{p}-{n}" for p in range(PRODUCERS) for n in range(PER_PRODUCER)}
    assert len(expected) == PRODUCERS * PER_PRODUCER
    assert len(claimed) == PRODUCERS * PER_PRODUCER  # no task claimed twice
    assert set(claimed) == expected  # and none lost
    check = _app(path)
    assert check.storage.broker.queue_stats(time.time()) == {}
    check.close()
    # No claimer starved (SQLite's busy handler alone can split 20,000 : 0).
    floor = len(claimed) // (CONSUMERS * 3)
    assert all(len(ids) >= floor for ids in per_consumer), [
        len(ids) for ids in per_consumer
    ]
    print(
        f"{len(claimed)} tasks through {len(processes)} processes in {elapsed:.1f}s, "
        f"split {[len(ids) for ids in per_consumer]}"
    )


def _produce_colliding(path: str, producer: int, start: Any, out: str) -> None:
    from liteq import messages

    # Every producer starts each millisecond's sequence at 5, and only the
    # random ends of the ids differ: producers sending in the same
    # millisecond make ids that encode the same rowids.
    messages._randoms[:] = [5 << 44 | producer << 40 | n for n in range(PER_PRODUCER)]
    _produce(path, producer, start, out)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_producers_whose_ids_encode_the_same_rowids_lose_no_task(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "load.db")
    _app(path).storage.db.connection()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    sent = [str(tmp_path / f"producer-{n}.txt") for n in range(PRODUCERS)]
    processes = [
        context.Process(target=_produce_colliding, args=(path, n, start, sent[n]))
        for n in range(PRODUCERS)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(200)
    assert [p.exitcode for p in processes] == [0] * len(processes)

    per_producer = [Path(out).read_text().split("\n") for out in sent]
    app = _app(path)
    storage = app.storage
    stored = storage.db.execute(
        "SELECT id_derived, COUNT(*) FROM liteq_task GROUP BY 1"
    )
    counts = dict(stored)
    assert sum(counts.values()) == PRODUCERS * PER_PRODUCER
    # Both ways were taken: at the rowid, and elsewhere once it was taken.
    assert counts.get(1, 0) > 0 and counts.get(0, 0) > 0, counts
    for ids in per_producer:
        assert all(storage.broker.get_task_row(i) is not None for i in ids)
    claimed = [c.task_id for c in storage.claim("w", None, 100_000, time.time(), 60)]
    assert len(claimed) == len(set(claimed)) == PRODUCERS * PER_PRODUCER
    for ids in per_producer:
        mine = set(ids)
        assert [i for i in claimed if i in mine] == ids  # each producer's order
    app.close()
