"""Chains, callbacks and errbacks, end to end through the worker's code path (``drain``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.canvas import chain, group
from liteq.execution import execute
from liteq.messages import Message
from liteq.result import AsyncResult, GroupResult
from liteq.testing import FakeClock, drain
from liteq.worker import Worker


@pytest.fixture
def t(app: Liteq) -> SimpleNamespace:
    calls: list[Any] = []

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="tasks.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="tasks.fail")
    def fail(*args: Any) -> None:
        raise ValueError("boom")

    @app.task(name="tasks.record")
    def record(*args: Any) -> Any:
        calls.append(("record", args))
        return args[0] if args else None

    @app.task(name="tasks.on_error")
    def on_error(request: Any, exc: BaseException, traceback: str | None) -> None:
        calls.append(("errback", request.id, type(exc).__name__, traceback is not None))

    @app.task(name="tasks.on_error_old")
    def on_error_old(task_id: str) -> None:
        calls.append(("old errback", task_id))

    @app.task(name="tasks.on_error_bound", bind=True)
    def on_error_bound(self: Any, task_id: str) -> None:
        calls.append(("bound errback", task_id))

    return SimpleNamespace(
        add=add,
        mul=mul,
        tsum=tsum,
        fail=fail,
        record=record,
        on_error=on_error,
        on_error_old=on_error_old,
        on_error_bound=on_error_bound,
        calls=calls,
    )


def queued_messages(app: Liteq) -> list[Message]:
    rows = app.storage.db.execute(
        "SELECT message, content_type FROM liteq_task ORDER BY id"
    )
    return [Message.decode(r[0], r[1]) for r in rows]


# -- chain ------------------------------------------------------------------------------


def test_chain_returns_the_last_result_with_parents_back_to_the_first(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (t.add.s(2, 2) | t.add.s(4) | t.add.s(8))()
    drain(app)
    assert result.get() == 16
    assert result.parent.get() == 8
    assert result.parent.parent.get() == 4
    assert result.parent.parent.parent is None


@pytest.mark.parametrize("how", ["call", "delay", "apply_async"])
def test_chain_runs_however_it_is_called(
    app: Liteq, t: SimpleNamespace, how: str
) -> None:
    c = chain(t.add.s(2), t.mul.s(10))
    result = {
        "call": c,
        "delay": c.delay,
        "apply_async": lambda x: c.apply_async((x,)),
    }[how](3)
    drain(app)
    assert result.get() == 50


def test_only_the_first_step_is_queued_and_carries_the_rest_reversed(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (t.add.s(1, 1) | t.add.s(2) | t.mul.s(3))()
    [first] = queued_messages(app)
    assert first.task == "tasks.add"
    assert [step["task"] for step in first.chain or []] == ["tasks.mul", "tasks.add"]
    assert first.chain[0]["options"]["task_id"] == result.id
    drain(app)
    assert result.get() == 12


def test_next_step_is_enqueued_only_with_the_ack_of_the_previous_one(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    (t.add.s(1, 1) | t.add.s(2))()
    [claimed] = app.storage.claim("w", None, 1, clock.time(), 60)
    outcome = execute(app, claimed)
    assert [m.task for m in queued_messages(app)] == ["tasks.add"]
    stale = claimed._replace(claim_token=claimed.claim_token + 1)
    outcome.completion.claimed = stale
    assert app.storage.complete([outcome.completion], clock.time()) == [False]
    assert len(queued_messages(app)) == 1  # the lease was lost: nothing enqueued
    outcome.completion.claimed = claimed
    assert app.storage.complete([outcome.completion], clock.time()) == [True]
    [nxt] = queued_messages(app)
    assert (nxt.task, nxt.args, nxt.parent_id) == ("tasks.add", (2, 2), claimed.task_id)


def test_chain_options_apply_to_its_first_step(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    result = (t.add.s(1, 1) | t.add.s(2)).apply_async(countdown=60)
    drain(app)
    assert result.parent.state == states.PENDING
    clock.advance(61)
    drain(app)
    assert result.get() == 4


def test_immutable_step_ignores_the_previous_result(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (t.add.s(1, 1) | t.add.si(5, 5) | t.add.s(1))()
    drain(app)
    assert result.get() == 11


def test_nested_chains_run_flattened(app: Liteq, t: SimpleNamespace) -> None:
    result = chain(t.add.s(1, 1), chain(t.add.s(1), t.add.s(1)), t.add.s(1))()
    drain(app)
    assert result.get() == 5


def test_chain_ending_in_a_group_returns_the_group_result(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (t.add.s(1, 1) | group(t.add.s(10), t.add.s(20)))()
    drain(app)
    assert isinstance(result, GroupResult)
    assert result.get() == [12, 22]
    assert result.parent.get() == 2


def test_group_followed_by_a_task_in_a_chain_runs_as_a_chord(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (
        t.add.s(1, 1) | group(t.add.s(1), t.add.s(2)) | t.tsum.s() | t.add.s(100)
    )()
    drain(app)
    assert result.get() == 107
    header = result.parent.parent
    assert isinstance(header, GroupResult)
    assert header.get() == [3, 4]
    assert header.parent.get() == 2


def test_chain_step_records_the_next_step_as_its_child(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (t.add.s(1, 1) | t.add.s(2))()
    drain(app)
    first = result.parent
    assert [c.id for c in first.children] == [result.id]
    assert result.parent_id == first.id
    assert result.root_id == first.id


def test_chain_result_reports_progress_and_the_end_to_on_message(
    app: Liteq, t: SimpleNamespace
) -> None:
    @app.task(name="tasks.progress", bind=True)
    def progress(self: Any, x: int) -> int:
        for done in (1, 2):
            self.update_state(state="PROGRESS", meta={"done": done})
        return x * 2

    result = (t.add.s(1, 1) | progress.s())()
    drain(app)
    seen: list[dict[str, Any]] = []
    assert result.get(on_message=seen.append) == 4
    assert [(m["status"], m["result"]) for m in seen] == [
        ("PROGRESS", {"done": 1}),
        ("PROGRESS", {"done": 2}),
        (states.SUCCESS, 4),
    ]


# -- a failure stops the chain ---------------------------------------------------------------


def test_failure_stops_the_chain_and_runs_the_failing_steps_errback(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (t.add.s(1, 1) | t.fail.s().on_error(t.on_error.s()) | t.record.s())()
    drain(app, raise_on_failure=False)
    failing = result.parent
    assert t.calls == [("errback", failing.id, "ValueError", True)]
    assert failing.state == states.FAILURE
    # The step that will never run fails too, so waiting on the chain ends.
    assert result.state == states.FAILURE
    with pytest.raises(ValueError, match="boom"):
        result.get()


def test_chain_link_error_runs_once_for_the_step_that_failed(
    app: Liteq, t: SimpleNamespace
) -> None:
    c = t.add.s(1, 1) | t.fail.s() | t.add.s(3)
    c.link_error(t.on_error_old.s())
    result = c()
    drain(app, raise_on_failure=False)
    assert t.calls == [("old errback", result.parent.id)]


def test_new_style_errback_runs_in_the_worker_and_old_style_is_enqueued(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = t.fail.apply_async(
        link_error=[t.on_error.s(), t.on_error_old.s(), t.on_error_bound.s()]
    )
    worker = Worker(app, hostname="w@localhost", pool="solo")
    [claimed] = worker.claim(1)
    outcome = worker.execute(claimed)
    # The new-style errback already ran; the others are tasks to enqueue.
    assert t.calls == [("errback", result.id, "ValueError", True)]
    assert sorted(r.name for r in outcome.completion.followups) == [
        "tasks.on_error_bound",
        "tasks.on_error_old",
    ]
    worker.finish([(claimed, outcome)])
    drain(app)
    assert sorted(t.calls[1:]) == [
        ("bound errback", result.id),
        ("old errback", result.id),
    ]


def test_an_errback_that_raises_does_not_hide_the_tasks_failure(
    app: Liteq, t: SimpleNamespace
) -> None:
    @app.task(name="tasks.broken_errback")
    def broken(request: Any, exc: BaseException, traceback: str | None) -> None:
        raise RuntimeError("errback broke")

    result = t.fail.apply_async(link_error=broken.s())
    drain(app, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert isinstance(result.result, ValueError)


# -- callbacks ----------------------------------------------------------------------------


def test_link_runs_every_callback_with_the_result(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = t.add.apply_async((2, 3), link=[t.record.s(), t.mul.s(10)])
    drain(app)
    assert result.get() == 5
    assert ("record", (5,)) in t.calls
    values = sorted(child.get() for child in result.children)
    assert values == [5, 50]


def test_a_callback_can_be_a_whole_workflow(app: Liteq, t: SimpleNamespace) -> None:
    result = t.add.apply_async((1, 1), link=t.add.s(1) | t.mul.s(10))
    drain(app)
    [child] = result.children
    assert AsyncResult(child.id, app=app).get() == 3
    assert (
        app.storage.db.query_one(
            "SELECT COUNT(*) FROM liteq_result WHERE name = 'tasks.mul' AND status = 'SUCCESS'"
        )[0]
        == 1
    )


def test_retries_keep_the_links(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    attempts: list[int] = []

    @app.task(name="tasks.flaky", bind=True, default_retry_delay=5)
    def flaky(self: Any, x: int) -> int:
        attempts.append(self.request.retries)
        if self.request.retries < 1:
            raise self.retry()
        return x

    result = flaky.apply_async((7,), link=t.record.s())
    drain(app)
    assert result.state == states.RETRY
    clock.advance(6)
    drain(app)
    assert attempts == [0, 1]
    assert result.get() == 7
    assert t.calls == [("record", (7,))]


def test_a_callback_that_cannot_be_sent_fails_visibly_without_losing_the_ack(
    app: Liteq, t: SimpleNamespace
) -> None:
    @app.task(name="tasks.make_set")
    def make_set() -> list[int]:
        return [1]

    callback = t.record.s().set(serializer="no-such-serializer")
    frozen = callback.freeze()
    result = make_set.apply_async(link=callback)
    drain(app, raise_on_failure=False)
    assert result.get() == [1]
    assert AsyncResult(frozen.id, app=app).state == states.FAILURE


# -- the seed document's example (section 2.5) -----------------------------------------------


@pytest.fixture
def pages(app: Liteq) -> SimpleNamespace:
    """Stand-ins for ``myhttplib.get``, ``myparser.parse_document`` and ``PageInfo``."""
    store: dict[str, Any] = {}

    @app.task(name="pages.fetch_page")
    def fetch_page(url: str) -> str:
        return f"<html>{url}</html>"

    @app.task(name="pages.parse_page")
    def parse_page(page: str) -> dict[str, int]:
        return {"length": len(page)}

    @app.task(name="pages.store_page_info", ignore_result=True)
    def store_page_info(info: dict[str, int], url: str) -> None:
        store[url] = info

    def update_page_info(url: str) -> Any:
        # fetch_page -> parse_page -> store_page
        c = fetch_page.s(url) | parse_page.s() | store_page_info.s(url)
        return c()

    return SimpleNamespace(
        fetch_page=fetch_page,
        parse_page=parse_page,
        store_page_info=store_page_info,
        update_page_info=update_page_info,
        store=store,
    )


def test_seed_update_page_info_chain_fetches_parses_and_stores(
    app: Liteq, pages: SimpleNamespace
) -> None:
    result = pages.update_page_info("http://example.com")
    drain(app)
    assert pages.store == {"http://example.com": {"length": 31}}
    assert result.parent.get() == {"length": 31}


def test_seed_link_example_gives_the_fetched_page_to_both_callbacks(
    app: Liteq, pages: SimpleNamespace
) -> None:
    url = "http://example.com"
    result = pages.fetch_page.apply_async(
        (url,), link=[pages.parse_page.s(), pages.store_page_info.s(url)]
    )
    drain(app)
    assert result.get() == f"<html>{url}</html>"
    # Both callbacks got fetch_page's result (link is not a chain).
    assert pages.store == {url: f"<html>{url}</html>"}


def test_seed_blocking_version_is_refused_inside_a_task(
    app: Liteq, pages: SimpleNamespace
) -> None:
    @app.task(name="pages.update_page_info_wrong")
    def update_page_info_wrong(url: str) -> None:
        page = pages.fetch_page.delay(url).get()
        pages.parse_page.delay(page)

    result = update_page_info_wrong.delay("http://example.com")
    drain(app, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert "Never call result.get() within a task" in str(result.result)
