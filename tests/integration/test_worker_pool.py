"""The prefork pool in real processes: spawn, limits, terminate, recycling."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import states
from liteq.exceptions import NotRegistered, TaskRevokedError, TimeLimitExceeded
from liteq.testing import wait_until
from tests.apps.workerproc import WorkerProcs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[WorkerProcs]:
    with WorkerProcs(tmp_path) as p:
        yield p


def test_spawned_children_run_the_tasks_and_burst_exits_0(procs: WorkerProcs) -> None:
    results = [procs.send("add", i, i) for i in range(20)]
    pids = [procs.send("whoami") for _ in range(4)]
    worker = procs.start(concurrency=2, burst=True, start_method="spawn")
    assert procs.wait_exit(worker) == 0
    assert [r.get(timeout=1) for r in results] == [2 * i for i in range(20)]
    assert worker.pid not in {r.get(timeout=1) for r in pids}
    assert "succeeded in" in procs.log(worker)


def test_forkserver_children_run_the_tasks(procs: WorkerProcs) -> None:
    results = [procs.send("add", i, 1) for i in range(5)]
    worker = procs.start(concurrency=2, burst=True, start_method="forkserver")
    assert procs.wait_exit(worker) == 0
    assert [r.state for r in results] == [states.SUCCESS] * 5


def test_max_tasks_per_child_recycles_children(procs: WorkerProcs) -> None:
    results = [procs.send("whoami") for _ in range(6)]
    worker = procs.start(concurrency=1, max_tasks_per_child=2, burst=True)
    assert procs.wait_exit(worker) == 0
    pids = [r.get(timeout=1) for r in results]
    assert len(set(pids)) == 3
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[4] == pids[5]


def test_soft_time_limit_raises_inside_the_task_which_cleans_up(
    procs: WorkerProcs,
) -> None:
    result = procs.send("soft_limited", str(procs.dir))
    worker = procs.start(burst=True)
    assert procs.wait_exit(worker) == 0
    assert result.get(timeout=1) == "cleaned up"
    assert (procs.dir / "soft.cleanup").exists()


def test_hard_time_limit_kills_the_child_and_a_new_one_takes_its_place(
    procs: WorkerProcs,
) -> None:
    hard = procs.send("hard_limited")
    after = procs.send("whoami")
    worker = procs.start(burst=True)
    assert procs.wait_exit(worker) == 0
    assert hard.state == states.FAILURE
    assert isinstance(hard.result, TimeLimitExceeded)
    assert after.state == states.SUCCESS
    assert "Hard time limit" in procs.log(worker)


def test_worker_default_time_limit_applies_to_tasks_without_one(
    procs: WorkerProcs,
) -> None:
    slow = procs.send("block", str(procs.dir), "slow", 30.0)
    worker = procs.start(burst=True, time_limit=1.0)
    assert procs.wait_exit(worker) == 0
    assert isinstance(slow.result, TimeLimitExceeded)


def test_revoke_terminate_kills_the_running_task_which_ends_revoked(
    procs: WorkerProcs,
) -> None:
    worker = procs.start()
    procs.wait_ready(worker)
    running = procs.send("block", str(procs.dir), "victim")
    child = procs.marker("victim")
    assert procs.producer.control.revoke(running.id, terminate=True) == {
        running.id: "terminating"
    }
    wait_until(lambda: running.state == states.REVOKED, timeout=10)
    assert isinstance(running.result, TaskRevokedError)
    assert procs.send("whoami").get(timeout=20) != child


def test_task_raising_system_exit_or_keyboard_interrupt_fails_and_worker_goes_on(
    procs: WorkerProcs,
) -> None:
    exits = procs.send("raise_system_exit")
    interrupts = procs.send("raise_keyboard_interrupt")
    crash = procs.send("hard_exit")
    fine = procs.send("add", 1, 2)
    worker = procs.start(burst=True)
    assert procs.wait_exit(worker) == 0
    assert exits.state == interrupts.state == crash.state == states.FAILURE
    assert isinstance(exits.result, SystemExit)
    assert isinstance(interrupts.result, KeyboardInterrupt)
    assert fine.get(timeout=1) == 3
    log = procs.log(worker)
    assert f"while running tests.apps.tasks.hard_exit[{crash.id}]" in log


def test_unimportable_app_stops_the_worker_with_a_clear_error(
    procs: WorkerProcs,
) -> None:
    worker = procs.start(app_path="tests.apps.no_such_module:app", burst=True)
    assert procs.wait_exit(worker) == 1
    log = procs.log(worker)
    assert "could not start" in log and "no_such_module" in log


def test_worker_on_a_bare_database_file_imports_task_modules_by_name(
    procs: WorkerProcs,
) -> None:
    result = procs.send("add", 20, 22)
    worker = procs.start(bare=True, burst=True, concurrency=2)
    assert procs.wait_exit(worker) == 0
    assert result.get(timeout=1) == 42


def test_worker_without_autoimport_fails_unknown_tasks_and_goes_on(
    procs: WorkerProcs,
) -> None:
    unknown = procs.send("add", 1, 1)
    worker = procs.start(bare=True, burst=True, autoimport=False)
    assert procs.wait_exit(worker) == 0
    assert unknown.state == states.FAILURE
    assert isinstance(unknown.result, NotRegistered)


def test_rate_limit_holds_across_two_workers(procs: WorkerProcs) -> None:
    first, second = procs.start(), procs.start()
    procs.wait_ready(first)
    procs.wait_ready(second)
    results = [procs.send("limited", i) for i in range(8)]
    started = sorted(r.get(timeout=30) for r in results)
    # 4/s with a bucket of one token: eight starts need at least 7/4 s.
    assert started[-1] - started[0] >= 7 / 4 - 0.3
    rows = procs.producer.storage.results.get_many([r.id for r in results])
    assert {row.worker.split("@")[0] for row in rows.values() if row.worker} == {
        "w1",
        "w2",
    }


def test_max_memory_per_child_replaces_a_child_over_the_limit(
    procs: WorkerProcs,
) -> None:
    results = [procs.send("whoami") for _ in range(3)]
    worker = procs.start(max_memory_per_child=1, burst=True)
    assert procs.wait_exit(worker) == 0
    assert len({r.get(timeout=1) for r in results}) == 3


def test_a_slow_task_never_holds_up_the_tasks_queued_behind_it(
    procs: WorkerProcs,
) -> None:
    worker = procs.start(concurrency=2)
    procs.wait_ready(worker)
    # Many short tasks first, so that the pool hands tasks over in batches.
    warm = procs.producer.enqueue_many(
        "tests.apps.tasks.noop", ((i,) for i in range(200))
    )
    wait_until(lambda: all(r.state == states.SUCCESS for r in warm), timeout=30)
    with procs.producer.transaction():
        slow = procs.send("block", str(procs.dir), "slow")
        quick = [procs.send("noop", i) for i in range(60)]
    procs.marker("slow")
    # All of them finish while the slow task still runs.
    wait_until(lambda: all(r.state == states.SUCCESS for r in quick), timeout=10)
    assert procs.task_row(slow.id) is not None
    procs.release("slow")
    assert slow.get(timeout=20) > 0


def test_a_message_whose_time_limit_is_no_number_fails_and_its_child_lives_on(
    procs: WorkerProcs,
) -> None:
    broken = procs.send("whoami")
    after = procs.send("whoami")
    db = procs.producer.storage.db
    (message,) = db.execute(
        "SELECT message FROM liteq_task WHERE task_id = ?", (broken.id,)
    )[0]
    assert b'"timelimit"' not in message  # left out at its default
    db.execute(
        "UPDATE liteq_task SET message = ? WHERE task_id = ?",
        (
            message.replace(b'"headers":{', b'"headers":{"timelimit":["soon",null],'),
            broken.id,
        ),
    )
    worker = procs.start(concurrency=1, burst=True)
    assert procs.wait_exit(worker) == 0
    assert broken.state == states.FAILURE
    assert isinstance(broken.result, ValueError)
    assert "soon" in str(broken.result)
    assert after.state == states.SUCCESS
    assert "exited" not in procs.log(worker)
