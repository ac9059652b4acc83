"""Serializers: Celery-compatible JSON, pickle only when accepted, msgpack."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from liteq import serialization
from liteq.exceptions import ContentDisallowed, DecodeError, EncodeError

VALUES: dict[str, Any] = {
    "aware": datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc),
    "offset": datetime(2024, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=8))),
    "naive": datetime(2024, 1, 2, 3, 4, 5),
    "day": date(2024, 2, 29),
    "clock": time(13, 14, 15),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": Decimal("3.14159265358979323846"),
    "text_bytes": b"hello",
    "binary_bytes": b"\x00\xff\xfe",
    "nested": {"list": [1, 2.5, None, True], "unicode": "\u6587\u5b57"},
}


@pytest.mark.parametrize("serializer", ["json", "msgpack", "pickle"])
def test_values_round_trip(serializer: str) -> None:
    data, _ = serialization.dumps(VALUES, serializer)
    assert (
        serialization.loads(data, serialization.get_serializer(serializer).content_type)
        == VALUES
    )


def test_json_turns_tuples_into_lists_as_celery_does() -> None:
    data, content_type = serialization.dumps({"t": (1, (2, 3))})
    assert serialization.loads(data, content_type) == {"t": [1, [2, 3]]}


def test_json_tags_typed_values_like_kombu() -> None:
    data = serialization.json_dumps({"when": VALUES["aware"], "n": Decimal("1.5")})
    assert data == (
        b'{"when":{"__type__":"datetime","__value__":"2024-01-02T03:04:05.600000+00:00"},'
        b'"n":{"__type__":"decimal","__value__":"1.5"}}'
    )


def test_json_sets_become_lists_and_json_hook_objects_serialize() -> None:
    class Point:
        def __json__(self) -> list[int]:
            return [1, 2]

    data, content_type = serialization.dumps({"s": {3}, "p": Point()})
    assert serialization.loads(data, content_type) == {"s": [3], "p": [1, 2]}


def test_json_leaves_ordinary_dicts_with_type_keys_alone() -> None:
    value = {"__type__": "datetime", "other": 1}
    assert serialization.json_loads(serialization.json_dumps(value)) == value


def test_unserializable_value_raises_encode_error() -> None:
    with pytest.raises(EncodeError, match="json"):
        serialization.dumps({"f": object()})


def test_unknown_serializer_raises_encode_error_listing_known_ones() -> None:
    with pytest.raises(EncodeError, match="yaml"):
        serialization.dumps(1, "yaml")


def test_loads_refuses_pickle_unless_accepted() -> None:
    data, content_type = serialization.dumps([1], "pickle")
    accept_json = serialization.accepted_content_types(["json"])
    with pytest.raises(ContentDisallowed, match="x-python-serialize"):
        serialization.loads(data, content_type, accept_json)
    accept_both = serialization.accepted_content_types(["json", "pickle"])
    assert serialization.loads(data, content_type, accept_both) == [1]


def test_accepted_content_types_takes_names_or_content_types() -> None:
    assert serialization.accepted_content_types(
        ["json", "application/x-python-serialize", "msgpack"]
    ) == frozenset(
        {"application/json", "application/x-python-serialize", "application/x-msgpack"}
    )


def test_loads_of_unknown_content_type_or_garbage_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        serialization.loads(b"x", "application/x-unknown")
    with pytest.raises(DecodeError) as info:
        serialization.loads(b"{broken", "application/json")
    assert info.value.data == b"{broken"


def test_exception_to_dict_and_back_rebuilds_known_exceptions() -> None:
    data = serialization.exception_to_dict(KeyError("k"))
    assert data == {
        "exc_type": "KeyError",
        "exc_message": ["k"],
        "exc_module": "builtins",
    }
    exc = serialization.dict_to_exception(data)
    assert isinstance(exc, KeyError)
    assert exc.args == ("k",)


def test_dict_to_exception_never_imports_modules_named_by_data() -> None:
    data = {
        "exc_type": "Evil",
        "exc_message": ["x"],
        "exc_module": "some_module_that_is_not_imported",
    }
    exc = serialization.dict_to_exception(data)
    assert type(exc).__name__ == "Evil"
    assert type(exc).__module__ == "some_module_that_is_not_imported"
    assert str(exc) == "x"
    assert "some_module_that_is_not_imported" not in __import__("sys").modules
    assert type(serialization.dict_to_exception(data)) is type(exc)


def test_exception_args_that_json_cannot_carry_are_kept_as_repr() -> None:
    data = serialization.exception_to_dict(ValueError(object))
    assert data["exc_message"] == [repr(object)]
    assert serialization.is_exception_dict(data)
    assert not serialization.is_exception_dict({"exc_type": "x"})
