"""Killing workers and pool processes with SIGKILL loses nothing.

A task whose worker dies ends visibly: ``acks_late`` tasks run again and
succeed, the others end FAILURE(WorkerLostError). On one host a live worker
notices the dead pid and recovers its tasks at once, not after the lease.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from liteq import states
from liteq.exceptions import WorkerLostError
from tests.apps.workerproc import WorkerProcs, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[WorkerProcs]:
    with WorkerProcs(tmp_path) as p:
        yield p


def _parent_of(pid: int) -> int:
    return psutil.Process(pid).ppid()


def _finished(procs: WorkerProcs, task_id: str) -> bool:
    return procs.task_row(task_id) is None


@pytest.mark.timeout(90)
def test_worker_killed_mid_task_acks_late_task_runs_again_and_succeeds(
    procs: WorkerProcs,
) -> None:
    first = procs.start()
    second = procs.start()
    procs.wait_ready(first)
    procs.wait_ready(second)
    result = procs.send("once_then_quick", str(procs.dir), "late")
    child = procs.marker("late")
    victim = _parent_of(child)
    assert victim in (first.pid, second.pid)
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    # The other worker on this host sees the pid gone and re-queues the task.
    wait_for(
        lambda: (row := procs.task_row(result.id)) is None or row[0] != 2,
        timeout=2.0,
        message="the task of the killed worker was not recovered within 2 s",
    )
    assert time.monotonic() - killed < 2.0
    assert result.get(timeout=20) == "done"
    assert procs.task_row(result.id) is None


@pytest.mark.timeout(90)
def test_worker_killed_mid_task_default_task_ends_worker_lost(
    procs: WorkerProcs,
) -> None:
    first = procs.start()
    second = procs.start()
    procs.wait_ready(first)
    procs.wait_ready(second)
    result = procs.send("block", str(procs.dir), "early")
    child = procs.marker("early")
    os.kill(_parent_of(child), signal.SIGKILL)
    wait_for(
        lambda: _finished(procs, result.id),
        timeout=2.0,
        message="the task of the killed worker did not end within 2 s",
    )
    assert result.state == states.FAILURE
    assert isinstance(result.result, WorkerLostError)


@pytest.mark.timeout(90)
def test_pool_process_killed_acks_late_task_runs_again_and_child_is_replaced(
    procs: WorkerProcs,
) -> None:
    worker = procs.start()
    procs.wait_ready(worker)
    result = procs.send("once_then_quick", str(procs.dir), "late")
    child = procs.marker("late")
    assert _parent_of(child) == worker.pid
    os.kill(child, signal.SIGKILL)
    assert result.get(timeout=20) == "done"
    pid = procs.send("whoami").get(timeout=20)
    assert pid not in (child, worker.pid)
    assert "re-queued" in procs.log(worker)


@pytest.mark.timeout(90)
def test_pool_process_killed_default_task_ends_worker_lost(procs: WorkerProcs) -> None:
    worker = procs.start()
    procs.wait_ready(worker)
    result = procs.send("block", str(procs.dir), "early")
    child = procs.marker("early")
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: _finished(procs, result.id), timeout=2.0)
    assert result.state == states.FAILURE
    assert isinstance(result.result, WorkerLostError)
    assert "signal 9" in str(result.result)
    assert procs.send("add", 2, 2).get(timeout=20) == 4


@pytest.mark.timeout(120)
def test_worker_kill_loop_loses_no_task(procs: WorkerProcs) -> None:
    """Twenty-odd SIGKILLs of workers and pool processes: every task ends."""
    rng = random.Random(1234)
    workers = [procs.start(concurrency=2), procs.start(concurrency=2)]
    for w in workers:
        procs.wait_ready(w)
    late = [procs.send("echo_late", i) for i in range(150)]
    early = [procs.send("echo", -i) for i in range(150)]
    # Slow tasks keep pool processes busy, so kills land mid-task.
    sleepers = [
        procs.send("block_late" if i % 2 else "block", str(procs.dir), f"s{i}", 0.3)
        for i in range(60)
    ]
    kills = 0
    deadline = time.monotonic() + 60
    while kills < 24 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.1, 0.4))
        alive = [w for w in workers if w.poll() is None]
        if kills % 3 == 2 or not alive:
            victim = rng.choice(workers)
            if victim.poll() is None:
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait(10)
            workers[workers.index(victim)] = procs.start(concurrency=2)
        else:
            children = psutil.Process(rng.choice(alive).pid).children()
            if not children:
                continue
            os.kill(rng.choice(children).pid, signal.SIGKILL)
        kills += 1
    assert kills >= 20
    everything = late + early + sleepers
    wait_for(
        lambda: all(procs.task_row(r.id) is None for r in everything),
        timeout=45,
        message="tasks left in the queue after the kills",
    )
    for r in late:
        assert r.state == states.SUCCESS, (r.id, r.state)
    for r in early + sleepers:
        assert r.state in (states.SUCCESS, states.FAILURE), (r.id, r.state)
        if r.state == states.FAILURE:
            assert isinstance(r.result, WorkerLostError)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("pool", ["prefork", "solo", "threads"])
def test_tasks_waiting_in_a_killed_workers_batch_run_again(
    procs: WorkerProcs, pool: str
) -> None:
    directory = str(procs.dir)
    killer = procs.send("kill_worker", directory)
    behind = [procs.send("record", directory, f"t{i}") for i in range(10)]
    victim = procs.start(pool=pool, batch_at_once=True)
    (procs.dir / "worker.pid").write_text(str(victim.pid))
    assert procs.wait_exit(victim) == -signal.SIGKILL
    # The killer and the tasks behind it were one batch; none of these ran.
    assert not any((procs.dir / f"t{i}.ran").exists() for i in range(10))
    rescuer = procs.start(pool=pool, burst=True)
    assert procs.wait_exit(rescuer) == 0
    # The killer had started: at most once, it ends WorkerLostError. The
    # others had not: they go back to the queue and run, as Celery redelivers
    # the messages a worker prefetched and never started.
    assert killer.state == states.FAILURE
    assert isinstance(killer.result, WorkerLostError)
    assert [r.get(timeout=1) for r in behind] == [f"t{i}" for i in range(10)]
    assert "re-queued" in procs.log(rescuer)
    assert not list(procs.dir.glob("tasks.db-batches/*"))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_worker_killed_before_handing_its_claim_over_loses_none_of_it(
    procs: WorkerProcs, pool: str
) -> None:
    directory = str(procs.dir)
    results = [procs.send("record", directory, f"t{i}") for i in range(6)]
    victim = procs.start(pool=pool, batch_at_once=True, die_on_receipt=True)
    assert procs.wait_exit(victim) == -signal.SIGKILL
    rescuer = procs.start(pool=pool, burst=True)
    assert procs.wait_exit(rescuer) == 0
    # Claimed, then killed by a task_received receiver: none had started, so
    # none ends WorkerLostError; each runs once.
    assert [r.get(timeout=1) for r in results] == [f"t{i}" for i in range(6)]
    assert not list(procs.dir.glob("tasks.db-batches/*"))
