"""Messages: a frozen dataclass with Celery protocol-2 names, tolerant decoding."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from typing import Any

import pytest

from liteq.exceptions import ContentDisallowed, DecodeError
from liteq.messages import Message, new_id

ETA = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)


def _full() -> Message:
    return Message(
        task="tasks.add",
        id="id-1",
        args=(1, 2),
        kwargs={"z": 3},
        eta=ETA,
        expires=ETA,
        retries=2,
        group="g",
        group_index=1,
        root_id="root",
        parent_id="parent",
        timelimit=(10.0, 5.0),
        ignore_result=True,
        shadow="shadowed",
        origin="1@host",
        callbacks=[{"task": "cb"}],
        errbacks=[{"task": "eb"}],
        chain=[{"task": "next"}],
        chord={"task": "body"},
        queue="q",
        priority=9,
        reply_to="r",
        correlation_id="c",
        headers={"custom": "x"},
    )


def test_message_is_frozen() -> None:
    message = Message(task="tasks.add")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.task = "other"  # type: ignore[misc]
    assert message.copy(retries=1).retries == 1
    assert message.retries == 0


def test_message_envelope_uses_protocol_2_names() -> None:
    envelope = _full().to_dict()
    headers = envelope["headers"]
    for name in (
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "origin",
        "ignore_result",
    ):
        assert name in headers
    assert headers["eta"] == "2024-05-01T12:30:00+00:00"
    assert headers["custom"] == "x"
    args, kwargs, embed = envelope["body"]
    assert (args, kwargs) == ([1, 2], {"z": 3})
    assert set(embed) == {"callbacks", "errbacks", "chain", "chord"}
    assert envelope["properties"]["priority"] == 9
    assert envelope["properties"]["delivery_info"]["routing_key"] == "q"


@pytest.mark.parametrize("serializer", ["json", "pickle", "msgpack"])
def test_message_round_trips_through_each_serializer(serializer: str) -> None:
    message = _full()
    data, content_type = message.encode(serializer)
    assert Message.decode(data, content_type) == message


def test_decode_keeps_unknown_headers_and_defaults_missing_ones() -> None:
    envelope = {
        "headers": {"task": "tasks.add", "id": "abc", "x-from-the-future": 1},
        "body": [[1], {}],
    }
    data = json.dumps(envelope).encode()
    message = Message.decode(data, "application/json")
    assert message.task == "tasks.add"
    assert message.id == "abc"
    assert message.args == (1,)
    assert message.headers == {"x-from-the-future": 1}
    assert message.eta is None
    assert message.retries == 0
    assert message.queue == "celery"
    assert message.timelimit == (None, None)
    assert message.callbacks is None


def test_decode_accepts_epoch_eta_and_naive_iso_times() -> None:
    envelope = {
        "headers": {
            "task": "t",
            "id": "i",
            "eta": ETA.timestamp(),
            "expires": "2024-05-01T12:30:00",
        },
        "body": [[], {}, {}],
    }
    message = Message.from_dict(envelope)
    assert message.eta == ETA
    assert message.expires == ETA


@pytest.mark.parametrize(
    "envelope",
    [
        {"headers": {"id": "no-task"}, "body": [[], {}]},
        {"headers": {"task": "t"}, "body": [[], {}]},
        {"headers": {"task": "t", "id": "i"}, "body": ["not args", {}]},
        {"headers": {"task": "t", "id": "i"}, "body": [[], ["not kwargs"]]},
        ["not", "a", "dict"],
    ],
)
def test_decode_of_a_malformed_envelope_raises_decode_error_with_the_bytes(
    envelope: object,
) -> None:
    data = json.dumps(envelope).encode()
    with pytest.raises(DecodeError) as info:
        Message.decode(data, "application/json")
    assert info.value.data == data


def test_decode_of_invalid_bytes_raises_decode_error() -> None:
    with pytest.raises(DecodeError) as info:
        Message.decode(b"\x00not json", "application/json")
    assert info.value.data == b"\x00not json"


def test_decode_refuses_a_content_type_that_is_not_accepted() -> None:
    data, content_type = Message(task="t").encode("pickle")
    with pytest.raises(ContentDisallowed) as info:
        Message.decode(data, content_type, frozenset({"application/json"}))
    assert info.value.data == data
    assert isinstance(info.value, DecodeError)


def test_new_id_is_a_time_ordered_uuid_string() -> None:
    import time
    import uuid

    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(value)
    assert (parsed.version, str(parsed)) == (7, value)
    assert before <= parsed.int >> 80 <= after
    assert value != new_id()


def _general(data: bytes, content_type: str = "application/json") -> Message:
    """Decode without the fast paths (the reference result)."""
    from liteq import serialization

    return Message.from_dict(serialization.loads(data, content_type, None))


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"args": (1, "two", None, 3.5, True), "kwargs": {"k": [1, {"a": 2}]}},
        {"args": (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),)},
        {"args": ('quote " and back\\slash',)},
        {"args": ("naïve ünïcode ✓",)},
        {"eta": datetime(2030, 1, 1, tzinfo=timezone.utc), "retries": 2},
        {"group": "g1", "group_index": 3, "parent_id": "p1", "root_id": "r1"},
        {"headers": {"custom": {"nested": [1, 2]}}},
        {"callbacks": [{"task": "cb"}], "chain": [{"task": "next"}]},
        {"timelimit": (10.0, 5.0), "ignore_result": True, "priority": 7},
    ],
)
def test_decode_with_the_id_hint_gives_the_general_result_every_time(
    changes: dict[str, Any],
) -> None:
    for _ in range(3):  # the first call may learn a template, the next use it
        message = Message("tasks.add", **changes)
        data, content_type = message.encode("json")
        decoded = Message.decode(data, content_type, None, message.id)
        assert decoded == _general(data)
        assert decoded.id == message.id and decoded.task == "tasks.add"


def test_decode_from_a_template_fills_in_each_messages_own_id_and_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from liteq import messages

    messages._templates.clear()
    first = Message("tasks.add", args=(1, 2), origin="1@host")
    first = first.copy(root_id=first.id)
    data, _ = first.encode("json")
    Message.decode(data, "application/json", None, first.id)
    assert len(messages._templates) == 1

    def no_learning(*args: Any) -> None:
        raise AssertionError("the template was not used")

    monkeypatch.setattr(messages, "_learn", no_learning)
    second = Message("tasks.add", args=([3], {"x": 4}), kwargs={"y": None})
    second = second.copy(origin="1@host", root_id=second.id)
    data, _ = second.encode("json")
    decoded = Message.decode(data, "application/json", None, second.id)
    assert decoded == _general(data)
    assert decoded.id == decoded.root_id == second.id
    assert decoded.correlation_id is None  # left out of the message: the id
    assert decoded.args == ([3], {"x": 4}) and decoded.kwargs == {"y": None}
    # Messages built from one template share nothing mutable.
    decoded.headers["x"] = 1
    again = Message.decode(data, "application/json", None, second.id)
    assert again.headers == {}


def test_decode_with_a_hint_that_is_not_the_id_still_decodes_the_message() -> None:
    message = Message("tasks.add", args=(1,))
    data, _ = message.encode("json")
    for hint in ("other", 'a"b', "0", "tasks", message.id[:8]):
        assert Message.decode(data, "application/json", None, hint) == _general(data)


def test_decode_of_a_bad_body_after_a_template_raises_decode_error() -> None:
    good = Message("tasks.add", args=(1,))
    data, _ = good.encode("json")
    Message.decode(data, "application/json", None, good.id)
    bad = data.replace(b'"body":[[1],{}', b'"body":[{"not":"a list"},{}')
    with pytest.raises(DecodeError):
        Message.decode(bad, "application/json", None, good.id)
    cut = data.replace(b"]}", b"]")
    with pytest.raises(DecodeError):
        Message.decode(cut, "application/json", None, good.id)


def test_decode_refuses_json_that_is_not_accepted_even_with_a_hint() -> None:
    message = Message("tasks.add")
    data, content_type = message.encode("json")
    with pytest.raises(ContentDisallowed):
        Message.decode(
            data,
            content_type,
            frozenset({"application/x-python-serialize"}),
            message.id,
        )


def test_a_stored_message_leaves_out_the_fields_at_their_defaults() -> None:
    message = Message(task="tasks.add", id="i-1", root_id="i-1", origin="1@host")
    data, content_type = message.encode("json")
    assert json.loads(data) == {
        "headers": {"lang": "py", "task": "tasks.add", "id": "i-1", "origin": "1@host"},
        "properties": {},
        "body": [[], {}, {}],
    }
    assert Message.decode(data, content_type) == message
    # The whole protocol-2 envelope is still what to_dict gives.
    assert Message.from_dict(message.to_dict()) == message


@pytest.mark.parametrize("serializer", ["json", "pickle", "msgpack"])
@pytest.mark.parametrize(
    "message",
    [
        _full(),
        Message(task="t", id="i", root_id="i"),
        Message(task="t", id="i", root_id=None, correlation_id="i", queue="celery"),
        Message(task="t", id="i", retries=0, timelimit=(None, 3.0), priority=0),
        Message(task="t", id="i", ignore_result=False, group_index=0, parent_id=""),
    ],
)
def test_the_stored_form_and_the_whole_envelope_decode_to_the_same_message(
    message: Message, serializer: str
) -> None:
    data, content_type = message.encode(serializer)
    from_stored = Message.decode(data, content_type)
    assert from_stored == Message.from_dict(message.to_dict())
    for name in ("root_id", "group_index", "parent_id"):
        assert getattr(from_stored, name) == getattr(message, name)
    # None stands for the task's id.
    assert (from_stored.correlation_id or "i") == (message.correlation_id or "i")


def test_a_root_id_left_out_is_the_tasks_own_and_a_null_one_stays_none() -> None:
    left_out = {"headers": {"task": "t", "id": "i"}, "body": [[], {}, {}]}
    assert Message.from_dict(left_out).root_id == "i"
    null = {"headers": {"task": "t", "id": "i", "root_id": None}, "body": [[], {}, {}]}
    assert Message.from_dict(null).root_id is None
    data, _ = Message.from_dict(null).encode("json")
    assert b'"root_id":null' in data


def test_compacting_keeps_the_users_headers_and_anything_not_an_envelope() -> None:
    from liteq.messages import compact_envelope

    envelope = Message(
        task="t", id="i", headers={"trace": None, "attempt": 0}
    ).to_dict()
    stored = compact_envelope(envelope)
    assert stored["headers"]["trace"] is None
    assert stored["headers"]["attempt"] == 0
    assert "retries" not in stored["headers"]
    assert "retries" in envelope["headers"]  # the argument is left as it was
    for odd in (None, [], {"headers": []}, {"headers": {"task": "t"}}, "text"):
        assert compact_envelope(odd) is odd


def test_messages_stored_whole_by_older_versions_decode_from_a_template_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from liteq import messages
    from liteq.serialization import json_text

    def stored_whole(message: Message) -> bytes:
        return json_text(message.to_dict()).encode()

    messages._templates.clear()
    first = Message("tasks.add", args=(1,), origin="1@host")
    first = first.copy(root_id=first.id)
    Message.decode(stored_whole(first), "application/json", None, first.id)
    assert len(messages._templates) == 1

    def no_learning(*args: Any) -> None:
        raise AssertionError("the template was not used")

    monkeypatch.setattr(messages, "_learn", no_learning)
    second = Message("tasks.add", args=(2,), origin="1@host")
    second = second.copy(root_id=second.id)
    data = stored_whole(second)
    decoded = Message.decode(data, "application/json", None, second.id)
    assert decoded == _general(data) == second
    assert decoded.correlation_id is None


def test_an_id_inside_a_longer_header_value_gets_no_template() -> None:
    from liteq import messages
    from liteq.serialization import json_text

    messages._templates.clear()
    message = Message("tasks.add", origin="x")
    message = message.copy(root_id=message.id, shadow="pre-" + message.id)
    data = json_text(message.to_dict()).encode()
    assert Message.decode(data, "application/json", None, message.id) == message
    assert messages._templates == {}
