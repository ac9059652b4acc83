"""Shutdown and restart by signal, with real worker processes.

SIGTERM is a warm shutdown (running tasks finish, nothing new starts, exit 0);
SIGHUP restarts the worker in place without losing a task; a second SIGINT
is a cold shutdown.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from liteq import states
from liteq.exceptions import WorkerLostError
from liteq.testing import wait_until
from tests.apps.workerproc import WorkerProcs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[WorkerProcs]:
    with WorkerProcs(tmp_path) as p:
        yield p


def test_sigterm_lets_the_running_task_finish_starts_nothing_new_and_exits_0(
    procs: WorkerProcs,
) -> None:
    worker = procs.start()
    procs.wait_ready(worker)
    long = procs.send("block", str(procs.dir), "long")
    procs.marker("long")
    waiting = procs.send("add", 1, 1)
    os.kill(worker.pid, signal.SIGTERM)
    wait_until(lambda: "Warm shutdown" in procs.log(worker), timeout=10)
    procs.release("long")
    assert procs.wait_exit(worker) == 0
    assert long.state == states.SUCCESS
    row = procs.task_row(waiting.id)
    assert (
        row is not None and row[0] == 1 and row[3] == 0
    )  # still READY, never delivered
    assert procs.producer.storage.workers() == []


def test_sigterm_grace_period_over_kills_the_task_which_follows_the_lost_rule(
    procs: WorkerProcs,
) -> None:
    worker = procs.start(shutdown_grace=0.5)
    procs.wait_ready(worker)
    stuck = procs.send("block", str(procs.dir), "stuck")
    procs.marker("stuck")
    os.kill(worker.pid, signal.SIGTERM)
    assert procs.wait_exit(worker) == 1
    assert stuck.state == states.FAILURE
    assert isinstance(stuck.result, WorkerLostError)


def test_second_sigint_is_a_cold_shutdown_and_acks_late_tasks_go_back(
    procs: WorkerProcs,
) -> None:
    worker = procs.start()
    procs.wait_ready(worker)
    late = procs.send("block_late", str(procs.dir), "late")
    procs.marker("late")
    os.kill(worker.pid, signal.SIGINT)
    wait_until(lambda: "Warm shutdown" in procs.log(worker), timeout=10)
    os.kill(worker.pid, signal.SIGINT)
    assert procs.wait_exit(worker) == 1
    row = procs.task_row(late.id)
    assert row is not None and row[0] == 1  # READY again, for the next worker
    procs.release("late")
    again = procs.start(burst=True)
    assert procs.wait_exit(again) == 0
    assert late.state == states.SUCCESS


def test_sighup_restarts_in_place_without_losing_a_task(procs: WorkerProcs) -> None:
    worker = procs.start()
    procs.wait_ready(worker)
    long = procs.send("block", str(procs.dir), "long")
    child = procs.marker("long")
    os.kill(worker.pid, signal.SIGHUP)
    wait_until(lambda: "Warm restart" in procs.log(worker), timeout=10)
    queued = procs.send("add", 2, 3)
    procs.release("long")
    assert long.get(timeout=30) == child
    assert queued.get(timeout=30) == 5
    assert worker.poll() is None
    assert "Restarting in place" in procs.log(worker)
    assert psutil.Process(worker.pid).children()  # a new pool in the same process
    os.kill(worker.pid, signal.SIGTERM)
    assert procs.wait_exit(worker) == 0
