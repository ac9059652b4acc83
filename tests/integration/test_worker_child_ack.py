"""The prefork pool in real processes: a lone task is acked by its pool process."""

from __future__ import annotations

import logging
import multiprocessing.connection
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq, signals, states
from liteq.worker import Worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

ADD = "tests.apps.tasks.add"


@pytest.fixture
def worker(live_app: Liteq) -> Iterator[Worker]:
    w = Worker(
        live_app,
        pool="prefork",
        concurrency=2,
        start_method="spawn",
        hostname="ack@localhost",
        install_signal_handlers=False,
    )
    yield w
    w.pool.stop()
    w.pool.join(10.0)


def _run_until(worker: Worker, done: Any, timeout: float = 30.0) -> None:
    """Step the worker, sleeping on its pool's pipes in between, until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        if worker.step() > 0:
            multiprocessing.connection.wait(worker.pool.wait_objects(), 0.05)


class _ParentAcks:
    """Records the tasks the worker (parent) process acks."""

    def __init__(self, app: Liteq, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ids: list[str] = []
        storage = app.storage
        complete, complete_and_claim = storage.complete, storage.complete_and_claim

        def count(completions: Any) -> None:
            self.ids.extend(c.task_id for c in completions)

        def acking(completions: Any, *args: Any, **kwargs: Any) -> Any:
            count(completions)
            return complete(completions, *args, **kwargs)

        def acking_and_claiming(completions: Any, *args: Any, **kwargs: Any) -> Any:
            count(completions)
            return complete_and_claim(completions, *args, **kwargs)

        monkeypatch.setattr(storage, "complete", acking)
        monkeypatch.setattr(storage, "complete_and_claim", acking_and_claiming)


def test_a_lone_task_is_acked_by_its_pool_process_and_counted_by_the_worker(
    live_app: Liteq, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    acks = _ParentAcks(live_app, monkeypatch)
    _run_until(worker, lambda: worker.pool.idle() == 2)
    result = live_app.send_task(ADD, (2, 3))
    _run_until(worker, lambda: worker.processed == 1)
    assert result.get(timeout=5) == 5
    assert acks.ids == []
    assert worker.pool.running() == 0


def test_tasks_claimed_together_are_acked_by_the_worker(
    live_app: Liteq, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    acks = _ParentAcks(live_app, monkeypatch)
    _run_until(worker, lambda: worker.pool.idle() == 2)
    results = [live_app.send_task(ADD, (i, i)) for i in range(2)]
    _run_until(worker, lambda: worker.processed == 2)
    assert [r.get(timeout=5) for r in results] == [0, 2]
    assert sorted(acks.ids) == sorted(r.id for r in results)


def test_a_chain_of_lone_tasks_runs_to_its_end(
    live_app: Liteq, worker: Worker, db_path: Path
) -> None:
    from liteq import signature

    _run_until(worker, lambda: worker.pool.idle() == 2)
    chained = (
        signature(ADD, (1, 1), app=live_app) | signature(ADD, (10,), app=live_app)
    ).apply_async()
    _run_until(worker, lambda: worker.processed == 2)
    assert chained.get(timeout=5) == 12
    assert chained.parent is not None and chained.parent.state == states.SUCCESS


def test_a_pool_process_that_exits_after_acking_a_lone_task_leaves_its_success(
    live_app: Liteq, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[Any] = []

    def failed(sender: Any = None, **kwargs: Any) -> None:
        failures.append(kwargs.get("task_id"))

    signals.task_failure.connect(failed)
    try:
        _run_until(worker, lambda: worker.pool.idle() == 2)
        with caplog.at_level(logging.WARNING, logger="liteq"):
            result = live_app.send_task("tests.apps.ack_then_exit.quiet_exit", (7,))
            _run_until(worker, lambda: worker.processed == 1)
            # The process is gone and replaced; the task is not reported lost.
            _run_until(worker, lambda: worker.pool.idle() == 2)
    finally:
        signals.task_failure.disconnect(failed)
    assert result.state == states.SUCCESS and result.get(timeout=5) == 7
    assert failures == []
    assert [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ] == []
