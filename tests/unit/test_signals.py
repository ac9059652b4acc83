"""Signals fire with Celery's names and arguments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from liteq import Liteq, Task, signals, states
from liteq.testing import FakeClock, drain
from liteq.worker import Worker


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Connect a recorder to every task signal; disconnect afterwards."""
    seen: list[tuple[str, dict[str, Any]]] = []
    names = [
        "before_task_publish",
        "after_task_publish",
        "task_prerun",
        "task_postrun",
        "task_success",
        "task_failure",
        "task_retry",
        "task_revoked",
        "task_unknown",
        "task_rejected",
    ]
    receivers = []
    for name in names:

        def receiver(sender: Any = None, _name: str = name, **kwargs: Any) -> None:
            seen.append((_name, {"sender": sender, **kwargs}))

        getattr(signals, name).connect(receiver, dispatch_uid=("test", name))
        receivers.append(receiver)
    yield seen
    for name in names:
        getattr(signals, name).disconnect(dispatch_uid=("test", name))


def _names(seen: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in seen]


def test_publish_signals_fire_around_delay(app: Liteq, received: Any) -> None:
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(1, 2)
    assert _names(received) == ["before_task_publish", "after_task_publish"]
    before = received[0][1]
    assert before["sender"] == "tasks.add"
    assert before["headers"]["id"] == result.id
    assert before["headers"]["task"] == "tasks.add"
    assert before["body"][0] == [1, 2]
    assert before["routing_key"] == "celery"
    assert received[1][1]["headers"]["id"] == result.id


def test_publish_signals_fire_for_every_task_a_group_writes(
    app: Liteq, received: Any
) -> None:
    from liteq import chain, group

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    result = group(add.s(i, i) for i in range(3)).apply_async()
    ids = [r.id for r in result.results]
    before = [kw for name, kw in received if name == "before_task_publish"]
    after = [kw for name, kw in received if name == "after_task_publish"]
    assert [kw["headers"]["id"] for kw in before] == ids
    assert [kw["headers"]["id"] for kw in after] == ids
    assert [kw["body"][0] for kw in before] == [[0, 0], [1, 1], [2, 2]]
    assert all(kw["headers"]["group"] == result.id for kw in before)

    received.clear()
    # A chain publishes its first task now, the next ones as each finishes.
    first = chain(add.s(1, 1), add.s(2)).apply_async()
    assert _names(received) == ["before_task_publish", "after_task_publish"]
    assert received[0][1]["headers"]["id"] == first.parent.id


@pytest.fixture
def tracing() -> Iterator[list[dict[str, Any]]]:
    """A before_task_publish receiver that adds a header, as tracing integrations do."""
    seen_after: list[dict[str, Any]] = []

    def inject(headers: dict[str, Any], body: Any, **kwargs: Any) -> None:
        headers["traceparent"] = "00-trace-span-01"

    def record(headers: dict[str, Any], **kwargs: Any) -> None:
        seen_after.append(headers)

    signals.before_task_publish.connect(inject, dispatch_uid=("test", "inject"))
    signals.after_task_publish.connect(record, dispatch_uid=("test", "record"))
    yield seen_after
    signals.before_task_publish.disconnect(dispatch_uid=("test", "inject"))
    signals.after_task_publish.disconnect(dispatch_uid=("test", "record"))


def test_headers_a_before_publish_receiver_adds_reach_the_task_request(
    app: Liteq, worker: Worker, tracing: list[dict[str, Any]]
) -> None:
    from liteq import group

    seen: list[tuple[Any, Any]] = []

    @app.task(bind=True)
    def traced(self: Task, i: int) -> None:
        seen.append((self.request.get("traceparent"), self.request.headers))

    traced.delay(1)
    group(traced.s(2), traced.s(3)).apply_async()
    drain(app, worker)
    expected = ("00-trace-span-01", {"traceparent": "00-trace-span-01"})
    assert seen == [expected] * 3
    # after_task_publish sees the message as it was written.
    assert [h["traceparent"] for h in tracing] == ["00-trace-span-01"] * 3


def test_publish_signals_fire_for_every_task_enqueue_many_writes(
    app: Liteq, received: Any
) -> None:
    @app.task(name="tasks.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    results = app.enqueue_many(add, [(1, 2), (3, 4)])
    results += app.enqueue_many(add, [((5,), {"y": 6})], kwargs=True)
    ids = [r.id for r in results]
    assert _names(received) == ["before_task_publish"] * 2 + [
        "after_task_publish"
    ] * 2 + ["before_task_publish", "after_task_publish"]
    before = [kw for name, kw in received if name == "before_task_publish"]
    after = [kw for name, kw in received if name == "after_task_publish"]
    assert [kw["headers"]["id"] for kw in before] == ids
    assert [kw["headers"]["id"] for kw in after] == ids
    assert [kw["body"][:2] for kw in before] == [
        [[1, 2], {}],
        [[3, 4], {}],
        [[5], {"y": 6}],
    ]
    assert all(kw["sender"] == "tasks.add" for kw in before + after)


def test_headers_a_receiver_adds_reach_the_tasks_enqueue_many_writes(
    app: Liteq, worker: Worker, tracing: list[dict[str, Any]]
) -> None:
    seen: list[tuple[int, Any]] = []

    @app.task(bind=True)
    def traced(self: Task, i: int, j: int = 0) -> None:
        seen.append((i + j, self.request.get("traceparent")))

    # Positional calls share one row template; calls with kwargs do not.
    app.enqueue_many(traced, [(1,), (2,)])
    app.enqueue_many(traced, [((3,), {"j": 1})], kwargs=True)
    drain(app, worker)
    assert sorted(seen) == [
        (1, "00-trace-span-01"),
        (2, "00-trace-span-01"),
        (4, "00-trace-span-01"),
    ]
    assert [h["traceparent"] for h in tracing] == ["00-trace-span-01"] * 3


def test_a_receiver_that_leaves_an_unserializable_header_fails_enqueue_many_whole(
    app: Liteq,
) -> None:
    from liteq.exceptions import EncodeError

    @app.task
    def noop(i: int) -> int:
        return i

    def spoil(headers: dict[str, Any], **kwargs: Any) -> None:
        headers["bad"] = object()

    signals.before_task_publish.connect(spoil, dispatch_uid=("test", "spoil"))
    try:
        with pytest.raises(EncodeError):
            app.enqueue_many(noop, [(1,), (2,)])
    finally:
        signals.before_task_publish.disconnect(dispatch_uid=("test", "spoil"))
    assert app.storage.db.query_one("SELECT count(*) FROM liteq_task")[0] == 0


def test_custom_headers_are_request_attributes_but_never_replace_a_field(
    app: Liteq, worker: Worker
) -> None:
    seen: list[tuple[Any, ...]] = []

    @app.task(bind=True)
    def show(self: Task) -> None:
        request = self.request
        seen.append(
            (request.get("tenant"), request.tenant, request.hostname, request.headers)
        )

    headers = {"tenant": "acme", "hostname": "spoofed"}
    show.apply_async(headers=headers)
    drain(app, worker)
    app.conf.task_always_eager = True
    show.apply_async(headers=headers)
    assert [s[:2] + (s[3],) for s in seen] == [("acme", "acme", headers)] * 2
    assert "spoofed" not in [s[2] for s in seen]


def test_success_signals_fire_in_order(
    app: Liteq, worker: Worker, received: Any
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    result = add.delay(1, 2)
    received.clear()
    drain(app, worker)
    assert _names(received) == ["task_prerun", "task_success", "task_postrun"]
    prerun = received[0][1]
    assert (prerun["sender"], prerun["task_id"], prerun["args"]) == (
        add,
        result.id,
        (1, 2),
    )
    assert received[1][1]["result"] == 3
    postrun = received[2][1]
    assert (postrun["retval"], postrun["state"]) == (3, states.SUCCESS)


def test_failure_signal_carries_the_exception(
    app: Liteq, worker: Worker, received: Any
) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("no")

    result = boom.delay()
    received.clear()
    drain(app, worker, raise_on_failure=False)
    assert _names(received) == ["task_prerun", "task_failure", "task_postrun"]
    failure = received[1][1]
    assert failure["task_id"] == result.id
    assert isinstance(failure["exception"], ValueError)
    assert "ValueError" in str(failure["einfo"])
    assert received[2][1]["state"] == states.FAILURE


def test_retry_signal_carries_request_and_reason(
    app: Liteq, worker: Worker, received: Any
) -> None:
    @app.task(bind=True)
    def flaky(self: Task) -> None:
        raise self.retry(exc=KeyError("k"), countdown=5)

    result = flaky.delay()
    received.clear()
    drain(app, worker)
    # The retry is published first, as Celery's ``retry`` calls apply_async.
    assert _names(received) == [
        "task_prerun",
        "before_task_publish",
        "after_task_publish",
        "task_retry",
        "task_postrun",
    ]
    retry = received[3][1]
    assert retry["request"].id == result.id
    assert isinstance(retry["reason"], KeyError)


def test_revoked_signal_fires_for_revoke_and_for_expiry(
    app: Liteq, worker: Worker, clock: FakeClock, received: Any
) -> None:
    @app.task
    def job() -> None:
        pass

    queued = job.delay()
    received.clear()
    queued.revoke()
    assert _names(received) == ["task_revoked"]
    assert received[0][1]["task_id"] == queued.id
    # The task and a request, as Celery gives them (sender filters match).
    assert received[0][1]["sender"] is job
    assert received[0][1]["request"].id == queued.id
    # Revoked before it was sent: the worker that discards it says so.
    app.control.revoke("known-id")
    received.clear()
    job.apply_async(task_id="known-id")
    drain(app, worker)
    revoked = [kw for name, kw in received if name == "task_revoked"]
    assert [(kw["sender"], kw["request"].id) for kw in revoked] == [(job, "known-id")]
    expired = job.apply_async(expires=1)
    clock.advance(2)
    received.clear()
    drain(app, worker)
    assert _names(received) == ["task_revoked"]
    assert received[0][1]["expired"] is True
    assert received[0][1]["request"].id == expired.id


def test_unknown_task_signal_names_the_task(
    app: Liteq, worker: Worker, received: Any
) -> None:
    app.send_task("nobody.has.this")
    received.clear()
    drain(app, worker, raise_on_failure=False)
    assert _names(received) == ["task_unknown"]
    assert received[0][1]["name"] == "nobody.has.this"


def test_signal_sender_filter_and_weak_receivers() -> None:
    sig = signals.Signal("custom")
    calls: list[Any] = []

    def for_a(sender: Any, **kwargs: Any) -> None:
        calls.append(("a", sender))

    sig.connect(for_a, sender="a")
    sig.send(sender="b")
    sig.send(sender="a")
    assert calls == [("a", "a")]

    class Holder:
        def method(self, sender: Any, **kwargs: Any) -> None:
            calls.append(("weak", sender))

    holder = Holder()
    sig.connect(holder.method, weak=True)
    sig.send(sender="a")
    del holder
    sig.send(sender="a")
    assert calls.count(("weak", "a")) == 1
    assert sig.disconnect(for_a, sender="a")
    assert not sig.disconnect(for_a, sender="a")


def test_signal_receiver_errors_are_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sig = signals.Signal("custom")

    @sig.connect
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    responses = sig.send(sender=None)
    assert isinstance(responses[0][1], RuntimeError)
    assert "receiver bug" in caplog.text
    assert repr(sig) == "<Signal: custom>"


def test_task_received_fires_when_the_worker_takes_a_task_before_it_runs(
    app: Liteq, worker: Worker
) -> None:
    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    order: list[tuple[Any, ...]] = []

    def on_received(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
        order.append(
            (
                "received",
                request.id,
                request.name,
                request.task_name,
                request.args,
                request.delivery_info["queue"],
                sender is worker,
            )
        )
        raise RuntimeError("a broken receiver is logged, the task runs")

    def on_prerun(sender: Any = None, task_id: Any = None, **kwargs: Any) -> None:
        order.append(("prerun", task_id))

    signals.task_received.connect(on_received, dispatch_uid="test-received")
    signals.task_prerun.connect(on_prerun, dispatch_uid="test-prerun")
    try:
        result = add.delay(1, 2)
        revoked = add.delay(0, 0)
        revoked.revoke()
        drain(app, worker)
    finally:
        signals.task_received.disconnect(dispatch_uid="test-received")
        signals.task_prerun.disconnect(dispatch_uid="test-prerun")
    # A revoked task is set aside before it counts as received, as in Celery.
    assert order == [
        ("received", result.id, add.name, add.name, (1, 2), "celery", True),
        ("prerun", result.id),
    ]
    assert result.get(timeout=0) == 3
    assert revoked.state == states.REVOKED


def test_callbacks_chain_steps_and_errbacks_a_worker_writes_are_published_too(
    app: Liteq, worker: Worker, tracing: list[dict[str, Any]]
) -> None:
    from liteq import chain

    seen: list[tuple[str, Any]] = []

    @app.task(bind=True)
    def step(self: Task, x: int) -> int:
        seen.append((self.request.task, self.request.get("traceparent")))
        return x + 1

    @app.task(bind=True)
    def boom(self: Task) -> None:
        raise ValueError("boom")

    @app.task(bind=True)
    def on_error(self: Task, task_id: str) -> None:
        seen.append((self.request.task, self.request.get("traceparent")))

    chain(step.s(1), step.s()).apply_async(link=step.s())
    boom.apply_async(link_error=on_error.si("x"))
    tracing.clear()
    drain(app, worker, raise_on_failure=False)
    # Every task the worker wrote carries the header, as one sent by .delay().
    assert sorted(seen) == sorted(
        [(step.name, "00-trace-span-01")] * 3 + [(on_error.name, "00-trace-span-01")]
    )
    assert len(tracing) == 3  # the chain's second step, its callback, the errback


def test_tasks_beat_sends_are_published(
    app: Liteq, clock: FakeClock, tracing: list[dict[str, Any]]
) -> None:
    from liteq.beat import Beat

    @app.task
    def tick() -> None:
        pass

    app.conf.beat_schedule = {"tick": {"task": tick.name, "schedule": 10.0}}
    beat = Beat(app, lease_ttl=0)
    beat.sync_config()
    clock.advance(10)
    beat.tick()
    (message,) = app.storage.db.execute("SELECT message FROM liteq_task")[0]
    assert b'"traceparent":"00-trace-span-01"' in message
    assert [h["task"] for h in tracing] == [tick.name]


def test_a_retry_is_published_as_celerys_retry_publishes(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    published: list[int] = []

    def stamp(headers: dict[str, Any], **kwargs: Any) -> None:
        published.append(headers["retries"])
        headers["published"] = len(published)

    seen: list[tuple[int, Any]] = []

    @app.task(bind=True, default_retry_delay=0)
    def flaky(self: Task) -> str:
        seen.append((self.request.retries, self.request.get("published")))
        if self.request.retries < 2:
            raise self.retry()
        return "done"

    signals.before_task_publish.connect(stamp, dispatch_uid=("test", "stamp"))
    try:
        result = flaky.delay()
        drain(app, worker)
    finally:
        signals.before_task_publish.disconnect(dispatch_uid=("test", "stamp"))
    assert result.get(timeout=0) == "done"
    # The first publish, then each retry's: each run sees its own.
    assert published == [0, 1, 2]
    assert seen == [(0, 1), (1, 2), (2, 3)]


def test_task_failure_is_sent_for_a_task_whose_process_was_lost(
    app: Liteq, worker: Worker
) -> None:
    from liteq.exceptions import WorkerLostError
    from liteq.execution import end_claimed

    @app.task
    def doomed() -> None: ...

    seen: list[tuple[Any, str, str]] = []

    def receiver(sender: Any = None, **kwargs: Any) -> None:
        seen.append((sender, kwargs["task_id"], type(kwargs["exception"]).__name__))

    signals.task_failure.connect(receiver)
    try:
        result = doomed.delay()
        (claimed,) = worker.claim(1)
        outcome = end_claimed(app, claimed, WorkerLostError("the process died"))
    finally:
        signals.task_failure.disconnect(receiver)
    assert outcome.state == "FAILURE"
    assert seen == [(doomed, result.id, "WorkerLostError")]


def test_after_task_publish_waits_for_the_commit_and_skips_what_was_not_queued(
    app: Liteq,
) -> None:
    @app.task
    def job(x: int) -> int:
        return x

    published: list[str] = []

    def receiver(sender: Any = None, headers: Any = None, **kwargs: Any) -> None:
        published.append(headers["id"])

    signals.after_task_publish.connect(receiver)
    try:
        with pytest.raises(RuntimeError):
            with app.transaction():
                job.delay(1)
                raise RuntimeError("rolled back")
        assert published == []
        with app.transaction():
            kept = job.delay(2)
            assert published == []  # not sent (committed) yet
        assert published == [kept.id]
        first = job.apply_async((3,), unique_key="once")
        job.apply_async((3,), unique_key="once")  # not queued again
    finally:
        signals.after_task_publish.disconnect(receiver)
    assert published == [kept.id, first.id]
