"""End hooks run after the task's outcome is stored, as in Celery.

``on_success``, ``on_failure``, ``on_retry``, ``after_return`` and the
``task_success``, ``task_failure``, ``task_retry`` and ``task_postrun``
receivers see the task's own result in the database; a task without any of
them is stored with the worker's batch, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from liteq import Ignore, Liteq, Task, signals, states
from liteq.execution import execute
from liteq.storage import Completion
from liteq.testing import drain, wait_until
from liteq.worker import Worker


@pytest.fixture(params=["solo", "threads"])
def any_worker(request: pytest.FixtureRequest, app: Liteq) -> Iterator[Worker]:
    worker = Worker(app, hostname="hooks@localhost", pool=request.param, concurrency=2)
    yield worker
    worker.pool.stop()
    worker.pool.join(10.0)


def _witness(app: Liteq, seen: list[tuple[str, str]]) -> type[Task]:
    """A base class whose end hooks record the state stored for their task."""

    def state(task_id: str) -> str:
        return app.AsyncResult(task_id).state

    class Witness(Task):
        def on_success(self, retval: Any, task_id: str, *args: Any) -> None:
            seen.append(("on_success", state(task_id)))

        def on_failure(self, exc: BaseException, task_id: str, *args: Any) -> None:
            seen.append(("on_failure", state(task_id)))

        def on_retry(self, exc: BaseException, task_id: str, *args: Any) -> None:
            seen.append(("on_retry", state(task_id)))

        def after_return(self, status: str, retval: Any, task_id: str, *args: Any) -> None:
            seen.append(("after_return", state(task_id)))

    return Witness


def _drain_all(app: Liteq, worker: Worker, count: int) -> None:
    """Step ``worker`` until it has processed ``count`` tasks (threads run meanwhile)."""
    done = 0

    def all_done() -> bool:
        nonlocal done
        done += drain(app, worker, raise_on_failure=False)
        return done >= count

    wait_until(all_done, timeout=10, message=f"{count} tasks were not all processed")


def test_on_success_and_after_return_see_the_result_stored(
    app: Liteq, any_worker: Worker
) -> None:
    seen: list[tuple[str, str]] = []

    @app.task(base=_witness(app, seen))
    def fine(x: int) -> int:
        return x

    results = [fine.delay(i) for i in range(3)]
    _drain_all(app, any_worker, 3)
    assert [r.get(timeout=0) for r in results] == [0, 1, 2]
    assert sorted(seen) == sorted(
        [("on_success", states.SUCCESS), ("after_return", states.SUCCESS)] * 3
    )


def test_on_failure_and_on_retry_see_their_state_stored(
    app: Liteq, any_worker: Worker
) -> None:
    seen: list[tuple[str, str]] = []

    @app.task(base=_witness(app, seen))
    def broken() -> None:
        raise ValueError("no")

    @app.task(base=_witness(app, seen), bind=True, max_retries=1)
    def flaky(self: Task) -> None:
        raise self.retry(countdown=3600)

    failed, retried = broken.delay(), flaky.delay()
    _drain_all(app, any_worker, 2)
    assert failed.state == states.FAILURE and retried.state == states.RETRY
    assert sorted(seen) == sorted(
        [
            ("on_failure", states.FAILURE),
            ("after_return", states.FAILURE),
            ("on_retry", states.RETRY),
            ("after_return", states.RETRY),
        ]
    )


def test_signal_receivers_see_the_result_stored(
    app: Liteq, any_worker: Worker
) -> None:
    seen: list[tuple[str, str]] = []

    @app.task
    def plain(x: int) -> int:
        return x

    def success(sender: Any, result: Any, **kwargs: Any) -> None:
        seen.append(("task_success", plain.AsyncResult(sender.request.id).state))

    def postrun(sender: Any, task_id: str, **kwargs: Any) -> None:
        seen.append(("task_postrun", plain.AsyncResult(task_id).state))

    signals.task_success.connect(success)
    signals.task_postrun.connect(postrun)
    try:
        result = plain.delay(7)
        _drain_all(app, any_worker, 1)
    finally:
        signals.task_success.disconnect(success)
        signals.task_postrun.disconnect(postrun)
    assert result.get(timeout=0) == 7
    assert seen == [
        ("task_success", states.SUCCESS),
        ("task_postrun", states.SUCCESS),
    ]


def _one_claim(app: Liteq) -> Any:
    (claimed,) = app.storage.claim("w", [app.conf.task_default_queue], 1, app.clock.time(), 60)
    return claimed


class _Store:
    """A ``store`` for execute(): records when it was called, applies nothing."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.completions: list[Completion] = []

    def __call__(self, completion: Completion) -> bool:
        self.events.append("stored")
        self.completions.append(completion)
        return True


def test_a_task_without_end_hooks_is_left_to_the_batch(app: Liteq) -> None:
    @app.task
    def plain() -> str:
        return "ok"

    plain.delay()
    events: list[str] = []
    outcome = execute(app, _one_claim(app), store=_Store(events))
    assert outcome.state == states.SUCCESS
    assert events == [] and outcome.acked is None


def test_the_outcome_is_stored_once_right_before_the_first_end_hook(app: Liteq) -> None:
    events: list[str] = []

    class Hooked(Task):
        def on_success(self, *args: Any) -> None:
            events.append("on_success")

        def after_return(self, *args: Any) -> None:
            events.append("after_return")

    @app.task(base=Hooked)
    def hooked() -> str:
        events.append("ran")
        return "ok"

    hooked.delay()
    claimed = _one_claim(app)
    store = _Store(events)
    outcome = execute(app, claimed, store=store)
    assert events == ["ran", "stored", "on_success", "after_return"]
    assert outcome.acked is True
    (completion,) = store.completions
    assert completion is outcome.completion and completion.claimed is claimed
    assert completion.result is not None and completion.result.status == states.SUCCESS


def test_an_end_without_its_own_hook_is_stored_before_after_return(app: Liteq) -> None:
    events: list[str] = []

    class AfterOnly(Task):
        def after_return(self, status: str, *args: Any) -> None:
            events.append(f"after_return {status}")

    @app.task(base=AfterOnly)
    def ignored() -> None:
        raise Ignore()

    ignored.delay()
    outcome = execute(app, _one_claim(app), store=_Store(events))
    assert outcome.state == states.IGNORED
    assert events == ["stored", f"after_return {states.IGNORED}"]
    assert outcome.acked is True


def test_a_failed_early_store_leaves_the_ack_to_the_worker(app: Liteq) -> None:
    events: list[str] = []

    class Hooked(Task):
        def on_success(self, *args: Any) -> None:
            events.append("on_success")

    @app.task(base=Hooked)
    def hooked() -> str:
        return "ok"

    def failing(completion: Completion) -> None:
        events.append("store failed")
        return None

    hooked.delay()
    outcome = execute(app, _one_claim(app), store=failing)
    assert events == ["store failed", "on_success"]
    assert outcome.acked is None  # the worker acks it with its batch


def test_the_request_does_not_show_the_workers_store(app: Liteq) -> None:
    shown: list[dict[str, Any]] = []

    class Hooked(Task):
        def on_success(self, *args: Any) -> None:
            shown.append(self.request.as_dict())

    @app.task(base=Hooked)
    def hooked() -> str:
        return "ok"

    hooked.delay()
    execute(app, _one_claim(app), store=_Store([]))
    assert shown and "_store_first" not in shown[0]
