"""Short tasks in batches with the in-process pools (solo and threads)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.testing import wait_until
from liteq.worker import Worker
from liteq.worker import pool as pools
from liteq.worker.pool import BATCH, FAST_STREAK, ShortTasks
from tests.threads import run_in_thread

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def always_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task counts as short, however slow the machine."""
    monkeypatch.setattr(pools, "FAST_TASK", 60.0)


@pytest.fixture
def batches_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle slots take batches from the first task on."""
    monkeypatch.setattr(pools, "FAST_STREAK", 0)


@pytest.fixture
def never_taken_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting tasks stay in their batch however long the running one takes."""
    monkeypatch.setattr(pools, "STEAL_AFTER", 60.0)


def _ready_rows(app: Liteq) -> list[tuple[Any, ...]]:
    return app.storage.db.execute(
        "SELECT state, deliveries, worker_id FROM liteq_task ORDER BY id"
    )


class Blocker:
    """A task that runs until the test releases it."""

    def __init__(self, app: Liteq) -> None:
        self.started, self.release = threading.Event(), threading.Event()

        @app.task
        def blocker() -> str:
            self.started.set()
            assert self.release.wait(30)
            return "done"

        self.task = blocker
        #: The exit codes of the worker :meth:`running` ran.
        self.codes: list[int] = []

    @contextmanager
    def running(self, app: Liteq, concurrency: int) -> Iterator[Worker]:
        """Run a threads worker until the block ends, once the blocker has started.

        On leaving: the blocker is released, the worker stopped (warm) and joined.
        """
        worker = Worker(
            app, pool="threads", concurrency=concurrency, install_signal_handlers=False
        )
        thread, self.codes = run_in_thread(worker)
        try:
            assert self.started.wait(10)
            yield worker
        finally:
            self.release.set()
            worker.stop()
            thread.join(20)


def test_short_tasks_score_starts_batches_after_a_streak_and_a_slow_task_costs_more() -> (
    None
):
    short = ShortTasks()
    for _ in range(FAST_STREAK - 1):
        short.ran(0.0)
    assert short.per_slot() == 1
    short.ran(0.0)
    assert short.per_slot() == BATCH
    for _ in range(FAST_STREAK * 5):
        short.ran(0.0)
    short.ran(1.0)  # one slow task on a busy machine keeps batching on
    assert short.per_slot() == BATCH
    short.ran(1.0)
    short.ran(1.0)
    assert short.per_slot() == 1


def test_solo_pool_runs_short_tasks_in_batches_one_claim_and_one_ack_each(
    app: Liteq,
    always_short: None,
    never_taken_back: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # never_taken_back: a garbage collection of the whole test process can
    # take longer than STEAL_AFTER, and the batch sizes are what is checked.
    ran: list[int] = []

    @app.task
    def noop(i: int) -> int:
        ran.append(i)
        return i

    n = FAST_STREAK + 2 * BATCH + 5
    results = [noop.delay(i) for i in range(n)]
    worker = Worker(app, pool="solo", hostname="test@localhost")
    claims: list[int] = []
    acks: list[int] = []
    claim = app.storage.complete_and_claim
    complete = app.storage.complete

    def counting_claim(items: Any, now: float, *args: Any) -> Any:
        applied, claimed, revoked = claim(items, now, *args)
        claims.append(len(claimed))
        return applied, claimed, revoked

    def counting_complete(items: Any, now: float) -> Any:
        acks.append(len(items))
        return complete(items, now)

    monkeypatch.setattr(app.storage, "complete_and_claim", counting_claim)
    monkeypatch.setattr(app.storage, "complete", counting_complete)
    steps = 0
    while len(ran) < n:
        worker.step()
        steps += 1
        assert steps <= n
    # One task per round until the streak, then a batch per round.
    assert claims[:FAST_STREAK] == [1] * FAST_STREAK
    assert claims[FAST_STREAK:] == [BATCH, BATCH, 5]
    assert acks[FAST_STREAK:] == [BATCH, BATCH, 5]
    assert ran == list(range(n))
    assert [r.get(timeout=0) for r in results] == list(range(n))
    assert _ready_rows(app) == []


def test_solo_batch_gives_the_rest_back_once_it_has_run_for_steal_after(
    app: Liteq,
    always_short: None,
    batches_at_once: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pools, "STEAL_AFTER", 0.0)
    ran: list[int] = []

    @app.task
    def noop(i: int) -> int:
        ran.append(i)
        return i

    results = [noop.delay(i) for i in range(5)]
    worker = Worker(app, pool="solo", hostname="test@localhost")
    worker.step()
    assert ran == [0]
    # The four others are back in the queue, their delivery not counted.
    assert _ready_rows(app) == [(1, 0, None)] * 4
    for _ in range(10):
        if len(ran) == 5:
            break
        worker.step()
    assert ran == [0, 1, 2, 3, 4]
    assert [r.get(timeout=0) for r in results] == [0, 1, 2, 3, 4]


def test_solo_batch_starts_no_more_tasks_once_the_worker_is_asked_to_stop(
    live_app: Liteq, always_short: None, batches_at_once: None
) -> None:
    holder: dict[str, Worker] = {}
    ran: list[str] = []

    @live_app.task
    def stopper() -> str:
        ran.append("stopper")
        holder["worker"].stop()
        return "acked"

    @live_app.task
    def other() -> str:
        ran.append("other")
        return "ran"

    first = stopper.delay()
    rest = [other.delay() for _ in range(3)]
    worker = holder["worker"] = Worker(
        live_app, pool="solo", install_signal_handlers=False
    )
    assert worker.run() == 0
    assert ran == ["stopper"]
    assert first.get(timeout=0) == "acked"
    assert [r.state for r in rest] == [states.PENDING] * 3
    assert _ready_rows(live_app) == [(1, 0, None)] * 3


def test_threads_pool_gives_tasks_stuck_behind_a_slow_one_to_another_thread(
    live_app: Liteq,
    always_short: None,
    batches_at_once: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pools, "STEAL_AFTER", 0.05)
    slow = Blocker(live_app)
    ran: list[int] = []

    @live_app.task
    def quick(i: int) -> int:
        ran.append(i)
        return i

    first = slow.task.delay()
    results = [quick.delay(i) for i in range(5)]
    with slow.running(live_app, concurrency=2):
        # The tasks handed to the slow task's thread run on the other one
        # while the slow task still runs.
        wait_until(lambda: all(r.state == states.SUCCESS for r in results), timeout=20)
        assert not slow.release.is_set() and not first.ready()
    assert slow.codes == [0]
    assert first.get(timeout=0) == "done"
    assert sorted(ran) == [0, 1, 2, 3, 4]
    assert [r.get(timeout=0) for r in results] == [0, 1, 2, 3, 4]


def test_threads_pool_terminate_drops_a_task_waiting_in_a_batch(
    live_app: Liteq,
    always_short: None,
    batches_at_once: None,
    never_taken_back: None,
) -> None:
    blocker = Blocker(live_app)
    ran: list[str] = []

    @live_app.task
    def victim() -> str:
        ran.append("victim")
        return "ran"

    first = blocker.task.delay()
    second = victim.delay()
    with blocker.running(live_app, concurrency=1):
        live_app.control.revoke(second.id, terminate=True)
        wait_until(lambda: second.state == states.REVOKED, timeout=20)
    assert blocker.codes == [0]
    assert ran == []
    assert first.get(timeout=0) == "done"


def test_threads_pool_warm_stop_gives_back_the_tasks_waiting_in_batches(
    live_app: Liteq,
    always_short: None,
    batches_at_once: None,
    never_taken_back: None,
) -> None:
    blocker = Blocker(live_app)
    ran: list[int] = []

    @live_app.task
    def waiting(i: int) -> int:
        ran.append(i)
        return i

    first = blocker.task.delay()
    rest = [waiting.delay(i) for i in range(3)]
    with blocker.running(live_app, concurrency=1) as worker:
        worker.stop()
        wait_until(lambda: worker.stopping, timeout=10)
    assert blocker.codes == [0]
    assert first.get(timeout=0) == "done"
    assert ran == []
    assert [r.state for r in rest] == [states.PENDING] * 3
    assert _ready_rows(live_app) == [(1, 0, None)] * 3
