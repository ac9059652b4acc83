"""Running one task: every outcome maps to a visible state; bad messages do too."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from liteq import Ignore, Liteq, Reject, Task, states
from liteq.exceptions import ContentDisallowed, DecodeError, EncodeError, TaskError
from liteq.execution import Outcome, execute
from liteq.messages import Message
from liteq.storage import NewTask
from liteq.testing import FakeClock, drain
from liteq.worker import Worker


def _raw_message(app: Liteq, task_id: str) -> bytes | None:
    rows = app.storage.db.execute(
        "SELECT raw_message FROM liteq_result WHERE task_id = ?", (task_id,)
    )
    return rows[0][0] if rows else None


def test_undecodable_message_ends_failure_keeping_its_bytes(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def fine() -> str:
        return "still working"

    garbage = b"\x00\x01 this is not json"
    app.storage.broker.enqueue(
        NewTask(task_id="broken", name="tests.fine", message=garbage), app.clock.time()
    )
    good = fine.delay()
    drain(app, worker, raise_on_failure=False)
    broken = app.AsyncResult("broken")
    assert broken.state == states.FAILURE
    assert isinstance(broken.result, DecodeError)
    assert _raw_message(app, "broken") == garbage
    assert broken.traceback and "DecodeError" in broken.traceback
    assert good.get(timeout=1) == "still working"


def test_message_with_a_bad_envelope_ends_failure_decode_error(
    app: Liteq, worker: Worker
) -> None:
    app.storage.broker.enqueue(
        NewTask(task_id="shape", name="x", message=b'{"headers": {}}'),
        app.clock.time(),
    )
    drain(app, worker, raise_on_failure=False)
    assert isinstance(app.AsyncResult("shape").result, DecodeError)
    assert _raw_message(app, "shape") == b'{"headers": {}}'


def test_pickled_message_is_refused_unless_accepted(app: Liteq, worker: Worker) -> None:
    ran: list[int] = []

    @app.task(serializer="pickle")
    def legacy() -> None:
        ran.append(1)

    result = legacy.delay()
    drain(app, worker, raise_on_failure=False)
    assert ran == []
    assert result.state == states.FAILURE
    assert isinstance(result.result, ContentDisallowed)
    assert "accept_content" in str(result.result)
    assert _raw_message(app, result.id) is not None


def test_pickle_works_when_accepted_as_in_celery_configs(
    tmp_path: Path, clock: FakeClock
) -> None:
    app = Liteq(
        "tasks",
        broker=f"sqlite:///{tmp_path}/p.db",
        task_serializer="pickle",
        clock=clock,
        set_as_current=False,
    )
    app.conf.update(CELERY_ACCEPT_CONTENT=["pickle"], CELERY_RESULT_SERIALIZER="pickle")

    @app.task(serializer="pickle")
    def add(x: Any, y: Any) -> Any:
        return x + y

    result = app.send_task(add.name, [1, 2])
    drain(app, Worker(app, pool="solo"))
    assert result.ready()
    assert result.result == 3
    content_type = app.storage.db.execute(
        "SELECT content_type FROM liteq_result WHERE task_id = ?", (result.id,)
    )[0][0]
    assert content_type == "application/x-python-serialize"
    # Values JSON cannot carry travel with pickle.
    thirds = add.apply((Fraction(1, 3), Fraction(2, 3))).get()
    assert thirds == Fraction(1)
    app.close()


def test_unserializable_return_value_ends_failure_encode_error(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def leaky() -> object:
        return object()

    result = leaky.delay()
    drain(app, worker, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert isinstance(result.result, EncodeError)


def test_unserializable_return_value_fails_the_chain_the_chord_and_calls_errbacks(
    app: Liteq, worker: Worker
) -> None:
    from liteq import chain, chord

    hooks: list[str] = []

    class Hooked(Task):
        def on_success(self, *args: Any) -> None:
            hooks.append("on_success")

        def on_failure(self, *args: Any) -> None:
            hooks.append("on_failure")

    @app.task(base=Hooked)
    def leaky(x: int) -> object:
        return object() if x else 0

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task
    def caught(task_id: str) -> str:
        return task_id

    errback = caught.s()
    called = errback.freeze()
    alone = leaky.apply_async((1,), link_error=errback)
    steps = chain(leaky.s(1), add.s(1), add.s(2)).apply_async()
    joined = chord([leaky.s(0), leaky.s(1)], total.s()).apply_async()
    drain(app, worker, raise_on_failure=False)

    assert alone.state == states.FAILURE
    assert isinstance(alone.result, EncodeError)
    assert (
        hooks.count("on_failure") == 3 and "on_success" in hooks
    )  # leaky(0) succeeded
    assert hooks.count("on_success") == 1
    assert called.get(timeout=0) == alone.id
    assert steps.state == states.FAILURE  # the last step, never run
    assert steps.parent.state == states.FAILURE
    assert joined.state == states.FAILURE
    assert type(joined.result).__name__ == "ChordError"


def test_unserializable_return_value_passed_to_the_next_step_fails_the_task(
    app: Liteq, worker: Worker
) -> None:
    from liteq import chain

    @app.task(ignore_result=True)
    def leaky() -> object:
        return object()

    @app.task
    def show(value: object) -> str:
        return repr(value)

    steps = chain(leaky.s(), show.s()).apply_async()
    drain(app, worker, raise_on_failure=False)
    assert steps.state == states.FAILURE
    assert isinstance(steps.result, EncodeError)


@pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
def test_base_exceptions_raised_inside_a_task_end_failure(
    app: Liteq, worker: Worker, error: BaseException
) -> None:
    @app.task
    def exits() -> None:
        raise error

    result = exits.delay()
    drain(app, worker, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert type(result.result).__name__ == type(error).__name__
    # The caller gets an error, never an exit or an interrupt of its own.
    with pytest.raises(TaskError) as raised:
        result.get(timeout=0)
    assert type(raised.value.__cause__) is type(error)
    with pytest.raises(TaskError):
        exits.apply().get()


def test_ignore_stores_nothing_and_deletes_the_row(app: Liteq, worker: Worker) -> None:
    @app.task
    def skip() -> None:
        raise Ignore()

    result = skip.delay()
    drain(app, worker)
    assert app.storage.results.get(result.id) is None
    assert app.storage.broker.get_task_row(result.id) is None
    # Eagerly, as Celery's EagerResult: state IGNORED, get() gives None.
    eager = skip.apply()
    assert eager.state == states.IGNORED
    assert eager.get() is None


def test_reject_requeue_runs_the_task_again(app: Liteq, worker: Worker) -> None:
    attempts: list[int] = []

    @app.task(bind=True)
    def picky(self: Task) -> str:
        attempts.append(self.request.delivery_count)
        if len(attempts) == 1:
            raise Reject("not yet", requeue=True)
        return "accepted"

    result = picky.delay()
    drain(app, worker)
    assert attempts == [1, 2]
    assert result.get(timeout=1) == "accepted"


def test_reject_without_requeue_ends_rejected(app: Liteq, worker: Worker) -> None:
    @app.task
    def refuse() -> None:
        raise Reject("bad payload")

    result = refuse.delay()
    drain(app, worker)
    assert result.state == states.REJECTED


def test_hook_that_raises_does_not_change_the_outcome(
    app: Liteq, worker: Worker
) -> None:
    class Clumsy(Task):
        def on_success(self, *args: Any) -> None:
            raise RuntimeError("hook bug")

        def after_return(self, *args: Any) -> None:
            raise RuntimeError("hook bug")

    @app.task(base=Clumsy)
    def fine() -> int:
        return 7

    result = fine.delay()
    drain(app, worker)
    assert result.get(timeout=1) == 7


def test_execute_returns_an_outcome_with_an_unapplied_completion(
    app: Liteq,
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    message = Message(task=add.name, args=(2, 3))
    outcome = execute(app, None, message, hostname="h")
    assert isinstance(outcome, Outcome)
    assert (outcome.state, outcome.retval) == (states.SUCCESS, 5)
    assert outcome.completion.result is not None
    assert outcome.completion.result.status == states.SUCCESS
    assert app.storage.results.get(message.id) is None
    assert outcome.describe().startswith(f"Task {add.name}[{message.id}] succeeded")


def test_execute_of_an_expired_message_is_revoked_without_running(
    app: Liteq, clock: FakeClock
) -> None:
    ran: list[int] = []

    @app.task
    def job() -> None:
        ran.append(1)

    message = Message(task=job.name, expires=clock.now())
    outcome = execute(app, None, message)
    assert outcome.state == states.REVOKED
    assert ran == []
    assert "revoked" in outcome.describe()


def test_eager_apply_reports_failure_with_traceback(app: Liteq) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("eager boom")

    result = boom.apply()
    assert result.state == states.FAILURE
    assert result.failed()
    assert result.traceback is not None and "eager boom" in result.traceback
    with pytest.raises(ValueError):
        result.get()
    with pytest.raises(ValueError):
        boom.apply(throw=True)


def test_eager_results_round_trip_through_the_serializer_as_a_worker_gives_them(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def shaped() -> Any:
        return {"pair": (1, 2), 3: "three"}

    eager = shaped.apply().get()
    real = shaped.delay()
    drain(app, worker)
    assert eager == real.get(timeout=0) == {"pair": [1, 2], "3": "three"}
    app.conf.task_always_eager = True
    assert shaped.delay().get() == eager


def test_eager_apply_runs_link_callbacks(app: Liteq) -> None:
    seen: list[int] = []

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def record(value: int) -> None:
        seen.append(value)

    add.apply((1, 2), link=record.s())
    assert seen == [3]


def test_result_settings_changed_between_tasks_apply_to_the_next_result(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def echo(value: Any) -> Any:
        return value

    first = echo.delay(1)
    drain(app, worker)
    row = app.storage.results.get(first.id)
    assert (
        row is not None
        and row.args is None
        and row.content_type == ("application/json")
    )
    assert row.expires_at == row.date_done + 86400
    app.conf.result_extended = True
    app.conf.result_serializer = "pickle"
    app.conf.result_accept_content = ["json", "pickle"]
    app.conf.result_expires = 10
    second = echo.delay(2)
    drain(app, worker)
    row = app.storage.results.get(second.id)
    assert row is not None
    assert row.content_type == "application/x-python-serialize"
    assert row.args == b"[2]" and row.queue == "celery"
    assert row.expires_at == row.date_done + 10
    assert second.get(timeout=1) == 2


def test_signal_receivers_connected_between_tasks_see_the_next_task(
    app: Liteq, worker: Worker
) -> None:
    from liteq import signals

    @app.task
    def echo(value: Any) -> Any:
        return value

    echo.delay(1)
    drain(app, worker)
    seen: list[tuple[str, Any]] = []

    def prerun(**kw: Any) -> None:
        seen.append(("prerun", kw["args"]))

    def success(**kw: Any) -> None:
        seen.append(("success", kw["result"]))

    def postrun(**kw: Any) -> None:
        seen.append(("postrun", kw["state"]))

    signals.task_prerun.connect(prerun)
    signals.task_success.connect(success)
    signals.task_postrun.connect(postrun)
    try:
        echo.delay(2)
        drain(app, worker)
    finally:
        signals.task_prerun.disconnect(prerun)
        signals.task_success.disconnect(success)
        signals.task_postrun.disconnect(postrun)
    echo.delay(3)
    drain(app, worker)
    assert seen == [("prerun", (2,)), ("success", 2), ("postrun", states.SUCCESS)]


@pytest.mark.parametrize(
    "value", [0, -7, 2**70, "text", 'ünï "q"', "", None, True, 1.5, [1], {"a": 1}]
)
def test_result_rows_hold_what_encode_result_gives_in_every_field(
    app: Liteq, value: Any
) -> None:
    import dataclasses

    from liteq.storage import ResultRow

    app.conf.result_extended = True
    row = app.make_result_row(
        "tid",
        states.SUCCESS,
        value,
        name="tests.x",
        args=(1,),
        kwargs={"k": 2},
        queue="q",
        worker="w",
        retries=1,
        parent_id="p",
        root_id="r",
        group_id="g",
        children=["c"],
        now=100.0,
    )
    data, content_type = app.encode_result(value)
    expected = ResultRow(
        task_id="tid",
        status=states.SUCCESS,
        result=data,
        content_type=content_type,
        name="tests.x",
        args=b"[1]",
        kwargs=b'{"k":2}',
        queue="q",
        worker="w",
        retries=1,
        parent_id="p",
        root_id="r",
        group_id="g",
        children=["c"],
        date_done=100.0,
        expires_at=100.0 + 86400,
    )
    assert row == expected
    assert dataclasses.asdict(row) == dataclasses.asdict(expected)
    assert hash(row.task_id) and type(row) is ResultRow


def test_a_return_value_json_cannot_carry_still_ends_failure(app: Liteq) -> None:
    row = app.make_result_row("tid", states.SUCCESS, "\udc80 lone surrogate")
    assert row.status == states.FAILURE
    assert isinstance(app.decode_result_row(row)["result"], Exception)
