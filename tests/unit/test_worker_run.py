"""``Worker.run`` in-process with the solo and threads pools (real clock, bounded)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from liteq import Liteq, signals, states
from liteq.exceptions import ConfigurationError, SoftTimeLimitExceeded, TaskRevokedError
from liteq.testing import wait_until
from liteq.worker import Worker
from tests.threads import run_in_thread

pytestmark = pytest.mark.timeout(30)


def test_run_burst_exits_0_once_nothing_is_due(live_app: Liteq) -> None:
    @live_app.task
    def add(x: int, y: int) -> int:
        return x + y

    results = [add.delay(i, 1) for i in range(5)]
    later = add.apply_async((0, 0), countdown=3600)
    worker = Worker(live_app, pool="solo", install_signal_handlers=False)
    assert worker.run(burst=True) == 0
    assert [r.get(timeout=0) for r in results] == [1, 2, 3, 4, 5]
    assert later.state == states.PENDING
    assert live_app.storage.workers() == []


def test_run_burst_exit_logs_at_info_and_never_warns(
    live_app: Liteq, caplog: pytest.LogCaptureFixture
) -> None:
    @live_app.task
    def add(x: int, y: int) -> int:
        return x + y

    add.delay(1, 1)
    worker = Worker(live_app, pool="solo", install_signal_handlers=False)
    with caplog.at_level(logging.DEBUG, logger="liteq"):
        assert worker.run(burst=True) == 0
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert ("liteq.worker", logging.INFO, "Burst: nothing due, exiting") in (
        caplog.record_tuples
    )
    assert (
        "liteq.worker",
        logging.INFO,
        "worker: Warm shutdown (burst)",
    ) in caplog.record_tuples


def test_threads_pool_runs_tasks_at_the_same_time(live_app: Liteq) -> None:
    barrier = threading.Barrier(3, timeout=10)

    @live_app.task
    def meet() -> str:
        barrier.wait()
        return "met"

    results = [meet.delay() for _ in range(3)]
    worker = Worker(
        live_app, pool="threads", concurrency=3, install_signal_handlers=False
    )
    assert worker.run(burst=True) == 0
    assert [r.get(timeout=0) for r in results] == ["met"] * 3


def test_stop_from_inside_a_task_returns_after_that_task_is_acked(
    live_app: Liteq,
) -> None:
    holder: dict[str, Worker] = {}

    @live_app.task
    def last() -> str:
        holder["worker"].stop()
        return "acked"

    result = last.delay()
    never = last.delay()
    worker = holder["worker"] = Worker(
        live_app, pool="solo", install_signal_handlers=False
    )
    assert worker.run() == 0
    assert result.get(timeout=0) == "acked"
    assert never.state == states.PENDING


def test_run_sends_the_worker_signals_in_order(live_app: Liteq) -> None:
    seen: list[str] = []

    def receiver(signal: Any, sender: Any, **kwargs: Any) -> None:
        seen.append(signal.name)

    hooked = [
        signals.worker_init,
        signals.worker_process_init,
        signals.worker_ready,
        signals.worker_shutting_down,
        signals.worker_shutdown,
    ]
    for sig in hooked:
        sig.connect(receiver)
    try:
        Worker(live_app, pool="solo", install_signal_handlers=False).run(burst=True)
    finally:
        for sig in hooked:
            sig.disconnect(receiver)
    assert seen == [s.name for s in hooked]


def test_threads_pool_soft_time_limit_is_raised_inside_the_task(
    live_app: Liteq,
) -> None:
    @live_app.task(soft_time_limit=0.2)
    def spin() -> str:
        try:
            while True:
                sum(range(100))
        except SoftTimeLimitExceeded:
            return "stopped"

    result = spin.delay()
    worker = Worker(
        live_app, pool="threads", concurrency=1, install_signal_handlers=False
    )
    assert worker.run(burst=True) == 0
    assert result.get(timeout=0) == "stopped"


def test_threads_pool_terminate_ends_the_task_revoked(live_app: Liteq) -> None:
    started = threading.Event()

    @live_app.task
    def spin() -> None:
        started.set()
        while True:
            sum(range(100))

    result = spin.delay()
    worker = Worker(
        live_app, pool="threads", concurrency=1, install_signal_handlers=False
    )
    thread, codes = run_in_thread(worker)
    try:
        assert started.wait(10)
        live_app.control.revoke(result.id, terminate=True)
        wait_until(lambda: result.state == states.REVOKED, timeout=10)
        assert isinstance(result.result, TaskRevokedError)
    finally:
        worker.stop()
        thread.join(10)
    assert codes == [0]


def test_idle_worker_picks_up_a_task_committed_by_another_thread(
    live_app: Liteq,
) -> None:
    @live_app.task
    def ping() -> str:
        return "pong"

    worker = Worker(
        live_app, pool="solo", fallback_poll=30.0, install_signal_handlers=False
    )
    thread, codes = run_in_thread(worker)
    try:
        wait_until(lambda: live_app.storage.workers(), timeout=10)
        # The loop sleeps now, and would not poll again for 30 s.
        sent = time.monotonic()
        assert ping.delay().get(timeout=5) == "pong"
        assert time.monotonic() - sent < 5
    finally:
        worker.stop()
        thread.join(10)
    assert codes == [0]


def test_cold_stop_with_a_running_thread_hands_its_task_over(live_app: Liteq) -> None:
    started, release = threading.Event(), threading.Event()

    @live_app.task(acks_late=True)
    def stuck() -> None:
        started.set()
        release.wait(10)

    result = stuck.delay()
    worker = Worker(
        live_app, pool="threads", concurrency=1, install_signal_handlers=False
    )
    thread, codes = run_in_thread(worker)
    try:
        assert started.wait(10)
        worker.stop(graceful=False)
        thread.join(10)
    finally:
        release.set()
    assert codes == [1]
    row = live_app.storage.broker.get_task_row(result.id)
    assert row is not None and row[0] == 1  # back to READY for the next worker


def test_request_pool_restart_on_an_in_process_pool_restarts_in_place(
    live_app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr("os.execv", lambda path, argv: execs.append(argv))
    worker = Worker(live_app, pool="solo", install_signal_handlers=False)
    thread, codes = run_in_thread(worker)
    wait_until(lambda: live_app.storage.workers(), timeout=10)
    worker.request_pool_restart()
    thread.join(10)
    assert codes == [0]
    assert len(execs) == 1


class FakeBeat:
    """Stands in for ``liteq.beat.EmbeddedBeat``."""

    events: list[str] = []

    def __init__(self, app: Liteq) -> None:
        self.app = app

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")


def test_run_with_beat_runs_the_embedded_scheduler_beside_the_worker(
    live_app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    import liteq.beat

    FakeBeat.events = []
    monkeypatch.setattr(liteq.beat, "EmbeddedBeat", FakeBeat)
    worker = Worker(live_app, pool="solo", beat=True, install_signal_handlers=False)
    assert worker.run(burst=True) == 0
    assert FakeBeat.events == ["start", "stop"]


def test_run_with_beat_unavailable_raises_a_clear_error(
    live_app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    import liteq.beat

    monkeypatch.delattr(liteq.beat, "EmbeddedBeat")
    worker = Worker(live_app, pool="solo", beat=True, install_signal_handlers=False)
    with pytest.raises(ConfigurationError, match="beat is not available"):
        worker.run(burst=True)


def test_run_checkpoints_from_a_thread_and_stops_it_at_the_end(
    live_app: Liteq,
) -> None:
    running: list[Any] = []

    def ready(sender: Any, **kwargs: Any) -> None:
        running.append(sender.runtime.checkpointer)

    worker = Worker(live_app, pool="solo", install_signal_handlers=False)
    db = live_app.storage.db
    assert db.checkpoint_wal is True
    signals.worker_ready.connect(ready)
    try:
        assert worker.run(burst=True) == 0
    finally:
        signals.worker_ready.disconnect(ready)
    checkpointer = running[0]
    assert checkpointer is not None and checkpointer.frames > 0
    assert checkpointer._thread is None  # joined at shutdown
    assert checkpointer.poke not in live_app.waker._listeners
    # While it ran, its checkpoints replaced the process's own WAL
    # checkpoint thread, which comes back when the process commits a lot.
    assert db.checkpoint_wal is True
