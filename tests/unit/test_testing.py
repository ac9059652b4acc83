"""Test helpers: FakeClock, drain, eager, wait_until."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from liteq import Liteq, Task, states
from liteq.testing import FakeClock, drain, eager, stored_exception


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    start = clock.now()
    assert start == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert clock.now() == start
    clock.advance(1.5)
    clock.advance(timedelta(minutes=1))
    assert clock.now() - start == timedelta(seconds=61.5)
    assert clock.time() == start.timestamp() + 61.5
    mono = clock.monotonic()
    clock.set(start)
    assert clock.now() == start
    assert clock.monotonic() == mono - 61.5


def test_fake_clock_wait_records_and_advances_without_blocking() -> None:
    clock = FakeClock()
    event = threading.Event()
    assert clock.wait(event, 30) is False
    assert clock.waits == [30]
    assert clock.time() == FakeClock().time() + 30
    event.set()
    assert clock.wait(event, 5) is True
    assert clock.waits == [30, 5]


def test_drain_runs_due_tasks_and_the_tasks_they_enqueue(app: Liteq) -> None:
    seen: list[int] = []

    @app.task
    def countdown(n: int) -> None:
        seen.append(n)
        if n:
            countdown.delay(n - 1)

    countdown.delay(3)
    assert drain(app) == 4
    assert seen == [3, 2, 1, 0]
    assert drain(app) == 0


def test_drain_never_advances_the_clock(app: Liteq, clock: FakeClock) -> None:
    @app.task
    def later() -> None:
        pass

    later.apply_async(countdown=10)
    before = clock.now()
    assert drain(app) == 0
    assert clock.now() == before


def test_drain_reraises_the_first_failure_unless_told_not_to(app: Liteq) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("drained")

    boom.delay()
    with pytest.raises(ValueError, match="drained"):
        drain(app)
    result = boom.delay()
    assert drain(app, raise_on_failure=False) == 1
    assert result.state == states.FAILURE


def test_drain_stops_a_task_that_requeues_itself_forever(app: Liteq) -> None:
    @app.task(bind=True, max_retries=None)
    def forever(self: Task) -> None:
        raise self.retry(countdown=0)

    forever.delay()
    with pytest.raises(RuntimeError, match="still busy"):
        drain(app, max_steps=5)


def test_drain_covers_every_queue_in_use_by_default(app: Liteq) -> None:
    @app.task(queue="side")
    def side() -> str:
        return "side"

    result = side.delay()
    drain(app)
    assert result.get(timeout=1) == "side"


def test_eager_context_runs_delay_inline_and_restores_settings(app: Liteq) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with eager(app):
        assert add.delay(1, 2).get() == 3
    assert not app.conf.task_always_eager
    assert add.delay(1, 2).state == states.PENDING


def test_stored_exception_rebuilds_exception_dicts() -> None:
    exc = stored_exception(
        {"exc_type": "ValueError", "exc_message": ["x"], "exc_module": "builtins"}
    )
    assert isinstance(exc, ValueError)
    assert stored_exception(5) == 5
