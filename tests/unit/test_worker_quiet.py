"""A worker that other processes' commits keep waking for nothing stops listening a moment."""

from __future__ import annotations

from typing import Any

import pytest

from liteq import Liteq
from liteq.testing import FakeClock
from liteq.wakeup import QUIET_FOR, QUIET_RESET
from liteq.worker import Worker
from liteq.worker.worker import QUIET_AFTER
from tests.storagecalls import StorageCalls

pytestmark = pytest.mark.timeout(60)


def _woken_for_nothing(worker: Worker, add: Any) -> None:
    """A commit that is not this worker's business (another queue's task) wakes it."""
    add.apply_async((1, 1), queue="other")
    worker.woken_by_commit = True
    worker.step()


def test_wake_ups_that_find_nothing_in_a_row_make_the_worker_quiet_for_a_moment(
    app: Liteq,
    worker: Worker,
    add: Any,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker.step()  # the first look: nothing queued
    calls = StorageCalls(app, monkeypatch)
    for _ in range(QUIET_AFTER - 1):
        _woken_for_nothing(worker, add)
        assert worker.quiet_left() == 0.0
    _woken_for_nothing(worker, add)
    assert worker.quiet_left() == pytest.approx(QUIET_FOR)
    assert calls.probes == QUIET_AFTER

    # Its own task, sent meanwhile, waits for the end of the quiet spell,
    # also when something else (a pool process, a timer) runs the loop.
    mine = add.delay(2, 3)
    worker.step()
    assert calls.claims == []
    assert mine.state == "PENDING"

    clock.advance(QUIET_FOR)
    assert worker.quiet_left() == 0.0
    # The run loop then listens again, and looks once for what came.
    worker.woken_by_commit = True
    worker.step()
    assert mine.get(timeout=0) == 5


def test_a_wake_up_that_finds_work_starts_the_count_again(
    app: Liteq, worker: Worker, add: Any, clock: FakeClock
) -> None:
    worker.step()
    for _ in range(QUIET_AFTER - 1):
        _woken_for_nothing(worker, add)
    mine = add.delay(1, 2)
    worker.woken_by_commit = True
    worker.step()
    assert mine.get(timeout=0) == 3
    for _ in range(QUIET_AFTER - 1):
        _woken_for_nothing(worker, add)
    assert worker.quiet_left() == 0.0


def test_looks_that_no_commit_caused_do_not_count(
    app: Liteq, worker: Worker, add: Any
) -> None:
    # Timers and pool messages run the loop too: only commit wake-ups that
    # found nothing show that commits wake the worker for nothing.
    for _ in range(QUIET_AFTER * 2):
        add.apply_async((1, 1), queue="other")
        worker.step()
    assert worker.quiet_left() == 0.0


def test_empty_wake_ups_far_apart_never_make_the_worker_quiet(
    app: Liteq, worker: Worker, add: Any, clock: FakeClock
) -> None:
    # A foreign commit now and then is no stream: each costs a look, and the
    # worker's own next task is never held back for it.
    worker.step()
    for _ in range(QUIET_AFTER * 2):
        clock.advance(QUIET_RESET * 2)
        _woken_for_nothing(worker, add)
        assert worker.quiet_left() == 0.0
