"""The prefork pool in real processes: a lone task is acked by its pool process."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def _failures() -> Iterator[list[str]]:
    """The ids of the tasks ``task_failure`` is sent for in the block."""
    failures: list[str] = []

    def failed(sender: Any = None, **kwargs: Any) -> None:
        failures.append(kwargs["task_id"])

    signals.task_failure.connect(failed)
    try:
        yield failures
    finally:
        signals.task_failure.disconnect(failed)


def test_a_pool_process_that_exits_after_acking_a_lone_task_leaves_its_success(
    live_app: Liteq, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    with _failures() as failures:
        _run_until(worker, lambda: worker.pool.idle() == 2)
        with caplog.at_level(logging.WARNING, logger="liteq"):
            result = live_app.send_task("tests.apps.ack_then_exit.quiet_exit", (7,))
            _run_until(worker, lambda: worker.processed == 1)
            # The process is gone and replaced; the task is not reported lost.
            _run_until(worker, lambda: worker.pool.idle() == 2)
    assert result.state == states.SUCCESS and result.get(timeout=5) == 7
    assert failures == []
    assert [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
    ] == []


WITNESSED = "tests.apps.tasks.witnessed"


def _seen(directory: Path, task_id: str, hook: str) -> str:
    return (directory / f"{task_id}.{hook}").read_text()


def test_end_hooks_in_pool_processes_see_the_outcome_stored(
    live_app: Liteq, worker: Worker, tmp_path: Path
) -> None:
    # A lone task (acked by its pool process anyway) and tasks claimed
    # together, which the worker would ack in a batch after their hooks ran.
    _run_until(worker, lambda: worker.pool.idle() == 2)
    lone = live_app.send_task(WITNESSED, (str(tmp_path),))
    _run_until(worker, lambda: worker.processed == 1)
    together = [
        live_app.send_task(WITNESSED, (str(tmp_path), i % 2 == 1)) for i in range(6)
    ]
    _run_until(worker, lambda: worker.processed == 7)
    assert lone.get(timeout=5) == "ok"
    assert _seen(tmp_path, lone.id, "on_success") == states.SUCCESS
    assert _seen(tmp_path, lone.id, "after_return") == states.SUCCESS
    for i, result in enumerate(together):
        state = states.FAILURE if i % 2 else states.SUCCESS
        assert result.state == state
        hook = "on_failure" if i % 2 else "on_success"
        assert _seen(tmp_path, result.id, hook) == state
        assert _seen(tmp_path, result.id, "after_return") == state
    assert worker.pool.running() == 0


def test_a_pool_process_that_dies_after_storing_its_task_leaves_its_success(
    live_app: Liteq, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    # Claimed together, so the worker would have acked them in a batch: each
    # is stored before its on_success, which then kills the pool process.
    with _failures() as failures, caplog.at_level(logging.ERROR, logger="liteq"):
        results = [
            live_app.send_task("tests.apps.tasks.exits_in_on_success", (i,))
            for i in range(2)
        ]
        _run_until(worker, lambda: worker.processed == 2)
        _run_until(worker, lambda: worker.pool.idle() == 2)  # replaced
    assert [r.get(timeout=5) for r in results] == [0, 1]
    assert all(r.state == states.SUCCESS for r in results)
    assert failures == []
    # Its process died, but the task was not lost: no "exited while running".
    assert [
        r.getMessage() for r in caplog.records if "while running" in r.getMessage()
    ] == []
