"""Groups, chords, maps and chunks, end to end through the worker's code path (``drain``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.canvas import chord, group, xmap
from liteq.exceptions import ChordError
from liteq.result import GroupResult
from liteq.testing import FakeClock, drain
from liteq.worker import Worker


@pytest.fixture
def t(app: Liteq) -> SimpleNamespace:
    calls: Counter[str] = Counter()
    errors: list[Any] = []

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.tsum")
    def tsum(values: list[int]) -> int:
        calls["tsum"] += 1
        return sum(values)

    @app.task(name="tasks.collect")
    def collect(values: list[Any]) -> list[Any]:
        calls["collect"] += 1
        return values

    @app.task(name="tasks.fail")
    def fail(*args: Any) -> None:
        raise ValueError("boom")

    @app.task(name="tasks.on_error")
    def on_error(request: Any, exc: BaseException, traceback: str | None) -> None:
        errors.append(("new", request.id, exc))

    @app.task(name="tasks.on_error_old")
    def on_error_old(task_id: str) -> None:
        errors.append(("old", task_id))

    return SimpleNamespace(
        add=add,
        tsum=tsum,
        collect=collect,
        fail=fail,
        on_error=on_error,
        on_error_old=on_error_old,
        calls=calls,
        errors=errors,
    )


def commits(app: Liteq) -> list[int]:
    """Count this process's commits from now on."""
    count = [0]

    def hook() -> None:
        count[0] += 1

    app.storage.db.add_commit_hook(hook)
    return count


def queued(app: Liteq) -> int:
    return int(app.storage.db.query_one("SELECT COUNT(*) FROM liteq_task")[0])


# -- group --------------------------------------------------------------------------------


def test_group_returns_results_in_order(app: Liteq, t: SimpleNamespace) -> None:
    result = group(t.add.s(i, i) for i in range(10))()
    drain(app)
    assert isinstance(result, GroupResult)
    assert result.get() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert result.join() == result.get()


def test_group_of_n_tasks_is_published_in_one_transaction(
    app: Liteq, t: SimpleNamespace
) -> None:
    app.storage.db.connection()
    count = commits(app)
    group(t.add.s(i, i) for i in range(50))()
    assert count[0] == 1
    assert queued(app) == 50


def test_group_state_methods_follow_its_members(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    result = group(t.add.s(1, 1), t.add.s(2, 2).set(countdown=10), t.fail.s())()
    assert not result.ready() and result.waiting()
    assert result.completed_count() == 0
    drain(app, raise_on_failure=False)
    assert result.completed_count() == 1
    assert result.failed() and not result.successful() and not result.ready()
    clock.advance(11)
    drain(app)
    assert result.ready()
    assert result.completed_count() == 2
    assert [r.state for r in result.results] == [
        states.SUCCESS,
        states.SUCCESS,
        states.FAILURE,
    ]
    with pytest.raises(ValueError, match="boom"):
        result.get()
    values = result.get(propagate=False)
    assert values[:2] == [2, 4] and isinstance(values[2], ValueError)


def test_group_partial_args_go_to_every_member(app: Liteq, t: SimpleNamespace) -> None:
    result = group(t.add.s(1), t.add.s(2), t.add.si(5, 5))(10)
    drain(app)
    assert result.get() == [11, 12, 10]


def test_nested_groups_flatten_and_chains_can_be_members(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = group(group(t.add.s(1, 1), t.add.s(2, 2)), t.add.s(1, 1) | t.add.s(10))()
    drain(app)
    assert result.get() == [2, 4, 12]


def test_group_result_can_be_saved_and_restored(app: Liteq, t: SimpleNamespace) -> None:
    result = group(t.add.s(1, 1), t.add.s(2, 2))()
    result.save()
    drain(app)
    restored = GroupResult.restore(result.id, app=app)
    assert restored is not None
    assert restored.get() == [2, 4]
    assert [r.id for r in restored.results] == [r.id for r in result.results]
    assert GroupResult.restore("no-such-group", app=app) is None
    restored.delete()
    assert GroupResult.restore(result.id, app=app) is None


def test_group_get_reports_each_member_to_on_message(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = group(t.add.s(1, 1), t.add.s(2, 2))()
    drain(app)
    seen: list[dict[str, Any]] = []
    assert result.get(on_message=seen.append) == [2, 4]
    assert [(m["task_id"], m["status"], m["result"]) for m in seen] == [
        (result.results[0].id, states.SUCCESS, 2),
        (result.results[1].id, states.SUCCESS, 4),
    ]


def test_members_of_a_group_know_their_group(app: Liteq, t: SimpleNamespace) -> None:
    result = group(t.add.s(1, 1), t.add.s(2, 2))()
    drain(app)
    assert {r.group_id for r in result.results} == {result.id}


# -- chord --------------------------------------------------------------------------------


def test_chord_passes_header_results_in_order_to_the_body(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = chord((t.add.s(i, i) for i in range(100)), t.tsum.s())()
    drain(app)
    assert result.get() == 9900
    assert t.calls["tsum"] == 1
    assert result.parent.get() == [2 * i for i in range(100)]


def test_chord_body_can_be_given_when_calling(app: Liteq, t: SimpleNamespace) -> None:
    result = chord(t.add.s(i, i) for i in range(3))(t.tsum.s())
    drain(app)
    assert result.get() == 6


def test_header_results_keep_header_order_whatever_order_parts_finish(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    # Later parts become due first, so they finish first.
    header = [t.add.s(i, 0).set(countdown=10 - i) for i in range(10)]
    result = chord(header, t.collect.s())()
    for _ in range(11):
        clock.advance(1)
        drain(app)
    assert result.get() == list(range(10))


def test_chord_counter_and_header_are_written_in_one_transaction(
    app: Liteq, t: SimpleNamespace
) -> None:
    app.storage.db.connection()
    count = commits(app)
    result = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())()
    assert count[0] == 1
    header = result.parent
    row = app.storage.results.get_group(header.id)
    assert row is not None and row.remaining == 2 and row.body is not None
    assert row.task_ids == [r.id for r in header.results]
    assert queued(app) == 2
    restored = GroupResult.restore(header.id, app=app)
    assert restored is not None and restored == header


def test_chord_body_is_enqueued_once_by_the_last_part(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = chord([t.add.s(1, 1), t.add.s(2, 2), t.add.s(3, 3)], t.tsum.s())()
    drain(app)
    assert result.get() == 12
    assert t.calls["tsum"] == 1
    row = app.storage.results.get_group(result.parent.id)
    assert row is not None and row.remaining == 0


def test_chord_with_an_empty_header_runs_the_body_with_an_empty_list(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = chord([], t.collect.s())()
    drain(app)
    assert result.get() == []


def test_a_thousand_part_chord_runs_its_body_once_with_results_in_order(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = chord((t.add.s(i, 0) for i in range(1000)), t.collect.s())()
    drain(app)
    assert result.get() == list(range(1000))
    assert t.calls["collect"] == 1


def test_nested_chords_and_chains_in_a_chord_header(
    app: Liteq, t: SimpleNamespace
) -> None:
    header = [
        chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()),
        t.add.s(1, 2) | t.add.s(10),
        group(t.add.s(0, 1), t.add.s(0, 2)),
    ]
    result = chord(header, t.collect.s())()
    drain(app)
    assert result.get() == [6, 13, 1, 2]
    assert t.calls["collect"] == 1


def test_chord_body_can_be_a_chain_or_another_chord(
    app: Liteq, t: SimpleNamespace
) -> None:
    as_chain = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s() | t.add.s(100))()
    as_chord = chord(
        [t.add.s(1, 1), t.add.s(2, 2)],
        chord([t.tsum.s(), t.collect.s()], t.collect.s()),
    )()
    drain(app)
    assert as_chain.get() == 106
    # Each inner header task received the outer header's results.
    assert as_chord.get() == [6, [2, 4]]


def test_chord_inside_a_chain(app: Liteq, t: SimpleNamespace) -> None:
    c = t.add.s(1, 1) | chord([t.add.s(1), t.add.s(2)], t.tsum.s()) | t.add.s(1000)
    result = c()
    drain(app)
    assert result.get() == 1007


def test_chord_with_a_failing_part_fails_its_body_and_calls_errbacks_once(
    app: Liteq, t: SimpleNamespace
) -> None:
    body = t.tsum.s().on_error(t.on_error.s()).on_error(t.on_error_old.s())
    result = chord([t.add.s(1, 1), t.fail.s(), t.add.s(2, 2), t.fail.s()], body)()
    drain(app, raise_on_failure=False)
    assert t.calls["tsum"] == 0
    assert result.state == states.FAILURE
    assert isinstance(result.result, ChordError)
    failed_part = result.parent.results[1]
    assert (
        str(result.result) == f"Dependency {failed_part.id} raised ValueError('boom')"
    )
    assert [e[0] for e in t.errors] == ["new", "old"]
    assert t.errors[0][1] == result.id and isinstance(t.errors[0][2], ChordError)
    assert t.errors[1] == ("old", result.id)
    # As Celery: get() raises the failed parent's error first.
    with pytest.raises(ValueError, match="boom"):
        result.get()
    with pytest.raises(ChordError):
        result.get(follow_parents=False)


def test_a_chord_errback_runs_on_the_errback_tasks_own_queue(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    seen: list[str] = []

    @app.task(name="tasks.on_error_elsewhere", queue="errors")
    def on_error_elsewhere(request: Any, exc: BaseException, tb: str | None) -> None:
        seen.append(request.id)

    result = chord([t.fail.s()], t.tsum.s().on_error(on_error_elsewhere.s()))()
    drain(app, raise_on_failure=False, queues=["celery"])
    assert seen == []
    assert app.storage.broker.queue_stats(clock.time())["errors"]["ready"] == 1
    drain(app, queues=["errors"])
    assert seen == [result.id]


def test_a_chain_in_the_header_failing_early_still_ends_the_chord(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = chord([t.fail.s() | t.add.s(1), t.add.s(1, 1)], t.tsum.s())()
    drain(app, raise_on_failure=False)
    assert isinstance(result.result, ChordError)
    assert t.calls["tsum"] == 0


def test_an_expired_header_part_ends_the_chord(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    result = chord([t.add.s(1, 1).set(expires=5), t.add.s(2, 2)], t.tsum.s())()
    clock.advance(10)
    drain(app, raise_on_failure=False)
    assert isinstance(result.result, ChordError)
    assert "raised TaskRevokedError('expired" in str(result.result)


def test_revoking_a_queued_header_part_ends_the_chord(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = chord([t.add.s(1, 1), t.add.s(2, 2).set(countdown=60)], t.tsum.s())()
    late = result.parent.results[1]
    late.revoke()
    drain(app, raise_on_failure=False)
    assert late.state == states.REVOKED
    assert t.calls["tsum"] == 0
    assert isinstance(result.result, ChordError)
    assert f"Dependency {late.id} raised TaskRevokedError" in str(result.result)


def test_a_header_part_lost_with_its_worker_ends_the_chord(
    app: Liteq, t: SimpleNamespace, clock: FakeClock, worker: Worker
) -> None:
    result = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())()
    [claimed] = app.storage.claim("gone@host:1:x", None, 1, clock.time(), 60)
    worker.recover(dead_workers=["gone@host:1:x"])
    drain(app, raise_on_failure=False)
    assert app.AsyncResult(claimed.task_id).state == states.FAILURE
    assert t.calls["tsum"] == 0
    assert isinstance(result.result, ChordError)
    assert "WorkerLostError" in str(result.result)


def test_a_retried_header_part_counts_once(
    app: Liteq, t: SimpleNamespace, clock: FakeClock
) -> None:
    @app.task(name="tasks.flaky", bind=True, default_retry_delay=1)
    def flaky(self: Any, x: int) -> int:
        if self.request.retries < 2:
            raise self.retry()
        return x

    result = chord([flaky.s(5), t.add.s(1, 1)], t.collect.s())()
    for _ in range(4):
        drain(app)
        clock.advance(2)
    assert result.get() == [5, 2]
    assert t.calls["collect"] == 1


def test_an_ignored_result_part_still_reaches_the_body(
    app: Liteq, t: SimpleNamespace
) -> None:
    @app.task(name="tasks.quiet", ignore_result=True)
    def quiet(x: int) -> int:
        return x

    result = chord([quiet.s(7), t.add.s(1, 1)], t.collect.s())()
    drain(app)
    assert result.get() == [7, 2]


def test_saving_a_chord_header_keeps_its_counter(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())()
    result.parent.save()
    drain(app)
    assert result.get() == 6


@pytest.mark.parametrize("serializer", ["json", "msgpack", "pickle"])
def test_workflows_travel_with_every_serializer(
    tmp_path: Path, clock: FakeClock, serializer: str
) -> None:
    app = Liteq(
        "serializers",
        broker=str(tmp_path / f"{serializer}.db"),
        clock=clock,
        task_serializer=serializer,
        result_serializer=serializer,
        accept_content=["json", serializer],
        set_as_current=False,
    )
    add = app.task(name="tasks.add")(lambda x, y: x + y)
    tsum = app.task(name="tasks.tsum")(lambda values: sum(values))
    try:
        in_chain = (add.s(1, 1) | group(add.s(1), add.s(2)) | tsum.s())()
        with_chain_body = chord((add.s(i, i) for i in range(10)), tsum.s() | add.s(1))()
        drain(app)
        assert in_chain.get() == 7
        assert with_chain_body.get() == 91
    finally:
        app.close()


# -- maps and chunks ------------------------------------------------------------------------


def test_chunks_apply_as_a_group_of_lists(app: Liteq, t: SimpleNamespace) -> None:
    result = t.add.chunks(zip(range(100), range(100), strict=True), 10).group()()
    drain(app)
    values = result.get()
    assert len(values) == 10
    assert values[0] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert sum(values, []) == [2 * i for i in range(100)]
    called = t.add.chunks(zip(range(4), range(4), strict=True), 2)()
    drain(app)
    assert called.get() == [[0, 2], [4, 6]]


def test_starmap_and_map_run_every_item_in_one_task(
    app: Liteq, t: SimpleNamespace
) -> None:
    starred = t.add.starmap([(1, 2), (3, 4)]).delay()
    mapped = t.tsum.map([(1, 2), (3, 4)]).delay()
    drain(app)
    assert starred.get() == [3, 7]
    assert mapped.get() == [3, 7]


def test_map_of_a_two_argument_task_fails_as_in_celery(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = t.add.map([(1, 2), (3, 4)]).delay()
    drain(app, raise_on_failure=False)
    assert isinstance(result.result, TypeError)


def test_celery_builtin_task_names_are_accepted(app: Liteq, t: SimpleNamespace) -> None:
    result = app.send_task(
        "celery.starmap", kwargs={"task": dict(t.add.s()), "it": [[1, 2], [5, 5]]}
    )
    chunked = app.send_task(
        "celery.chunks",
        kwargs={"task": dict(t.add.s()), "it": [[1, 1], [2, 2]], "n": 1},
    )
    drain(app)
    assert result.get() == [3, 10]
    (group_id, _), members = chunked.get()
    restored = GroupResult(
        group_id, [app.AsyncResult(m[0][0]) for m in members], app=app
    )
    assert restored.get() == [[2], [4]]


def test_map_can_be_a_chain_step(app: Liteq, t: SimpleNamespace) -> None:
    result = (t.add.s(1, 1) | xmap(t.add.s(1), [1, 2]) | t.tsum.s())()
    drain(app)
    assert result.get() == 5


# -- eager mode -------------------------------------------------------------------------------


def test_eager_mode_runs_workflows_in_this_process(
    app: Liteq, t: SimpleNamespace
) -> None:
    app.conf.task_always_eager = True
    assert (t.add.s(1, 1) | t.add.s(2))().get() == 4
    assert group(t.add.s(i, i) for i in range(3))().get() == [0, 2, 4]
    assert chord((t.add.s(i, i) for i in range(10)), t.tsum.s())().get() == 90
    assert (t.add.s(1, 1) | group(t.add.s(1), t.add.s(2)) | t.tsum.s())().get() == 7
    assert t.add.chunks([(1, 1), (2, 2)], 1)().get() == [[2], [4]]
    assert queued(app) == 0


def test_apply_runs_workflows_in_this_process_without_eager_mode(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = (t.add.s(1, 1) | t.add.s(2)).apply()
    assert result.get() == 4
    assert result.parent.get() == 2
    assert chord([t.add.s(1, 1)], t.tsum.s()).apply().get() == 2
    assert group(t.add.s(1, 1), t.add.s(2, 2)).apply().get() == [2, 4]
    assert queued(app) == 0


def test_eager_task_with_a_workflow_callback_runs_it_here(
    app: Liteq, t: SimpleNamespace
) -> None:
    result = t.add.apply((1, 1), link=group(t.add.s(1), t.add.s(2)) | t.collect.s())
    assert result.get() == 2
    assert t.calls["collect"] == 1
    assert queued(app) == 0
