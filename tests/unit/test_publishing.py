"""Publishing: cached calling defaults, message templates, bulk rows, argument checks."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from liteq import Liteq, serialization
from liteq.exceptions import EncodeError
from liteq.messages import JsonTemplate, Message, new_id, new_ids
from liteq.prepared import prepare
from liteq.storage.schema import SCHEDULED
from liteq.testing import FakeClock
from liteq.worker import Worker


def _stored(app: Liteq, task_id: str) -> tuple[bytes, str, str, int]:
    data, content_type, queue, priority = app.storage.db.execute(
        "SELECT message, content_type, queue, priority FROM liteq_task "
        "WHERE task_id = ?",
        (task_id,),
    )[0]
    return bytes(data), content_type, queue, priority


ODD_ARGUMENTS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    ((1, "two", 3.5, None, True), {"k": [1, {"n": None}]}),
    (("é ü 日本", 'quote " and \\ back', "\x00\n"), {"ключ": "значение"}),
    (
        (datetime(2024, 5, 1, 12, tzinfo=timezone.utc), date(2024, 5, 1)),
        {"d": Decimal("1.10"), "u": uuid.UUID(int=7), "b": b"\xff\x00"},
    ),
    (([1, [2, [3]]], {"a": 1}), {"x": float("inf")}),
]

OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"countdown": 30, "expires": 60},
    {"eta": datetime(2030, 1, 1, tzinfo=timezone.utc), "priority": 9},
    {"queue": "q{}", "shadow": 'sh"adow', "time_limit": 5, "soft_time_limit": 4},
    {"group_id": "g-1", "group_index": 3, "root_id": "r-1", "parent_id": "p-1"},
    {"retries": 2, "ignore_result": True, "expires": timedelta(minutes=5)},
    {"headers": {"task": "spoofed", "trace": {"a": 1}}},
    {"link": {"task": "tasks.add", "args": [1], "kwargs": {}, "options": {}}},
]


@pytest.mark.parametrize("options", OPTION_SETS)
def test_rendered_message_is_byte_for_byte_the_encoded_message(
    app: Liteq, add: Any, options: dict[str, Any]
) -> None:
    for shared in (False, True):
        prepared = prepare(app, add.name, task_type=add, **options)
        prepared.shared = shared
        for args, kwargs in ODD_ARGUMENTS:
            task_id = 'user "id" ü'
            expected = prepared.message(task_id, args, kwargs).encode("json")
            assert prepared.encode(task_id, args, kwargs) == expected
        # Rendered from a template, not just encoded twice the same way.
        templated = shared or not (options.get("headers") or options.get("link"))
        assert (prepared._render is not None) == templated


def test_json_template_of_a_message_with_its_own_correlation_id_is_none() -> None:
    message = Message(task="t", correlation_id="c")
    assert JsonTemplate.of(message) is None
    assert JsonTemplate.of(Message(task="t")) is not None


def test_unserializable_argument_raises_the_usual_encode_error(
    app: Liteq, add: Any
) -> None:
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(EncodeError, match="cannot serialize with json"):
        add.delay(object(), 1)
    with pytest.raises(EncodeError, match="Circular reference"):
        add.delay(looped, 1)
    with pytest.raises(EncodeError):
        app.enqueue_many(add, [(1, 2), (object(), 2)])

    class Broken:
        def __json__(self) -> Any:
            raise RuntimeError("no JSON for you")

    with pytest.raises(EncodeError, match="no JSON for you"):
        add.delay(Broken(), 1)
    assert app.storage.broker.queue_stats(0) == {}


def test_json_text_matches_the_standard_encoder() -> None:
    values = [v for pair in ODD_ARGUMENTS for v in pair] + [{1, 2}, -0.0, 10**30]
    for value in values:
        assert serialization.json_text(value) == serialization._encoder.encode(value)


def test_build_message_row_holds_the_messages_bytes(app: Liteq, add: Any) -> None:
    message, row = app.build_message(add.name, (1, 2), {}, task_type=add, countdown=5)
    assert row.message == message.encode("json")[0]
    assert (
        app.build_row(add.name, (1, 2), task_id=row.task_id, task_type=add, countdown=5)
        == row
    )
    assert Message.decode(row.message, row.content_type).to_dict() == message.to_dict()


def test_plain_delays_follow_a_changed_setting(app: Liteq, add: Any) -> None:
    first = add.delay(1, 1)
    app.conf.task_default_queue = "moved"
    app.conf.task_default_priority = 7
    second = add.delay(1, 1)
    assert _stored(app, first.id)[2:] == ("celery", 0)
    assert _stored(app, second.id)[2:] == ("moved", 7)


def test_plain_delays_follow_a_changed_task_attribute(app: Liteq, add: Any) -> None:
    add.delay(1, 1)
    add.queue = "math"
    type(add).priority = 3
    add.acks_late = True
    result = add.delay(1, 1)
    assert _stored(app, result.id)[2:] == ("math", 3)
    acks_late = app.storage.db.query_one(
        "SELECT acks_late FROM liteq_task WHERE task_id = ?", (result.id,)
    )[0]
    assert acks_late == 1


def test_routes_added_to_an_existing_routes_dict_apply_at_once(
    app: Liteq, add: Any
) -> None:
    routes: dict[str, Any] = {}
    app.conf.task_routes = routes
    before = add.delay(1, 1)
    routes["tasks.add"] = {"queue": "routed"}
    after = add.delay(1, 1)
    assert _stored(app, before.id)[2] == "celery"
    assert _stored(app, after.id)[2] == "routed"


def test_delay_from_inside_a_task_records_parent_and_root(
    app: Liteq, worker: Worker
) -> None:
    @app.task(name="tasks.leaf")
    def leaf() -> None:
        return None

    @app.task(name="tasks.parent", bind=True)
    def parent(self: Any) -> str:
        return str(leaf.delay().id)

    outer = parent.delay()
    worker.step()
    child_id = outer.get(timeout=1)
    data, content_type, _, _ = _stored(app, child_id)
    child = Message.decode(data, content_type)
    assert (child.parent_id, child.root_id) == (outer.id, outer.id)
    assert Message.decode(*_stored(app, leaf.delay().id)[:2]).parent_id is None


def test_enqueue_many_rows_decode_to_the_same_messages_as_delay(
    app: Liteq, add: Any, clock: FakeClock
) -> None:
    results = app.enqueue_many(
        add,
        [((n,), {"y": n}) for n in range(3)],
        kwargs=True,
        queue="bulk",
        countdown=10,
        headers={"trace": "t"},
    )
    for n, result in enumerate(results):
        data, content_type, queue, _ = _stored(app, result.id)
        message = Message.decode(data, content_type)
        expected, _ = app.build_message(
            add.name,
            (n,),
            {"y": n},
            task_id=result.id,
            task_type=add,
            now=clock.time(),
            queue="bulk",
            countdown=10,
            headers={"trace": "t"},
        )
        assert message.to_dict() == expected.to_dict()
        assert queue == "bulk"


def test_enqueue_many_routing_function_sees_each_calls_arguments(
    app: Liteq, add: Any
) -> None:
    def router(name: str, args: Any, kwargs: Any, options: Any, task: Any) -> Any:
        return {"queue": f"q{args[0]}"}

    app.conf.task_routes = [router]
    results = app.enqueue_many(add, [(1, 0), (2, 0)])
    assert [_stored(app, r.id)[2] for r in results] == ["q1", "q2"]


def test_enqueue_many_checks_every_call_before_writing_any(
    app: Liteq, add: Any
) -> None:
    with pytest.raises(TypeError, match="tasks.add"):
        app.enqueue_many(add, [(1, 2), (1, 2, 3)])
    assert app.storage.broker.queue_stats(0) == {}


@pytest.mark.parametrize(
    ("args", "kwargs", "fits"),
    [
        ((1,), {}, True),
        ((1, 2, 3, 4), {}, True),
        ((), {}, False),
        ((1,), {"z": 1}, True),
        ((1,), {"nope": 1}, False),
    ],
)
def test_argument_check_accepts_and_rejects_like_binding(
    app: Liteq, args: tuple[Any, ...], kwargs: dict[str, Any], fits: bool
) -> None:
    @app.task(name="tasks.varargs")
    def varargs(x: int, *rest: int, z: int = 0) -> int:
        return x

    @app.task(name="tasks.bound", bind=True)
    def bound(self: Any, x: int, y: int = 0, *, z: int = 0) -> int:
        return x

    @app.task(name="tasks.needs_kw")
    def needs_kw(x: int, *, z: int) -> int:
        return x

    if fits:
        varargs.check_arguments(args, kwargs)
    else:
        with pytest.raises(TypeError, match="tasks.varargs"):
            varargs.check_arguments(args, kwargs)
    with pytest.raises(TypeError, match="tasks.bound"):
        bound.check_arguments((1, 2, 3), {})
    bound.check_arguments((1, 2), {})
    with pytest.raises(TypeError, match="tasks.needs_kw"):
        needs_kw.check_arguments((1,), {})
    needs_kw.check_arguments((1,), {"z": 2})


def test_settings_revision_moves_on_every_change() -> None:
    app = Liteq("rev", set_as_current=False)
    seen = [app.conf._revision]
    app.conf.task_default_queue = "a"
    seen.append(app.conf._revision)
    app.conf.update({"CELERY_DEFAULT_QUEUE": "b"})
    seen.append(app.conf._revision)
    del app.conf["task_default_queue"]
    seen.append(app.conf._revision)
    app.conf.setdefault("task_default_priority", 1)
    seen.append(app.conf._revision)
    assert seen == sorted(set(seen))


def test_new_id_and_new_ids_are_distinct_uuid7_strings() -> None:
    ids = [new_id() for _ in range(200)] + new_ids(600)
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == value


def test_ids_made_later_sort_after_earlier_ones_by_millisecond() -> None:
    first = new_id()
    deadline = time.monotonic() + 5
    while time.time_ns() // 1_000_000 <= uuid.UUID(first).int >> 80:
        assert time.monotonic() < deadline
    later = [new_id(), new_ids(1)[0]]
    assert all(value[:13] > first[:13] for value in later)


@pytest.mark.parametrize("options", OPTION_SETS)
def test_enqueue_many_positional_rows_hold_the_bytes_build_message_gives(
    app: Liteq, add: Any, clock: FakeClock, options: dict[str, Any]
) -> None:
    calls = [(1, 2), [3, 4], ("é ü", 'q"'), (datetime(2024, 5, 1), Decimal("1.1"))]
    results = app.enqueue_many(add, calls, **options)
    assert len(results) == len(calls)
    for args, result in zip(calls, results, strict=True):
        _, row = app.build_message(
            add.name,
            tuple(args),
            {},
            task_id=result.id,
            task_type=add,
            now=clock.time(),
            **options,
        )
        data, content_type, queue, priority = _stored(app, result.id)
        assert (data, content_type) == (row.message, row.content_type)
        assert (queue, priority) == (row.queue, row.priority)


def test_enqueue_many_results_are_a_list_of_async_results_in_call_order(
    app: Liteq, add: Any
) -> None:
    results = app.enqueue_many(add, ((n, 1) for n in range(300)))
    assert type(results) is list and len(results) == 300
    assert all(type(r) is app.AsyncResult and r.task_name == add.name for r in results)
    queued = app.storage.db.execute("SELECT task_id FROM liteq_task ORDER BY id")
    assert [r.id for r in results] == [row[0] for row in queued]
    assert results == [app.AsyncResult(r.id) for r in results]


def test_enqueue_many_stores_odd_names_and_queues_verbatim(
    app: Liteq, clock: FakeClock
) -> None:
    name, queue = 'tasks.o\'dd "name" é', 'it\'s a "queue" ü; --'
    options: dict[str, Any] = {"queue": queue, "priority": 3, "countdown": 5}
    calls = [(n, "x'y") for n in range(300)]
    results = app.enqueue_many(name, calls, expires=60.5, **options)
    columns = "name, queue, priority, state, eta, expires, message, content_type"
    stored = app.storage.db.execute(
        f"SELECT task_id, {columns} FROM liteq_task ORDER BY id"
    )
    assert [row[0] for row in stored] == [r.id for r in results]
    for args, result, row in zip(calls, results, stored, strict=True):
        _, expected = app.build_message(
            name, args, {}, task_id=result.id, now=clock.time(), expires=60.5, **options
        )
        assert row[1:4] == (name, queue, 3)
        assert row[4:6] == (SCHEDULED, clock.time() + 5)
        assert row[6:] == (clock.time() + 60.5, expected.message, expected.content_type)


def test_enqueue_many_with_a_unique_key_queues_only_the_first_call(
    app: Liteq, add: Any
) -> None:
    results = app.enqueue_many(add, [(n, n) for n in range(50)], unique_key="k'1")
    assert len(results) == 50
    assert app.storage.broker.task_id_for_unique_key("k'1") == results[0].id
    assert app.storage.broker.queue_stats(0)["celery"]["ready"] == 1


def test_enqueue_many_unserializable_argument_raises_encode_error_and_writes_nothing(
    app: Liteq, add: Any
) -> None:
    with pytest.raises(EncodeError):
        app.enqueue_many(add, [(1, 2), (object(), 2)])
    assert app.storage.broker.queue_stats(0) == {}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"countdown": 30, "queue": "bulk", "priority": 4},
        {"chord": {"task": "tasks.add", "args": [1], "kwargs": {}, "options": {}}},
    ],
)
def test_group_members_rows_hold_the_bytes_each_members_message_gives(
    app: Liteq, add: Any, clock: FakeClock, options: dict[str, Any]
) -> None:
    from liteq.canvas import Plan, group

    members = [add.s(n, n).set(task_id=f"m-{n}") for n in range(3)]
    members.append(add.si(7, 8).set(task_id="imm"))
    plan = Plan(now=clock.time(), check=True)
    result = group(members)._build(app, plan, (), {}, {"task_id": "g", **options})
    assert [r.id for r in result.results] == ["m-0", "m-1", "m-2", "imm"]
    chord_body = options.pop("chord", None)
    for index, row in enumerate(plan.tasks):
        args = (7, 8) if row.task_id == "imm" else (index, index)
        _, expected = app.build_message(
            add.name,
            args,
            {},
            task_id=row.task_id,
            task_type=add,
            now=plan.now,
            group_id="g",
            group_index=index,
            chord=chord_body,
            **options,
        )
        assert row == expected


def test_ids_drawn_in_batches_are_distinct_uuid7_strings_in_time_order() -> None:
    ids = [new_id() for _ in range(600)] + new_ids(600)
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == value
    assert ids[-1][:13] >= ids[0][:13]


def test_a_forked_child_forgets_the_random_id_parts_drawn_before() -> None:
    from liteq import messages

    messages.new_id()
    assert messages._randoms and messages._last[0] > 0
    messages._forget_ids()  # what the after-fork hook runs in the child
    assert not messages._randoms and messages._last[0] == -1
    assert uuid.UUID(messages.new_id()).version == 7


def test_a_sent_task_is_stored_at_its_ids_rowid_and_its_id_not_sent_twice(
    app: Liteq, add: Any
) -> None:
    from liteq.exceptions import StorageError
    from liteq.messages import rowid_of

    made = add.delay(1, 2)
    given = add.apply_async((3, 4), task_id=new_id())
    rows = app.storage.db.execute("SELECT id, task_id, id_derived FROM liteq_task")
    assert rows == [
        (rowid_of(made.id), made.id, 1),
        (rowid_of(given.id), given.id, 1),
    ]
    for task_id in (made.id, given.id):
        with pytest.raises(StorageError, match="already queued"):
            add.apply_async((5, 6), task_id=task_id)
        with pytest.raises(StorageError, match="already queued"):
            app.enqueue_many(add, [(7, 8)], task_id=task_id)
    assert len(app.storage.db.execute("SELECT 1 FROM liteq_task")) == 2


def test_a_group_holding_a_frozen_signature_already_queued_is_refused(
    app: Liteq, add: Any
) -> None:
    from liteq import group
    from liteq.exceptions import StorageError

    sig = add.s(1, 2)
    sig.freeze()
    sent = sig.apply_async()
    with pytest.raises(StorageError, match="already queued"):
        group([add.s(3, 4), sig]).apply_async()
    assert app.storage.db.execute("SELECT task_id FROM liteq_task") == [(sent.id,)]
    # Ids the group makes itself are not looked up, and do not collide.
    assert len(group([add.s(i, i) for i in range(3)]).apply_async().results) == 3
