"""Claims spaced out while the worker keeps up with a stream of short tasks."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from liteq import Liteq
from liteq.exceptions import ConfigurationError
from liteq.testing import FakeClock, wait_until
from liteq.worker import Worker
from liteq.worker.pacing import ClaimPacer
from liteq.worker.wakeups import Wakeups
from tests.storagecalls import StorageCalls

pytestmark = pytest.mark.timeout(60)

LINGER = 0.002


# -- the pacer alone -----------------------------------------------------------------
def test_a_claim_that_emptied_the_queue_of_several_tasks_starts_a_pause() -> None:
    pacer = ClaimPacer(LINGER)
    pacer.claimed(5, 64, now=10.0)
    assert pacer.paced
    assert pacer.wait(10.0) == pytest.approx(LINGER)
    assert pacer.wait(10.0005) == pytest.approx(0.0015)
    assert pacer.wait(10.002) == 0.0
    # Still paced until the next claim: that claim needs no probe.
    assert pacer.paced
    pacer.claimed(0, 64, now=10.003)
    assert not pacer.paced and pacer.wait(10.003) == 0.0


@pytest.mark.parametrize(
    ("got", "asked"),
    [(0, 64), (1, 64), (64, 64), (1, 1)],
    ids=["none", "one task", "a full claim", "one of one"],
)
def test_claims_that_show_no_stream_start_no_pause(got: int, asked: int) -> None:
    pacer = ClaimPacer(LINGER)
    pacer.claimed(got, asked, now=10.0)
    assert not pacer.paced
    assert pacer.wait(10.0) == 0.0


def test_a_pause_ends_with_the_next_claim_whatever_it_found() -> None:
    pacer = ClaimPacer(LINGER)
    pacer.claimed(3, 64, now=1.0)
    pacer.claimed(64, 64, now=1.01)
    assert not pacer.paced


def test_a_linger_of_zero_never_pauses() -> None:
    pacer = ClaimPacer(0.0)
    pacer.claimed(5, 64, now=10.0)
    assert not pacer.paced and pacer.wait(10.0) == 0.0


# -- in the worker ---------------------------------------------------------------------
@pytest.fixture
def paced(request: pytest.FixtureRequest) -> None:
    """Workers made from the ``app``/``live_app`` fixtures pace their claims."""
    for name in ("app", "live_app"):
        if name in request.fixturenames:
            request.getfixturevalue(name).conf.worker_claim_linger = LINGER


def _batches_of(worker: Worker, size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each idle slot of ``worker``'s pool asks for ``size`` tasks at a time."""
    pool = worker.pool
    monkeypatch.setattr(pool, "wanted", lambda: pool.idle() * size)


def test_the_worker_holds_its_next_claim_for_the_linger_after_a_stream_claim(
    paced: None,
    app: Liteq,
    worker: Worker,
    add: Any,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _batches_of(worker, 10, monkeypatch)
    calls = StorageCalls(app, monkeypatch)
    first = [add.delay(i, i) for i in range(3)]
    assert worker.step() == 0.0
    assert calls.claims == [(0, 3)]
    assert [r.get(timeout=0) for r in first] == [0, 2, 4]

    calls.reset()
    then = [add.delay(i, 1) for i in range(2)]
    assert worker.step() == pytest.approx(LINGER)
    assert worker.holding
    clock.advance(LINGER / 2)
    assert worker.step() == pytest.approx(LINGER / 2)
    assert (calls.probes, calls.claims, calls.acks) == (0, [], 0)
    assert [r.state for r in then] == ["PENDING", "PENDING"]

    clock.advance(LINGER / 2)
    assert worker.step() == 0.0  # the two tasks: a pause again
    assert not worker.holding
    # Once the pause is over, tasks are likely ready: no probe first.
    assert (calls.probes, calls.claims) == (0, [(0, 2)])
    assert [r.get(timeout=0) for r in then] == [1, 2]


def test_tasks_sent_one_at_a_time_are_claimed_at_once(
    paced: None, app: Liteq, worker: Worker, add: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _batches_of(worker, 10, monkeypatch)
    calls = StorageCalls(app, monkeypatch)
    for i in range(3):
        result = add.delay(i, i)
        assert worker.step() == 0.0
        assert not worker.holding
        assert result.get(timeout=0) == 2 * i
    assert [c for _, c in calls.claims] == [1, 1, 1]


def test_a_deep_queue_is_claimed_in_full_batches_without_pause(
    paced: None, app: Liteq, worker: Worker, add: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _batches_of(worker, 4, monkeypatch)
    calls = StorageCalls(app, monkeypatch)
    results = [add.delay(i, 0) for i in range(8)]
    assert worker.step() == 0.0
    assert worker.step() == 0.0
    assert [c for _, c in calls.claims] == [4, 4]
    assert [r.get(timeout=0) for r in results] == list(range(8))


def test_by_default_the_worker_claims_as_soon_as_a_slot_is_free(
    app: Liteq, add: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = Worker(app, hostname="test@localhost", pool="solo")
    assert worker.pacer.linger == 0.0
    _batches_of(worker, 10, monkeypatch)
    [add.delay(i, i) for i in range(3)]
    worker.step()
    later = add.delay(5, 5)
    worker.step()
    assert not worker.holding
    assert later.get(timeout=0) == 10


def test_the_linger_can_be_given_to_the_worker_and_is_refused_outside_0_to_1_s(
    app: Liteq,
) -> None:
    assert Worker(app, pool="solo", claim_linger=0.005).pacer.linger == 0.005
    for wrong in (-1, 1.5):
        with pytest.raises(ConfigurationError, match="worker_claim_linger"):
            Worker(app, pool="solo", claim_linger=wrong)


def test_finished_tasks_are_acked_by_the_claim_that_ends_the_pause(
    app: Liteq, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, paced: None
) -> None:
    gate = threading.Event()

    @app.task
    def gated(i: int) -> int:
        assert gate.wait(30)
        return i

    worker = Worker(app, hostname="test@localhost", pool="threads", concurrency=1)
    _batches_of(worker, 10, monkeypatch)
    calls = StorageCalls(app, monkeypatch)
    results = [gated.delay(i) for i in range(3)]
    try:
        assert worker.step() == 0.0  # claims 3, handed to the pool's thread
        gate.set()
        # The worker hears of the finished batch while the pause holds.
        wait_until(lambda: worker.step() > 0 and worker.pool.running() == 0)
        assert worker.holding
        assert calls.acks == 0
        assert [r.state for r in results] == ["RECEIVED"] * 3

        clock.advance(LINGER)
        worker.step()
        assert calls.claims[-1] == (3, 0)
        assert calls.acks == 0
        assert [r.get(timeout=0) for r in results] == [0, 1, 2]
    finally:
        gate.set()
        worker.pool.stop()
        worker.pool.join(10)


def test_a_burst_worker_does_not_exit_while_a_pause_holds_ready_tasks(
    live_app: Liteq, monkeypatch: pytest.MonkeyPatch, paced: None
) -> None:
    @live_app.task
    def spawner(i: int) -> int:
        child.delay(i)  # each queues one more task while the worker runs
        return i

    @live_app.task
    def child(i: int) -> int:
        return i

    spawned = [spawner.delay(i) for i in range(3)]
    # Long enough that the pause is still on after the spawners ran.
    worker = Worker(
        live_app, pool="solo", install_signal_handlers=False, claim_linger=0.25
    )
    _batches_of(worker, 10, monkeypatch)
    waits: list[tuple[bool, bool]] = []  # (holding, watching the database)
    wait = Wakeups.wait

    def recording_wait(
        self: Wakeups, timeout: float, pool_fds: Any, database: bool
    ) -> str:
        waits.append((worker.holding, database))
        return wait(self, timeout, pool_fds, database)

    monkeypatch.setattr(Wakeups, "wait", recording_wait)
    assert worker.run(burst=True) == 0
    assert [r.get(timeout=0) for r in spawned] == [0, 1, 2]
    rows = live_app.storage.db.execute("SELECT count(*) FROM liteq_task")
    assert rows == [(0,)]  # the three children ran too
    # While held, commits (the producer's) do not wake the loop.
    assert (True, False) in waits and (True, True) not in waits
