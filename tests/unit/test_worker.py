"""The worker loop in-process: ``step()`` with the solo pool and a FakeClock."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.exceptions import (
    ConfigurationError,
    StorageError,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from liteq.storage import WorkerRow
from liteq.storage.broker import Claimed
from liteq.testing import FakeClock, drain
from liteq.worker import Worker
from liteq.worker.liveness import HostIdentity, pid_starttime
from liteq.worker.pool import Finished, Interrupted, SoloPool
from liteq.worker.upkeep import RECOVERY_INTERVAL


def _rows(app: Liteq) -> list[tuple[Any, ...]]:
    return app.storage.db.execute(
        "SELECT task_id, state, deliveries, worker_id FROM liteq_task ORDER BY id"
    )


class CountingPool(SoloPool):
    """A solo pool that reports a fixed number of idle slots and keeps what it gets."""

    def __init__(self, app: Liteq, slots: int) -> None:
        super().__init__(app, "test@localhost")
        self.slots = slots
        self.held: list[Claimed] = []

    def idle(self) -> int:
        return self.slots - len(self.held)

    def wanted(self) -> int:
        return self.idle()

    def submit_many(self, claimed: list[Claimed]) -> None:
        self.held.extend(claimed)

    def running(self) -> int:
        return len(self.held)

    def release_all(self) -> None:
        for claimed in self.held:
            self._run(claimed)
        self.held = []


def test_worker_step_runs_a_task_and_stores_its_result(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 2)
    assert worker.step() == 0.0
    assert result.get(timeout=0) == 4
    assert _rows(app) == []


def test_worker_step_claims_only_as_many_tasks_as_idle_slots(app: Liteq) -> None:
    @app.task
    def noop(i: int) -> int:
        return i

    results = [noop.delay(i) for i in range(5)]
    pool = CountingPool(app, 3)
    worker = Worker(app, pool=pool, hostname="test@localhost")
    worker.step()
    assert [c.task_id for c in pool.held] == [r.id for r in results[:3]]
    assert [row[1] for row in _rows(app)] == [2, 2, 2, 1, 1]


def test_worker_step_acks_every_finished_task_in_one_transaction(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    def noop(i: int) -> int:
        return i

    results = [noop.delay(i) for i in range(4)]
    pool = CountingPool(app, 4)
    worker = Worker(app, pool=pool, hostname="test@localhost")
    worker.step()
    pool.release_all()
    calls: list[int] = []
    complete = app.storage.complete
    complete_and_claim = app.storage.complete_and_claim

    def counting(items: Any, now: float) -> list[bool]:
        calls.append(len(items))
        return complete(items, now)

    def counting_round(items: Any, now: float, *claim: Any) -> Any:
        calls.append(len(items))
        return complete_and_claim(items, now, *claim)

    # The worker acks either on its own or with its next claim.
    monkeypatch.setattr(app.storage, "complete", counting)
    monkeypatch.setattr(app.storage, "complete_and_claim", counting_round)
    worker.step()
    assert calls == [4]
    assert [r.get(timeout=0) for r in results] == [0, 1, 2, 3]


def test_worker_step_returns_the_seconds_until_the_next_eta(
    app: Liteq, clock: FakeClock
) -> None:
    @app.task
    def later() -> str:
        return "done"

    result = later.apply_async(countdown=30)
    worker = Worker(app, pool="solo", fallback_poll=100.0, hostname="t@h")
    delay = worker.step()
    assert 29.0 < delay <= 30.0
    clock.advance(delay)
    assert worker.step() == 0.0
    assert result.get(timeout=0) == "done"


def test_worker_step_that_acks_into_new_tasks_asks_to_be_called_again(
    app: Liteq, worker: Worker
) -> None:
    from liteq import chain

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = chain(add.s(1, 1), add.s(2)).apply_async()
    (first,) = worker.claim(1)
    # Finished earlier, acked now (as a prefork worker acks with its next claim).
    worker._pending.append((first, worker.execute(first)))
    worker._more = False
    # Nothing was claimed or collected in this round, but its ack queued the
    # chain's next task: a burst worker must not stop here.
    assert worker.step() == 0.0
    drain(app, worker)
    assert result.get(timeout=0) == 4


def test_worker_step_with_nothing_to_do_returns_the_fallback_poll(
    app: Liteq, worker: Worker
) -> None:
    assert worker.step() == pytest.approx(worker.fallback_poll)


def test_idle_worker_step_reads_the_queue_once_and_writes_nothing(
    app: Liteq, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker.step()  # the first step claims without probing
    probes: list[object] = []
    idle_facts = app.storage.broker.idle_facts

    def counting(queues: object) -> tuple[bool, float | None, float | None]:
        probes.append(queues)
        return idle_facts(queues)  # type: ignore[arg-type]

    monkeypatch.setattr(app.storage.broker, "idle_facts", counting)
    commits = app.storage.db.commits
    assert worker.step() == pytest.approx(worker.fallback_poll)
    assert len(probes) == 1
    assert app.storage.db.commits == commits


def test_idle_worker_sees_a_task_another_connection_commits(
    app: Liteq, worker: Worker, db_path: Path
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    worker.step()
    assert worker.step() == pytest.approx(worker.fallback_poll)  # found idle
    other = Liteq("other", broker=str(db_path), clock=app.clock, set_as_current=False)
    try:
        task_id = other.send_task(add.name, (2, 3)).id
    finally:
        other.close()
    assert worker.step() == 0.0
    assert app.AsyncResult(task_id).get(timeout=0) == 5


def test_worker_runs_a_task_raising_system_exit_to_failure_and_goes_on(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def leave() -> None:
        raise SystemExit(2)

    @app.task
    def interrupt() -> None:
        raise KeyboardInterrupt

    @app.task
    def fine() -> str:
        return "fine"

    failed = [leave.delay(), interrupt.delay()]
    ok = fine.delay()
    drain(app, worker, raise_on_failure=False)
    assert [r.state for r in failed] == [states.FAILURE, states.FAILURE]
    assert isinstance(failed[0].result, SystemExit)
    assert isinstance(failed[1].result, KeyboardInterrupt)
    assert ok.get(timeout=0) == "fine"


def test_worker_logs_received_and_succeeded_lines(
    app: Liteq, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    caplog.set_level(logging.INFO, logger="liteq.worker")
    result = add.delay(2, 2)
    drain(app, worker)
    lines = [r.getMessage() for r in caplog.records if r.name == "liteq.worker"]
    assert f"Task {add.name}[{result.id}] received" in lines
    assert any(
        line.startswith(f"Task {add.name}[{result.id}] succeeded in")
        and line.endswith(": 4")
        for line in lines
    )


def test_worker_discards_a_task_revoked_before_it_was_published(
    app: Liteq, worker: Worker
) -> None:
    ran: list[int] = []

    @app.task
    def work() -> None:
        ran.append(1)

    app.control.revoke("known-id")
    result = work.apply_async(task_id="known-id")
    drain(app, worker)
    assert ran == []
    assert result.state == states.REVOKED


def test_worker_recovers_an_expired_lease_once_the_clock_passes_it(
    app: Liteq, clock: FakeClock
) -> None:
    @app.task(acks_late=True)
    def late() -> str:
        return "again"

    result = late.delay()
    # Another worker claimed the task and vanished (no registration to check).
    app.storage.claim("gone@elsewhere:1:x", ["celery"], 1, clock.time(), 60.0)
    worker = Worker(app, pool="solo", hostname="t@h", fallback_poll=100.0)
    worker.step()
    assert _rows(app)[0][1] == 2  # still leased
    clock.advance(60.0 + RECOVERY_INTERVAL)
    drain(app, worker)
    assert result.get(timeout=0) == "again"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _register(app: Liteq, worker_id: str, pid: int, starttime: int | None) -> None:
    me = HostIdentity.current()
    now = app.clock.time()
    app.storage.register_worker(
        WorkerRow(
            worker_id, "ghost@h", pid, starttime, me.boot_id, ["celery"], 1,
            me.as_info(), now, now,
        )
    )  # fmt: skip


def test_worker_recovers_at_once_the_tasks_of_a_dead_worker_on_this_host(
    app: Liteq, clock: FakeClock
) -> None:
    @app.task
    def early() -> None:
        pass

    @app.task(acks_late=True)
    def late() -> str:
        return "ran again"

    lost, again = early.delay(), late.delay()
    _register(app, "ghost", _dead_pid(), 12345)
    app.storage.claim("ghost", ["celery"], 2, clock.time(), 60.0)
    worker = Worker(app, pool="solo", hostname="t@h")
    drain(app, worker, raise_on_failure=False)
    assert lost.state == states.FAILURE
    assert isinstance(lost.result, WorkerLostError)
    assert again.get(timeout=0) == "ran again"
    assert [w.worker_id for w in app.storage.workers()] == [worker.worker_id]


def test_worker_leaves_the_tasks_of_a_live_worker_alone(
    app: Liteq, clock: FakeClock
) -> None:
    @app.task
    def busy() -> None:
        pass

    result = busy.delay()
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _register(app, "alive", parent.pid, pid_starttime(parent.pid))
        app.storage.claim("alive", ["celery"], 1, clock.time(), 60.0)
        worker = Worker(app, pool="solo", hostname="t@h")
        assert worker.check_liveness() == []
        worker.step()
        assert result.state not in states.READY_STATES
        assert _rows(app)[0][1] == 2
    finally:
        parent.kill()
        parent.wait()


def test_worker_survives_a_locked_database_and_drains_once_it_is_free(
    db_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = Liteq("locked", broker=str(db_path), clock=clock, database_busy_timeout=0.05)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    results = [add.delay(i, i) for i in range(3)]
    worker = Worker(app, pool="solo", hostname="t@h")
    holder = sqlite3.connect(str(db_path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        delay = worker.step()
        assert delay > 0
        assert worker.step() >= delay  # backing off, not spinning
        assert any("is locked" in r.getMessage() for r in caplog.records)
    finally:
        holder.execute("COMMIT")
        holder.close()
    drain(app, worker)
    assert [r.get(timeout=0) for r in results] == [0, 2, 4]
    app.close()


def _claim_one(app: Liteq, name: str, **options: Any) -> Claimed:
    app.send_task(name, **options)
    (claimed,) = app.storage.claim("w", ["celery"], 1, app.clock.time(), 60.0)
    return claimed


@pytest.mark.parametrize(
    ("reason", "acks_late", "state", "error"),
    [
        ("worker_lost", False, states.FAILURE, WorkerLostError),
        ("time_limit", True, states.FAILURE, TimeLimitExceeded),
        ("terminated", True, states.REVOKED, TaskRevokedError),
    ],
)
def test_worker_ends_an_interrupted_task_by_the_worker_lost_rule(
    app: Liteq, reason: str, acks_late: bool, state: str, error: type
) -> None:
    @app.task(acks_late=acks_late)
    def victim() -> None:
        pass

    result = victim.delay()
    (claimed,) = app.storage.claim("w", ["celery"], 1, app.clock.time(), 60.0)
    worker = Worker(app, pool="solo", hostname="t@h")
    worker._finish(Finished(interrupted=[Interrupted(claimed, reason, "signal 9", 9)]))
    assert result.state == state
    assert isinstance(result.result, error)
    assert _rows(app) == []


def test_worker_requeues_an_acks_late_task_whose_pool_process_died(
    app: Liteq, clock: FakeClock
) -> None:
    app.conf.task_max_deliveries = 2

    @app.task(acks_late=True)
    def victim() -> None:
        pass

    result = victim.delay()
    worker = Worker(app, pool="solo", hostname="t@h")
    for _ in range(2):
        (claimed,) = app.storage.claim("w", ["celery"], 1, clock.time(), 60.0)
        worker._finish(Finished(interrupted=[Interrupted(claimed, "worker_lost", "x")]))
        if claimed.deliveries < 2:
            assert _rows(app)[0][1] == 1  # READY again
    assert result.state == states.FAILURE  # the delivery cap ends it
    assert "delivered 2 times" in str(result.result)


def test_worker_gives_back_tasks_a_pool_never_started(app: Liteq) -> None:
    claimed = _claim_one(app, "tests.nothing")
    worker = Worker(app, pool="solo", hostname="t@h")
    worker._finish(Finished(unstarted=[claimed]))
    assert _rows(app) == [(claimed.task_id, 1, 0, None)]


def test_worker_rejects_an_unknown_pool() -> None:
    app = Liteq("x", broker="unused.db", set_as_current=False)
    with pytest.raises(ConfigurationError, match="unknown pool"):
        Worker(app, pool="gevent")


def test_worker_defaults_come_from_the_settings(app: Liteq) -> None:
    app.conf.update(
        worker_concurrency=3,
        worker_pool="threads",
        task_time_limit=9,
        worker_fallback_poll=2.5,
        worker_max_tasks_per_child=7,
    )
    worker = Worker(app, hostname="n@%h")
    assert (worker.concurrency, worker.pool_kind) == (3, "threads")
    assert (worker.limits.hard, worker.fallback_poll) == (9, 2.5)
    assert worker.max_tasks_per_child == 7
    assert "%h" not in worker.hostname and worker.hostname.startswith("n@")
    assert Worker(app, pool="solo", concurrency=8).concurrency == 1


def test_worker_banner_lists_database_queues_concurrency_pool_and_tasks(
    app: Liteq,
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    worker = Worker(
        app, pool="threads", concurrency=4, queues=["a", "b"], hostname="n@h"
    )
    text = worker.banner()
    assert app.storage.path in text
    assert "a, b" in text
    assert "4 (threads)" in text
    assert f". {add.name}" in text


def test_worker_keeps_outcomes_it_could_not_ack_and_acks_them_later(
    app: Liteq, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(1, 2)
    complete = app.storage.complete
    complete_and_claim = app.storage.complete_and_claim
    failures = [StorageError("database 'x': disk or database full")]

    def full_once(items: Any, now: float) -> list[bool]:
        if failures:
            raise failures.pop()
        return complete(items, now)

    def full_once_round(items: Any, now: float, *claim: Any) -> Any:
        if failures and items:
            raise failures.pop()
        return complete_and_claim(items, now, *claim)

    # The worker acks either on its own or with its next claim.
    monkeypatch.setattr(app.storage, "complete", full_once)
    monkeypatch.setattr(app.storage, "complete_and_claim", full_once_round)
    assert worker.step() > 0  # backing off
    assert result.state not in states.READY_STATES
    drain(app, worker)
    assert result.get(timeout=0) == 3


def test_worker_does_maintenance_only_while_holding_the_lease(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[float] = []
    monkeypatch.setattr(app.storage, "maintain", lambda now: runs.append(now) or 0)
    first = Worker(app, pool="solo", hostname="a@h")
    second = Worker(app, pool="solo", hostname="b@h")
    first.step()
    second.step()
    assert len(runs) == 1


def test_worker_refuses_the_fork_start_method(app: Liteq) -> None:
    with pytest.raises(ConfigurationError, match="forkserver"):
        Worker(app, start_method="fork")


class BrokenRepr:
    """A return value whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_worker_logs_outcomes_with_broken_or_huge_reprs_and_goes_on(
    app: Liteq, worker: Worker, caplog: pytest.LogCaptureFixture
) -> None:
    app.conf.update(accept_content=["json", "pickle"], result_accept_content=["pickle"])

    @app.task(serializer="pickle")
    def odd() -> BrokenRepr:
        return BrokenRepr()

    @app.task
    def huge() -> str:
        return "x" * 100_000

    caplog.set_level(logging.INFO, logger="liteq.worker")
    results = [odd.delay(), huge.delay()]
    drain(app, worker)
    assert [r.state for r in results] == [states.SUCCESS, states.SUCCESS]
    lines = [r.getMessage() for r in caplog.records if "succeeded" in r.getMessage()]
    assert len(lines) == 1 and len(lines[0]) <= 1024
    assert any("in repr" in r.getMessage() for r in caplog.records)


class _NamedQueue:
    """Stands in for ``kombu.Queue``: only the name matters here."""

    def __init__(self, name: str, routing_key: str | None = None) -> None:
        self.name = name
        self.routing_key = routing_key


@pytest.mark.parametrize(
    "declared",
    [
        ["default", "videos"],
        (_NamedQueue("default"), _NamedQueue("videos", routing_key="media.video")),
        {"default": {"exchange": "default"}, "videos": {"exchange": "media"}},
        [{"name": "default"}, {"name": "videos"}],
    ],
)
def test_worker_without_queues_consumes_every_queue_of_task_queues(
    app: Liteq, declared: Any
) -> None:
    app.conf.task_queues = declared
    app.conf.task_default_queue = "default"

    @app.task
    def plain() -> str:
        return "plain"

    @app.task
    def encode() -> str:
        return "encoded"

    app.conf.task_routes = {encode.name: {"queue": "videos"}}
    results = [plain.delay(), encode.delay(), encode.apply_async(queue="other")]
    worker = Worker(app, pool="solo", hostname="t@h")
    assert worker.queues == ["default", "videos"]
    drain(app, worker)
    assert [r.state for r in results] == [
        states.SUCCESS,
        states.SUCCESS,
        states.PENDING,
    ]


def test_worker_queues_given_win_over_task_queues(app: Liteq) -> None:
    app.conf.task_queues = ["default", "videos"]
    worker = Worker(app, queues="videos", pool="solo", hostname="t@h")
    assert worker.queues == ["videos"]


def test_worker_refuses_a_task_queues_entry_without_a_name(app: Liteq) -> None:
    app.conf.task_queues = [object()]
    with pytest.raises(ConfigurationError, match="task_queues"):
        Worker(app, pool="solo", hostname="t@h")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_worker_stops_when_its_database_file_is_deleted_or_replaced(
    app: Liteq, worker: Worker, clock: FakeClock, db_path: Path, how: str, caplog: Any
) -> None:
    from liteq.worker.upkeep import FILE_CHECK_INTERVAL

    worker.step()
    assert not worker.cold_requested
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    if how == "replaced":
        other = Liteq("other", broker=str(db_path), set_as_current=False)
        other.send_task("tests.anything")  # a new file at the same path
        other.close()
    clock.advance(FILE_CHECK_INTERVAL)
    with caplog.at_level(logging.CRITICAL, logger="liteq.worker"):
        worker.step()
    assert worker.cold_requested
    assert f"was {how} while the worker ran" in caplog.text
