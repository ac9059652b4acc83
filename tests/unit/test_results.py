"""AsyncResult: states, values, waiting on change, progress in order, expiry."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from liteq import AsyncResult, Liteq, Task, states
from liteq.app import _current
from liteq.exceptions import ResultTimeout, TaskRevokedError, TimeoutError
from liteq.result import EagerResult
from liteq.testing import FakeClock, drain, wait_until
from liteq.worker import Worker

#: Longest a waiter may take to notice a commit, when its fallback poll is off.
PROMPT = 2.0


def _progress_app(path: str) -> Liteq:
    """An app on ``path`` whose task reports PROGRESS five times, then returns."""
    app = Liteq("progress", broker=path, set_as_current=False)

    @app.task(name="tests.progress", bind=True, track_started=True)
    def progress(self: Task, steps: int) -> str:
        for n in range(1, steps + 1):
            self.update_state(state="PROGRESS", meta={"step": n})
        return "done"

    @app.task(name="tests.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


def _drain_when_told(path: str, go: Any) -> None:
    """Child process: wait for the parent to start waiting, then run the tasks."""
    app = _progress_app(path)
    go.wait(30)
    drain(app, Worker(app, pool="solo"))
    app.close()


@pytest.fixture
def real_app(tmp_path: Path) -> Iterator[Liteq]:
    """An app on the system clock (real waiting), with huge fallback polls."""
    app = _progress_app(str(tmp_path / "real.db"))
    app.waker.fallback = 1000.0
    yield app
    app.close()


@pytest.fixture
def add(app: Liteq) -> Any:
    @app.task(name="tests.add")
    def add(x: int, y: int) -> int:
        return x + y

    return add


def test_pending_result_reads_pending_and_not_ready(app: Liteq, add: Any) -> None:
    result = add.delay(2, 2)
    assert (result.state, result.status) == (states.PENDING, states.PENDING)
    assert not result.ready()
    assert not result.successful()
    assert not result.failed()
    assert result.result is None
    assert result.info is None
    assert result.traceback is None
    assert result.date_done is None


def test_successful_result_exposes_value_and_date_done(
    app: Liteq, add: Any, worker: Worker, clock: FakeClock
) -> None:
    result = add.delay(2, 2)
    drain(app, worker)
    assert result.state == states.SUCCESS
    assert result.ready() and result.successful() and not result.failed()
    assert result.result == result.info == 4
    assert result.get() == 4
    assert result.wait(timeout=1) == 4
    assert result.date_done == clock.now()
    assert result.traceback is None
    assert result.worker == "test@localhost"
    assert result.name == "tests.add"
    assert str(result) == result.id
    assert result == result.id
    assert result == AsyncResult(result.id, app=app)
    assert hash(result) == hash(result.id)


def test_failed_result_propagates_or_returns_the_exception(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("kaboom")

    result = boom.delay()
    drain(app, worker, raise_on_failure=False)
    assert result.failed() and result.ready() and not result.successful()
    assert isinstance(result.result, ValueError)
    assert result.traceback is not None and "kaboom" in result.traceback
    with pytest.raises(ValueError, match="kaboom"):
        result.get()
    assert isinstance(result.get(propagate=False), ValueError)
    with pytest.raises(ValueError):
        result.maybe_throw()


def test_received_while_a_worker_holds_the_task(app: Liteq, add: Any) -> None:
    result = add.delay(1, 1)
    app.storage.claim("w", None, 1, app.clock.time(), 60)
    assert result.state == states.RECEIVED


def test_exists_tells_an_unknown_id_from_a_queued_one(app: Liteq, add: Any) -> None:
    unknown = app.AsyncResult("never-queued")
    queued = add.delay(1, 1)
    assert unknown.state == queued.state == states.PENDING
    assert not unknown.exists()
    assert queued.exists()


def test_get_times_out_with_result_timeout_alias_timeout_error(
    app: Liteq, add: Any, clock: FakeClock
) -> None:
    result = add.delay(1, 1)
    assert TimeoutError is ResultTimeout
    start = clock.monotonic()
    with pytest.raises(TimeoutError):
        result.get(timeout=5)
    assert clock.monotonic() - start == pytest.approx(5)


def test_get_looks_only_at_the_result_while_the_task_is_not_done(
    app: Liteq, add: Any, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = add.delay(1, 1)

    def no_queue_lookup(task_id: str) -> Any:
        raise AssertionError("get() looked the task up in the queue")

    monkeypatch.setattr(app.storage.broker, "get_task_row", no_queue_lookup)
    with pytest.raises(ResultTimeout):
        result.get(timeout=2)
    monkeypatch.undo()
    drain(app, worker)
    assert result.get(timeout=2) == 2


def test_get_inside_a_task_is_refused_unless_allowed(
    app: Liteq, add: Any, worker: Worker
) -> None:
    other = add.delay(1, 1)

    @app.task
    def waits(allow: bool) -> Any:
        return other.get(timeout=1, disable_sync_subtasks=not allow)

    drain(app, worker)
    refused = waits.delay(False)
    allowed = waits.delay(True)
    drain(app, worker, raise_on_failure=False)
    assert isinstance(refused.result, RuntimeError)
    assert allowed.get(timeout=1) == 2


def test_forget_deletes_the_stored_result(app: Liteq, add: Any, worker: Worker) -> None:
    result = add.delay(1, 1)
    drain(app, worker)
    assert result.get() == 2
    result.forget()
    fresh = app.AsyncResult(result.id)
    assert fresh.state == states.PENDING
    assert not fresh.exists()


def test_revoke_of_a_waiting_task_is_stored_and_get_raises(
    app: Liteq, add: Any, worker: Worker
) -> None:
    result = add.apply_async((1, 1), countdown=10)
    result.revoke()
    assert result.state == states.REVOKED
    with pytest.raises(TaskRevokedError):
        result.get(timeout=1)
    assert isinstance(result.get(timeout=1, propagate=False), TaskRevokedError)


def test_revoke_terminate_asks_the_running_worker_to_kill(app: Liteq, add: Any) -> None:
    result = add.delay(1, 1)
    app.storage.claim("w-term", None, 1, app.clock.time(), 60)
    result.revoke(terminate=True, signal="SIGKILL")
    assert app.storage.broker.terminate_requests("w-term") == [(result.id, "SIGKILL")]


def test_results_expire_after_result_expires_and_maintain_cleans_them(
    app: Liteq, add: Any, worker: Worker, clock: FakeClock
) -> None:
    result = add.delay(1, 1)
    drain(app, worker)
    assert app.storage.maintain(clock.time()) == 0
    clock.advance(timedelta(days=1) - timedelta(seconds=1))
    assert app.storage.maintain(clock.time()) == 0
    assert app.AsyncResult(result.id).get() == 2
    clock.advance(2)
    assert app.storage.maintain(clock.time()) == 1
    assert not app.AsyncResult(result.id).exists()


def test_result_expires_setting_changes_the_lifetime(
    app: Liteq, add: Any, worker: Worker, clock: FakeClock
) -> None:
    app.conf.CELERY_TASK_RESULT_EXPIRES = 60
    result = add.delay(1, 1)
    drain(app, worker)
    clock.advance(61)
    assert app.storage.maintain(clock.time()) == 1
    app.conf.result_expires = None
    kept = add.delay(1, 1)
    drain(app, worker)
    clock.advance(timedelta(days=365))
    app.storage.maintain(clock.time())
    assert kept.get() == 2
    assert not app.AsyncResult(result.id).exists()


def test_then_calls_back_once_the_result_is_ready(
    app: Liteq, add: Any, worker: Worker
) -> None:
    called = threading.Event()
    seen: list[Any] = []

    def on_ready(result: AsyncResult) -> None:
        seen.append(result.result)
        called.set()

    result = add.delay(20, 22)
    assert result.then(on_ready) is result
    drain(app, worker)
    assert called.wait(10)
    assert seen == [42]


def test_on_message_sees_every_state_change_in_order(
    app: Liteq, worker: Worker
) -> None:
    app_tasks = _progress_app(app.conf.broker_url)
    app.tasks.update(app_tasks.tasks)
    result = app.send_task("tests.progress", (3,))
    drain(app, worker)
    seen: list[tuple[str, Any]] = []
    assert result.get(on_message=lambda m: seen.append((m["status"], m["result"]))) == (
        "done"
    )
    assert seen == [
        (states.STARTED, {"pid": seen[0][1]["pid"], "hostname": "test@localhost"}),
        ("PROGRESS", {"step": 1}),
        ("PROGRESS", {"step": 2}),
        ("PROGRESS", {"step": 3}),
        (states.SUCCESS, "done"),
    ]


def test_on_message_meta_carries_date_done_as_an_aware_datetime(
    app: Liteq, worker: Worker
) -> None:
    app_tasks = _progress_app(app.conf.broker_url)
    app.tasks.update(app_tasks.tasks)
    result = app.send_task("tests.progress", (1,))
    drain(app, worker)
    dates: list[Any] = []
    result.get(on_message=lambda m: dates.append(m["date_done"]))
    # Celery hands on_message a datetime, not epoch seconds.
    assert len(dates) == 3
    assert all(isinstance(d, datetime) and d.tzinfo is not None for d in dates)


def test_on_message_from_a_task_running_in_a_thread_arrives_in_order(
    real_app: Liteq,
) -> None:
    result = real_app.send_task("tests.progress", (8,))
    started = threading.Event()
    worker = threading.Thread(
        target=lambda: (
            started.wait(30),
            drain(real_app, Worker(real_app, pool="solo")),
        )
    )
    worker.start()
    seen: list[tuple[str, Any]] = []
    try:
        value = result.get(
            timeout=30,
            interval=1000,
            on_interval=started.set,
            on_message=lambda m: seen.append((m["status"], m["result"])),
        )
    finally:
        worker.join(30)
    assert value == "done"
    assert [s for s, _ in seen] == [states.STARTED] + ["PROGRESS"] * 8 + [
        states.SUCCESS
    ]
    assert [m["step"] for s, m in seen if s == "PROGRESS"] == list(range(1, 9))


@pytest.mark.slow
def test_on_message_from_a_task_in_another_process_arrives_in_order(
    real_app: Liteq,
) -> None:
    path = real_app.storage.path
    result = real_app.send_task("tests.progress", (5,))
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    child = context.Process(target=_drain_when_told, args=(path, go))
    child.start()
    seen: list[tuple[str, Any]] = []
    try:
        value = result.get(
            timeout=60,
            interval=1000,
            on_interval=go.set,
            on_message=lambda m: seen.append((m["status"], m["result"])),
        )
    finally:
        child.join(60)
    assert child.exitcode == 0
    assert value == "done"
    assert seen[0][0] == states.STARTED
    assert seen[1:] == [("PROGRESS", {"step": n}) for n in range(1, 6)] + [
        (states.SUCCESS, "done")
    ]


def test_get_wakes_on_a_commit_from_another_thread_without_polling(
    real_app: Liteq,
) -> None:
    result = real_app.send_task("tests.add", (2, 3))
    waiting = threading.Event()
    told_at: list[float] = []

    def tell() -> None:
        if not told_at:
            told_at.append(time.monotonic())
            waiting.set()

    thread = threading.Thread(
        target=lambda: (
            waiting.wait(30),
            drain(real_app, Worker(real_app, pool="solo")),
        )
    )
    thread.start()
    try:
        # The fallback poll is 1000 s: only a wake-up can end this wait early.
        value = result.get(timeout=30, interval=1000, on_interval=tell)
        returned_at = time.monotonic()
    finally:
        thread.join(30)
    assert value == 5
    assert returned_at - told_at[0] < PROMPT


@pytest.mark.slow
def test_get_wakes_on_a_commit_from_another_process_without_polling(
    real_app: Liteq,
) -> None:
    result = real_app.send_task("tests.add", (2, 3))
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    child = context.Process(target=_drain_when_told, args=(real_app.storage.path, go))
    child.start()
    told_at: list[float] = []

    def tell() -> None:
        if not told_at and child.is_alive():
            told_at.append(time.monotonic())
            go.set()

    try:
        value = result.get(timeout=60, interval=1000, on_interval=tell)
        returned_at = time.monotonic()
    finally:
        child.join(60)
    assert value == 5
    assert child.exitcode == 0
    assert told_at, "the child was told to run the task only once waiting began"
    # A spawned child still has to start Python; well under the 1000 s poll.
    assert returned_at - told_at[0] < 30


def test_eager_result_behaves_like_a_finished_async_result(app: Liteq) -> None:
    result = EagerResult("e1", 5, states.SUCCESS, app=app)
    seen: list[dict[str, Any]] = []
    assert result.get(on_message=seen.append) == 5
    assert result.ready() and result.successful()
    assert result.exists()
    assert seen[0]["status"] == states.SUCCESS
    result.revoke()
    assert result.state == states.REVOKED


def test_wait_until_returns_the_truthy_value_or_times_out() -> None:
    assert wait_until(lambda: 3, timeout=1) == 3
    with pytest.raises(ResultTimeout):
        wait_until(lambda: 0, timeout=0.05, interval=0.01)


def test_async_result_defaults_to_the_current_app(app: Liteq) -> None:
    assert _current[-1] is app
    assert AsyncResult("x").app is app


def test_results_of_tasks_sent_with_ignore_result_are_ignored_and_get_returns_none(
    app: Liteq,
) -> None:
    @app.task(ignore_result=True)
    def quiet(x: int) -> int:
        return x

    @app.task
    def loud(x: int) -> int:
        return x

    results = [
        quiet.delay(1),
        loud.apply_async((2,), ignore_result=True),
        quiet.apply_async((3,), ignore_result=False),  # the task's True still wins
    ]
    assert all(r.ignored for r in results)
    # Nothing will ever be stored: get() returns at once instead of waiting.
    assert [r.get(timeout=None) for r in results] == [None, None, None]
    assert not loud.delay(4).ignored
    import pickle

    assert pickle.loads(pickle.dumps(results[0])).ignored


def test_get_raises_as_soon_as_a_chain_parent_is_revoked_while_waiting(
    app: Liteq, worker: Worker
) -> None:
    from liteq import chain

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = chain(add.s(1, 1), add.s(2), add.s(3)).apply_async()
    middle = result.parent
    assert isinstance(middle, AsyncResult)
    wakes: list[int] = []

    def revoke_once() -> None:
        wakes.append(1)
        if len(wakes) == 1:
            middle.revoke()
            drain(app, worker)  # the first step runs; the middle one is discarded

    # The revoke comes while get() waits.
    with pytest.raises(TaskRevokedError):
        result.get(timeout=5, on_interval=revoke_once)
    assert wakes == [1]  # the next wake-up raised, long before the timeout


def test_app_result_classes_are_bound_to_the_app_as_celerys_are(
    app: Liteq, worker: Worker
) -> None:
    from liteq import group

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(1, 1)
    assert isinstance(result, app.AsyncResult)
    assert isinstance(result, AsyncResult)
    assert app.AsyncResult(result.id).app is app
    saved = group(add.s(i, i) for i in range(3)).apply_async().save()
    drain(app, worker)
    restored = app.GroupResult.restore(saved.id)
    assert isinstance(restored, app.GroupResult)
    assert restored is not None and restored.get(timeout=0) == [0, 2, 4]


def test_results_pickle_and_come_back_on_the_app_of_their_database(
    app: Liteq, worker: Worker, db_path: Path
) -> None:
    import pickle

    from liteq import chain, group
    from liteq.app import using_app

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    last = chain(add.s(1, 1), add.s(2)).apply_async()
    members = group(add.s(i, i) for i in range(2)).apply_async()
    eager = add.apply((5, 5))
    drain(app, worker)
    data = pickle.dumps([last, members, eager])
    # Unpickled where another app is the current one: each finds its file.
    other = Liteq(
        "other", broker=str(db_path.parent / "other.db"), set_as_current=False
    )
    with using_app(other):
        back = pickle.loads(data)
    assert back[0].app is app and back[0].id == last.id
    assert back[0].parent.id == last.parent.id
    assert back[0].get(timeout=0) == 4
    assert back[1].id == members.id and back[1].get(timeout=0) == [0, 2]
    assert back[2].get() == 10
    other.close()


@pytest.mark.usefixtures("isolated_registry")
def test_a_result_unpickled_where_no_app_uses_its_file_reads_it_all_the_same(
    app: Liteq, worker: Worker
) -> None:
    import pickle

    from liteq import registry

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(2, 3)
    drain(app, worker)
    data = pickle.dumps(result)
    registry._apps[:] = registry._current[:] = []  # a process without the app
    back = pickle.loads(data)
    assert back.app is not app
    assert back.app.storage.path == app.storage.path
    assert back.get(timeout=0) == 5
    back.app.close()


def test_tasks_sent_by_a_running_task_are_its_children_and_collect_walks_them(
    app: Liteq, worker: Worker
) -> None:
    from liteq.exceptions import IncompleteStream

    @app.task
    def leaf(x: int) -> int:
        return x * 10

    @app.task
    def fan(n: int) -> str:
        for i in range(n):
            leaf.delay(i)
        leaf.apply_async((99,), add_to_parent=False)  # left out, as in Celery
        return "sent"

    @app.task(trail=False)
    def quiet() -> None:
        leaf.delay(7)

    root = fan.delay(2)
    silent = quiet.delay()
    worker.step()  # runs fan and quiet only: their subtasks wait
    assert len(root.children) == 2
    with pytest.raises(IncompleteStream):
        list(root.iterdeps())  # collect() would wait in get() instead
    drain(app, worker)
    assert [value for _, value in root.collect()] == ["sent", 0, 10]
    pairs = list(root.iterdeps())
    assert pairs[0] == (None, root) and all(p == root for p, _ in pairs[1:])
    assert silent.children == []
