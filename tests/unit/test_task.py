"""Tasks: the decorator, the request, hooks, options, retries, shared_task, loggers."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from liteq import Liteq, MaxRetriesExceededError, Retry, Task, shared_task, states
from liteq.messages import Message
from liteq.testing import FakeClock, drain
from liteq.utils.log import get_task_logger
from liteq.worker import Worker


def _row(app: Liteq, task_id: str) -> tuple[int, str, str, int, float] | None:
    return app.storage.broker.get_task_row(task_id)


def _message(app: Liteq, task_id: str) -> Message:
    data, content_type = app.storage.db.execute(
        "SELECT message, content_type FROM liteq_task WHERE task_id = ?", (task_id,)
    )[0]
    return Message.decode(data, content_type)


def test_task_decorator_without_arguments_names_task_after_module(app: Liteq) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    assert isinstance(add, Task)
    assert add.name == f"{__name__}.add"
    assert app.tasks[add.name] is add
    assert add(2, 2) == 4
    assert add.run(2, 3) == 5
    assert add.__doc__ is None
    assert repr(add) == f"<@task: {__name__}.add>"


def test_task_decorator_with_arguments_sets_name_and_options(app: Liteq) -> None:
    @app.task(name="tasks.add", max_retries=7, queue="math", priority=3)
    def add(x: int, y: int) -> int:
        """Add two numbers."""
        return x + y

    assert add.name == "tasks.add"
    assert (add.max_retries, add.queue, add.priority) == (7, "math", 3)
    assert add.__doc__ == "Add two numbers."
    assert add(1, 1) == 2


def test_task_decorator_twice_on_same_function_returns_the_same_task(
    app: Liteq,
) -> None:
    def mul(x: int, y: int) -> int:
        return x * y

    assert app.task(mul) is app.task(mul)


def test_task_decorator_rejects_positional_options(app: Liteq) -> None:
    with pytest.raises(TypeError):
        app.task(lambda: None, lambda: None)


def test_task_in_main_module_is_named_after_app_main(app: Liteq) -> None:
    def job() -> None:
        pass

    job.__module__ = "__main__"
    assert app.task(job).name == "tests.job"


def test_bound_task_request_has_celery_fields(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def inspect(self: Task, x: int, *, flag: bool = False) -> str:
        req = self.request
        seen.update(
            id=req.id,
            args=req.args,
            kwargs=req.kwargs,
            retries=req.retries,
            eta=req.eta,
            expires=req.expires,
            hostname=req.hostname,
            delivery_info=req.delivery_info,
            is_eager=req.is_eager,
            parent_id=req.parent_id,
            root_id=req.root_id,
            group=req.group,
            task=req.task,
            called_directly=req.called_directly,
            timelimit=req.timelimit,
        )
        return "ok"

    expires = clock.now() + timedelta(hours=1)
    result = inspect.apply_async(
        (1,),
        {"flag": True},
        queue="inspect",
        priority=7,
        expires=expires,
        countdown=5,
        group_id="g-1",
        time_limit=30,
        soft_time_limit=20,
    )
    clock.advance(5)
    drain(app, Worker(app, queues=["inspect"], hostname="w1@host", pool="solo"))
    assert result.get(timeout=1) == "ok"
    assert seen == {
        "id": result.id,
        "args": (1,),
        "kwargs": {"flag": True},
        "retries": 0,
        "eta": clock.now(),
        "expires": expires,
        "hostname": "w1@host",
        "delivery_info": {
            "queue": "inspect",
            "priority": 7,
            "routing_key": "inspect",
            "exchange": "",
            "redelivered": False,
        },
        "is_eager": False,
        "parent_id": None,
        "root_id": result.id,
        "group": "g-1",
        "task": inspect.name,
        "called_directly": False,
        "timelimit": (30.0, 20.0),
    }


def test_task_called_from_a_task_records_parent_and_root(
    app: Liteq, worker: Worker
) -> None:
    seen: dict[str, Any] = {}

    @app.task(bind=True)
    def child(self: Task) -> None:
        seen["parent_id"] = self.request.parent_id
        seen["root_id"] = self.request.root_id

    @app.task(bind=True)
    def parent(self: Task) -> str:
        child.delay()
        return str(self.request.id)

    result = parent.delay()
    drain(app, worker)
    assert seen == {"parent_id": result.id, "root_id": result.id}


def test_request_outside_a_worker_is_called_directly(app: Liteq) -> None:
    @app.task(bind=True)
    def who(self: Task) -> tuple[bool, tuple[Any, ...]]:
        return self.request.called_directly, self.request.args

    assert who() == (True, ())
    assert who.request.id is None


class _Recording(Task):
    calls: list[tuple[str, Any]] = []  # noqa: RUF012

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self.calls.append(("on_success", retval))

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self.calls.append(("on_failure", type(exc).__name__))
        assert "ValueError" in einfo.traceback

    def on_retry(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        self.calls.append(("on_retry", type(exc).__name__))

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Any,
        kwargs: Any,
        einfo: Any,
    ) -> None:
        self.calls.append(("after_return", status))


def test_base_task_hooks_run_on_success_failure_and_retry(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    _Recording.calls = []

    @app.task(base=_Recording)
    def good() -> int:
        return 1

    @app.task(base=_Recording)
    def bad() -> None:
        raise ValueError("boom")

    @app.task(base=_Recording, bind=True, max_retries=1)
    def flaky(self: Task) -> None:
        raise self.retry(exc=KeyError("again"), countdown=1)

    assert isinstance(good, _Recording)
    good.delay()
    drain(app, worker)
    bad.delay()
    drain(app, worker, raise_on_failure=False)
    flaky.delay()
    drain(app, worker)
    assert _Recording.calls == [
        ("on_success", 1),
        ("after_return", "SUCCESS"),
        ("on_failure", "ValueError"),
        ("after_return", "FAILURE"),
        ("on_retry", "KeyError"),
        ("after_return", "RETRY"),
    ]


def test_app_task_cls_is_the_default_base(tmp_path: Any) -> None:
    app = Liteq(
        "t", broker=tmp_path / "x.db", task_cls=_Recording, set_as_current=False
    )

    @app.task
    def job() -> None:
        pass

    assert isinstance(job, _Recording)


def test_task_options_are_carried_into_the_queue_row_and_message(
    app: Liteq, clock: FakeClock
) -> None:
    @app.task(
        serializer="pickle",
        acks_late=True,
        reject_on_worker_lost=True,
        time_limit=60,
        soft_time_limit=50,
        rate_limit="10/s",
        queue="slow",
        priority=4,
        expires=300,
        ignore_result=True,
    )
    def heavy() -> None:
        pass

    result = heavy.delay()
    row = app.storage.db.execute(
        "SELECT queue, priority, content_type, acks_late, reject_on_worker_lost, "
        "expires FROM liteq_task WHERE task_id = ?",
        (result.id,),
    )[0]
    assert row == (
        "slow",
        4,
        "application/x-python-serialize",
        1,
        1,
        clock.time() + 300,
    )
    message = _message(app, result.id)
    assert message.timelimit == (60.0, 50.0)
    assert message.ignore_result is True
    assert message.expires == clock.now() + timedelta(seconds=300)
    assert heavy.rate_limit == "10/s"


def test_task_options_default_to_app_settings(tmp_path: Any) -> None:
    app = Liteq(
        "t",
        broker=tmp_path / "x.db",
        task_acks_late=True,
        task_track_started=True,
        task_ignore_result=True,
        task_default_queue="default",
        task_time_limit=9,
        set_as_current=False,
    )

    @app.task
    def job() -> None:
        pass

    assert job.effective_acks_late
    assert job.effective_track_started
    assert job.effective_ignore_result
    result = job.delay()
    assert _row(app, result.id)[2] == "default"  # type: ignore[index]
    assert _message(app, result.id).timelimit == (9.0, None)
    app.close()


def test_ignore_result_task_stores_nothing(app: Liteq, worker: Worker) -> None:
    @app.task(ignore_result=True)
    def quiet() -> int:
        return 1

    result = quiet.delay()
    drain(app, worker)
    assert app.storage.results.get(result.id) is None
    assert not app.storage.results.exists(result.id)


def test_ignore_result_task_with_store_errors_keeps_failures(
    app: Liteq, worker: Worker
) -> None:
    @app.task(ignore_result=True, store_errors_even_if_ignored=True)
    def broken() -> None:
        raise ValueError("kept")

    result = broken.delay()
    drain(app, worker, raise_on_failure=False)
    assert result.state == states.FAILURE


def test_track_started_records_started_before_the_result(
    app: Liteq, worker: Worker
) -> None:
    seen: list[str] = []

    @app.task(bind=True, track_started=True)
    def slow(self: Task) -> int:
        seen.append(self.AsyncResult(self.request.id).state)
        return 1

    result = slow.delay()
    drain(app, worker)
    assert seen == [states.STARTED]
    assert [e.status for e in app.storage.results.events_since(result.id)] == [
        states.STARTED
    ]
    assert result.state == states.SUCCESS


def test_retry_with_countdown_is_a_row_not_run_before_its_eta(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    attempts: list[int] = []

    @app.task(bind=True, max_retries=3)
    def flaky(self: Task, x: int) -> int:
        attempts.append(self.request.retries)
        if self.request.retries < 1:
            raise self.retry(exc=ConnectionError("down"), countdown=30)
        return x

    result = flaky.delay(5)
    drain(app, worker)
    assert attempts == [0]
    assert result.state == states.RETRY
    assert isinstance(result.result, ConnectionError)
    state, _, _, _, eta = _row(app, result.id)  # type: ignore[misc]
    assert (state, eta) == (0, clock.time() + 30)
    clock.advance(29)
    drain(app, worker)
    assert attempts == [0]
    clock.advance(1)
    drain(app, worker)
    assert attempts == [0, 1]
    assert result.get(timeout=1) == 5
    assert _row(app, result.id) is None


def test_retry_with_eta_and_new_arguments(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    calls: list[int] = []
    when = clock.now() + timedelta(minutes=10)

    @app.task(bind=True)
    def step(self: Task, n: int) -> int:
        calls.append(n)
        if n == 0:
            raise self.retry(args=(1,), eta=when)
        return n

    result = step.delay(0)
    drain(app, worker)
    assert _row(app, result.id)[4] == when.timestamp()  # type: ignore[index]
    clock.set(when)
    drain(app, worker)
    assert calls == [0, 1]
    assert result.get(timeout=1) == 1


def test_retry_without_countdown_uses_default_retry_delay(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    @app.task(bind=True, default_retry_delay=42)
    def later(self: Task) -> None:
        raise self.retry()

    result = later.delay()
    drain(app, worker)
    assert _row(app, result.id)[4] == clock.time() + 42  # type: ignore[index]


def test_retry_past_max_retries_raises_max_retries_exceeded(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    @app.task(bind=True, max_retries=2, default_retry_delay=1)
    def hopeless(self: Task) -> None:
        raise self.retry()

    result = hopeless.delay()
    for _ in range(3):
        drain(app, worker, raise_on_failure=False)
        clock.advance(1)
    assert result.state == states.FAILURE
    assert isinstance(result.result, MaxRetriesExceededError)
    assert result.retries == 2


def test_retry_past_max_retries_reraises_the_given_exception(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    @app.task(bind=True, max_retries=1, default_retry_delay=1)
    def hopeless(self: Task) -> None:
        try:
            raise KeyError("missing")
        except KeyError as exc:
            raise self.retry(exc=exc) from exc

    result = hopeless.delay()
    drain(app, worker)
    clock.advance(1)
    drain(app, worker, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert isinstance(result.result, KeyError)
    with pytest.raises(KeyError):
        result.get(timeout=1)


def test_retry_max_retries_argument_overrides_the_task_option(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    @app.task(bind=True, max_retries=0)
    def patient(self: Task) -> int:
        if self.request.retries < 2:
            raise self.retry(countdown=1, max_retries=5)
        return self.request.retries

    result = patient.delay()
    for _ in range(3):
        drain(app, worker)
        clock.advance(1)
    assert result.get(timeout=1) == 2


def test_retry_outside_a_worker_raises_the_exception_or_runtime_error(
    app: Liteq,
) -> None:
    @app.task(bind=True)
    def direct(self: Task, exc: BaseException | None) -> None:
        raise self.retry(exc=exc)

    with pytest.raises(ValueError):
        direct(ValueError("direct"))
    with pytest.raises(RuntimeError):
        direct(None)


def test_retry_throw_false_returns_the_retry_and_still_retries(
    app: Liteq, worker: Worker
) -> None:
    @app.task(bind=True)
    def soft(self: Task) -> str:
        retry = self.retry(countdown=10, throw=False)
        assert isinstance(retry, Retry)
        return "returned"

    result = soft.delay()
    drain(app, worker)
    assert result.state == states.RETRY


def test_autoretry_for_retries_listed_exceptions_then_fails(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    attempts: list[int] = []

    @app.task(
        bind=True,
        autoretry_for=(ConnectionError,),
        retry_kwargs={"max_retries": 2, "countdown": 5},
    )
    def fetch(self: Task) -> None:
        attempts.append(self.request.retries)
        raise ConnectionError("unreachable")

    result = fetch.delay()
    for _ in range(3):
        drain(app, worker, raise_on_failure=False)
        assert _row(app, result.id) is None or _row(app, result.id)[4] == (  # type: ignore[index]
            clock.time() + 5
        )
        clock.advance(5)
    assert attempts == [0, 1, 2]
    assert result.state == states.FAILURE
    assert isinstance(result.result, ConnectionError)


def test_autoretry_for_does_not_retry_other_exceptions(
    app: Liteq, worker: Worker
) -> None:
    @app.task(autoretry_for=[ConnectionError])
    def parse() -> None:
        raise ValueError("bad input")

    result = parse.delay()
    drain(app, worker, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert parse.autoretry_for == (ConnectionError,)


def test_retry_backoff_doubles_the_delay_up_to_the_maximum(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    @app.task(
        autoretry_for=(ConnectionError,),
        retry_backoff=2,
        retry_backoff_max=10,
        retry_jitter=False,
        max_retries=5,
    )
    def fetch() -> None:
        raise ConnectionError("down")

    result = fetch.delay()
    delays = []
    for _ in range(4):
        drain(app, worker)
        delay = _row(app, result.id)[4] - clock.time()  # type: ignore[index]
        delays.append(delay)
        clock.advance(delay)
    assert delays == [2, 4, 8, 10]


def test_retry_jitter_picks_a_delay_up_to_the_backoff(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(retry_backoff=True, retry_backoff_max=600)
    def fetch() -> None:
        pass

    picked: list[int] = []

    def fake_randrange(stop: int) -> int:
        picked.append(stop)
        return stop - 1

    monkeypatch.setattr("liteq.task.random.randrange", fake_randrange)
    assert fetch.backoff_countdown(3) == 8.0
    assert picked == [9]
    assert fetch.retry_jitter is True


def test_eager_apply_runs_retries_at_once(app: Liteq) -> None:
    @app.task(bind=True, max_retries=3)
    def flaky(self: Task) -> int:
        if self.request.retries < 2:
            raise self.retry(countdown=100)
        return self.request.retries

    result = flaky.apply()
    assert result.get() == 2


def test_update_state_reaches_the_result_backend(app: Liteq, worker: Worker) -> None:
    @app.task(bind=True)
    def progress(self: Task) -> str:
        self.update_state(state="PROGRESS", meta={"done": 1})
        assert self.AsyncResult(self.request.id).info == {"done": 1}
        return "finished"

    result = progress.delay()
    drain(app, worker)
    assert result.get(timeout=1) == "finished"


@pytest.mark.usefixtures("isolated_registry")
def test_shared_task_binds_to_every_app(app: Liteq, tmp_path: Any) -> None:
    @shared_task
    def shared_add(x: int, y: int) -> int:
        return x + y

    @shared_task(name="shared.named", bind=True)
    def shared_named(self: Task) -> str:
        return self.name

    assert f"{__name__}.shared_add" in app.tasks
    assert "shared.named" in app.tasks
    later = Liteq("later", broker=tmp_path / "later.db")
    try:
        assert "shared.named" in later.tasks
        assert shared_add.name == f"{__name__}.shared_add"
        assert shared_add.app is later
        assert shared_add(1, 2) == 3
        assert shared_named() == "shared.named"
        result = shared_add.delay(2, 3)
        drain(later)
        assert result.get(timeout=1) == 5
    finally:
        later.close()


def test_get_task_logger_returns_a_child_of_the_task_logger(app: Liteq) -> None:
    logger = get_task_logger("tests.my_tasks")
    assert isinstance(logger, logging.Logger)
    assert logger.parent is logging.getLogger("liteq.task")
    with pytest.raises(RuntimeError):
        get_task_logger("liteq.task")


def test_task_formatter_shows_task_name_and_id(app: Liteq, worker: Worker) -> None:
    from liteq.utils.log import TaskFormatter

    formatter = TaskFormatter("%(task_name)s[%(task_id)s]: %(message)s")
    lines: list[str] = []

    @app.task(bind=True)
    def speak(self: Task) -> None:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hi", None, None)
        lines.append(formatter.format(record))

    result = speak.delay()
    drain(app, worker)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "out", None, None)
    assert lines == [f"{speak.name}[{result.id}]: hi"]
    assert formatter.format(record) == "???[???]: out"


def test_apply_async_checks_arguments_against_the_signature(app: Liteq) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(TypeError, match="add"):
        add.delay(1)
    with pytest.raises(TypeError):
        add.apply_async((1, 2), {"z": 3})


def test_class_based_task_registers_under_its_name(app: Liteq, worker: Worker) -> None:
    class Double(Task):
        name = "tasks.double"

        def run(self, x: int) -> int:
            return 2 * x

    task = app.register_task(Double)
    assert app.tasks["tasks.double"] is task
    result = task.delay(21)
    drain(app, worker)
    assert result.get(timeout=1) == 42


def test_signature_shortcuts_build_signatures(app: Liteq) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    sig = add.s(2)
    assert sig.task == add.name
    assert sig.args == (2,)
    assert add.si(1, 1).immutable


def test_eta_as_naive_datetime_is_taken_as_utc(app: Liteq, clock: FakeClock) -> None:
    @app.task
    def ping() -> None:
        pass

    naive = datetime(2024, 1, 1, 0, 10)
    result = ping.apply_async(eta=naive)
    assert (
        _row(app, result.id)[4]
        == naive.replace(  # type: ignore[index]
            tzinfo=timezone.utc
        ).timestamp()
    )


def test_effective_options_follow_settings_and_attributes_changed_at_runtime(
    app: Liteq,
) -> None:
    @app.task
    def job() -> None:
        return None

    assert job.effective_options() == (False, False, False, False, False)
    app.conf.task_acks_late = True
    app.conf.task_track_started = True
    assert job.effective_acks_late and job.effective_track_started
    app.conf.CELERY_IGNORE_RESULT = True
    assert job.effective_ignore_result
    job.ignore_result = False  # the task's own value wins over the setting
    assert not job.effective_ignore_result
    type(job).store_errors_even_if_ignored = True
    assert job.effective_store_errors
    del app.conf["task_acks_late"]
    assert job.effective_options() == (False, False, False, True, True)
