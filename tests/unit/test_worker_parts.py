"""The worker's building blocks: liveness, rate limits, app paths, wake-ups."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.storage import WorkerRow
from liteq.testing import FakeClock, drain, wait_until
from liteq.wakeup import Waker
from liteq.worker import Worker
from liteq.worker.liveness import (
    LOCAL_WORKERS,
    STALE_LEASES,
    HostIdentity,
    dead_workers,
    pid_starttime,
)
from liteq.worker.ratelimit import RateLimiter, parse_rate
from liteq.worker.spec import derive_app_path, picklable_settings, start_modules
from liteq.worker.supervisor import signal_number
from liteq.worker.wakeups import CONTROL, DATABASE, POOL, TIMEOUT, Wakeups
from tests.threads import later

# -- liveness ------------------------------------------------------------------------


def _row(
    worker_id: str, pid: int, starttime: int | None, **changes: object
) -> WorkerRow:
    me = HostIdentity.current()
    fields: dict[str, object] = {
        "worker_id": worker_id,
        "hostname": "w@h",
        "pid": pid,
        "pid_starttime": starttime,
        "boot_id": me.boot_id,
        "queues": ["celery"],
        "concurrency": 1,
        "info": me.as_info(),
        "started_at": 0.0,
        "heartbeat_at": 1000.0,
    }
    fields.update(changes)
    return WorkerRow(**fields)  # type: ignore[arg-type]


def test_pid_starttime_is_stable_for_a_live_process_and_none_once_it_exits() -> None:
    assert pid_starttime(os.getpid()) == pid_starttime(os.getpid()) is not None
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    # Exited but not reaped yet: a zombie counts as gone.
    while pid_starttime(proc.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pid_starttime(proc.pid) is None
    proc.wait()
    assert pid_starttime(proc.pid) is None


def test_dead_workers_judges_same_host_workers_by_pid_and_start_time() -> None:
    me = HostIdentity.current()
    mine = pid_starttime(os.getpid())
    parent = os.getppid()
    rows = [
        _row("alive", parent, pid_starttime(parent)),
        _row("reused-pid", parent, 1),
        _row("gone", 2**22 + 17, 5),
        _row("older-me", os.getpid(), mine),
    ]
    dead = dead_workers(rows, me, "self", now=1000.0, lease=60.0)
    assert dead == ["reused-pid", "gone", "older-me"]


def test_dead_workers_keeps_other_workers_of_this_process() -> None:
    LOCAL_WORKERS.add("sibling")
    try:
        row = _row("sibling", os.getpid(), pid_starttime(os.getpid()))
        assert dead_workers([row], HostIdentity.current(), "self", 1000.0, 60.0) == []
    finally:
        LOCAL_WORKERS.discard("sibling")


def test_dead_workers_judges_other_hosts_only_by_a_stale_heartbeat() -> None:
    me = HostIdentity.current()
    fresh = _row("far", 1, None, boot_id="other-boot", heartbeat_at=1000.0)
    stale = _row("lost", 1, None, boot_id="other-boot", heartbeat_at=0.0)
    now = 1000.0 + STALE_LEASES * 60.0 - 1
    assert dead_workers([fresh, stale], me, "self", now, 60.0) == ["lost"]


def test_same_host_needs_the_same_host_name_and_pid_namespace() -> None:
    me = HostIdentity.current()
    assert me.same_host(_row("a", 1, None))
    assert not me.same_host(_row("b", 1, None, info={"host": "elsewhere"}))
    assert not me.same_host(_row("c", 1, None, info={**me.as_info(), "pidns": "x"}))


# -- rate limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rate"),
    [("10/s", 10.0), ("120/m", 2.0), ("3600/h", 1.0), (5, 5.0), ("2", 2.0), (None, None),
     ("0/s", None), ("", None)],
)  # fmt: skip
def test_parse_rate_reads_celery_rate_limits(value: object, rate: float | None) -> None:
    assert parse_rate(value) == rate


def test_parse_rate_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="invalid rate limit"):
        parse_rate("fast")


def test_rate_limiter_spaces_out_tasks_over_the_limit(
    app: Liteq, clock: FakeClock
) -> None:
    @app.task(rate_limit="2/s")
    def limited() -> None:
        pass

    for _ in range(3):
        limited.delay()
    claimed = app.storage.claim("w", ["celery"], 3, clock.time(), 60.0)
    limiter = RateLimiter(app)
    now = clock.time()
    assert limiter.admit(claimed[0], now) is None
    second, third = limiter.admit(claimed[1], now), limiter.admit(claimed[2], now)
    assert second == pytest.approx(now + 0.5)
    assert third == pytest.approx(now + 1.0)


def test_worker_defers_a_rate_limited_task_without_counting_a_delivery(
    app: Liteq, clock: FakeClock
) -> None:
    @app.task(rate_limit="1/s")
    def limited(i: int) -> int:
        return i

    results = [limited.delay(i) for i in range(2)]
    worker = Worker(app, pool="solo", hostname="t@h")
    drain(app, worker)
    assert results[0].get(timeout=0) == 0
    row = app.storage.broker.get_task_row(results[1].id)
    assert row is not None and row[0] == 0 and row[3] == 0  # SCHEDULED, 0 deliveries
    clock.advance(1.0)
    drain(app, worker)
    assert results[1].get(timeout=0) == 1


# -- app paths for children ------------------------------------------------------------


def test_derive_app_path_finds_the_module_attribute_holding_the_app() -> None:
    from tests.apps import tasks

    assert derive_app_path(tasks.app) == "tests.apps.tasks:app"
    assert derive_app_path(Liteq("nowhere", set_as_current=False)) is None


def test_picklable_settings_leave_out_the_database_and_unpicklable_values(
    tmp_path: Path,
) -> None:
    app = Liteq(
        "x",
        broker=str(tmp_path / "x.db"),
        set_as_current=False,
        task_default_queue="q",
        task_routes=(lambda name, args, kwargs, options, task=None, **kw: None,),
    )
    assert picklable_settings(app) == {"task_default_queue": "q"}


def test_start_modules_name_the_modules_of_registered_tasks() -> None:
    from tests.apps import tasks

    assert "tests.apps.tasks" in start_modules(tasks.app)


def test_start_modules_add_the_imports_and_include_lists_once_in_order(
    tmp_path: Path,
) -> None:
    app = Liteq("mods", broker=str(tmp_path / "x.db"), set_as_current=False)

    @app.task
    def job() -> None: ...

    app.conf.imports = "first_mod"
    app.conf.include = ["tests.unit.test_worker_parts", "second_mod", "first_mod"]
    # The tasks' modules come once; the listed ones follow, in their order.
    modules = start_modules(app)
    assert modules.count("tests.unit.test_worker_parts") == 1
    assert modules[-2:] == ("first_mod", "second_mod")


# -- wake-ups ------------------------------------------------------------------------


@pytest.fixture
def wakeups(app: Liteq) -> Wakeups:
    waker = Waker(app.storage.path)
    wake = Wakeups(waker, app.storage.db.data_version)
    wake.start()
    yield wake
    wake.close()
    waker.stop()


@pytest.mark.timeout(20)
def test_wakeups_poke_wakes_the_loop(wakeups: Wakeups) -> None:
    threading.Timer(0.05, wakeups.poke).start()
    assert wakeups.wait(10, [], database=True) == CONTROL


@pytest.mark.timeout(20)
def test_wakeups_a_commit_by_another_connection_wakes_the_loop(
    app: Liteq, wakeups: Wakeups
) -> None:
    @app.task
    def ping() -> None:
        pass

    with later(0.05, ping.delay):
        assert wakeups.wait(10, [], database=True) == DATABASE


def test_wakeups_own_commits_and_unchanged_files_do_not_wake_the_loop(
    app: Liteq, wakeups: Wakeups
) -> None:
    @app.task
    def ping() -> None:
        pass

    ping.delay()  # committed by this thread: the loop knows
    wakeups.waker.notify()  # a wake that finds no change
    assert wakeups.wait(0.1, [], database=True) == TIMEOUT


# -- supervisor ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "number"),
    [(None, signal.SIGTERM), ("SIGKILL", signal.SIGKILL), ("kill", signal.SIGKILL),
     ("9", 9), ("SIGUSR1", signal.SIGUSR1)],
)  # fmt: skip
def test_signal_number_reads_celery_signal_names(name: str | None, number: int) -> None:
    assert signal_number(name) == number


# -- the child's bookkeeping ----------------------------------------------------------


def test_child_state_cancels_only_tasks_that_have_not_started() -> None:
    from liteq.worker.child import RUNNING, SHARED_SIZE, _State

    state = _State([0.0] * SHARED_SIZE)
    state.values[RUNNING] = -1
    assert state.start(1)
    assert state.cancel([1, 2, 3]) == [2, 3]
    assert not state.start(2)
    assert not state.start(3)
    assert state.start(4)
    state.finished()
    assert not state.terminate(4, signal.SIGTERM)  # ended already: nothing to signal
    assert not state.terminate(9, signal.SIGTERM)  # not started


@pytest.mark.timeout(20)
def test_wakeups_look_again_when_a_commit_shows_after_its_file_event(
    tmp_path: Path,
) -> None:
    visible_at = time.monotonic() + 0.03
    wake = Wakeups(
        Waker(str(tmp_path / "x.db")),
        lambda: 2 if time.monotonic() >= visible_at else 1,
        inotify=False,
    )
    wake._version = 1
    try:
        # The event comes first; the commit becomes visible 30 ms later and
        # nothing else happens: the loop must still notice it.
        with later(0, wake._on_change):
            assert wake.wait(10, [], database=True) == DATABASE
            assert time.monotonic() - visible_at < 1.5
    finally:
        wake.close()


@pytest.mark.timeout(20)
def test_wakeups_keep_looking_for_a_commit_after_a_pool_message_woke_them_first(
    tmp_path: Path,
) -> None:
    visible = False
    wake = Wakeups(
        Waker(str(tmp_path / "x.db")), lambda: 2 if visible else 1, inotify=False
    )
    wake._version = 1
    pool_r, pool_w = os.pipe()
    try:
        os.write(pool_w, b"r")  # a pool process's report
        # Another process's commit: its event comes before it is visible.
        with later(0, wake._on_change):
            wait_until(lambda: wake._db_pending)
        assert wake.wait(10, [pool_r], database=True) == POOL
        os.read(pool_r, 1)
        # The loop read the report and sleeps again; the commit shows now,
        # with no event of its own: the loop must still look and see it.
        visible = True
        assert wake.wait(10, [pool_r], database=True) == DATABASE
    finally:
        os.close(pool_r)
        os.close(pool_w)
        wake.close()


@pytest.mark.timeout(20)
def test_wakeups_keep_looking_after_a_wake_that_showed_an_earlier_commit(
    tmp_path: Path,
) -> None:
    version = 1
    wake = Wakeups(Waker(str(tmp_path / "x.db")), lambda: version, inotify=False)
    wake._version = 1
    try:
        # The events of a commit in flight wake the loop, which sees an
        # earlier commit (a pool process's ack) and goes to work.
        version = 2
        with later(0, wake._on_change):
            assert wake.wait(10, [], database=True) == DATABASE
        # The commit in flight shows, with no event of its own.
        version = 3
        assert wake.wait(10, [], database=True) == DATABASE
    finally:
        wake.close()
