"""Result rows: a task's state and value to and from what the database stores.

Values are serialized with ``result_serializer`` (exceptions in Celery's dict
form) and read back only with an accepted content type; times come from the
app's clock; every row expires after ``result_expires``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any, NamedTuple

from . import serialization, states
from .serialization import (
    dict_to_exception,
    exception_to_dict,
    is_exception_dict,
    json_value,
)
from .storage import ResultRow
from .storage.results import EventRow
from .timeutils import from_ts, seconds

if TYPE_CHECKING:
    from .app import Liteq
    from .config import Settings


def encode_result(
    app: Liteq, value: Any, serializer: str | None = None
) -> tuple[bytes, str]:
    """Serialize a result value (exceptions in Celery's dict form).

    Raises:
        EncodeError: the value cannot be serialized.
    """
    if isinstance(value, BaseException):
        value = exception_to_dict(value)
    return serialization.dumps(
        value, serializer or app.derived("result_rows", _RowSettings.of).serializer
    )


class _RowSettings(NamedTuple):
    """The settings every result row reads, derived once per settings revision."""

    serializer: str
    #: ``result_expires`` in seconds; None: rows never expire.
    expires: float | None
    extended: bool

    @classmethod
    def of(cls, conf: Settings) -> _RowSettings:
        return cls(
            conf.result_serializer,
            expires_seconds(conf),
            bool(conf.result_extended),
        )


def expires_seconds(conf: Settings) -> float | None:
    """``result_expires`` in seconds (None: results never expire)."""
    value = conf.result_expires
    if value is None:
        return None
    secs = seconds(value)
    return secs if secs else None


#: ResultRow's fields: while a row is built from exactly these, it skips the
#: frozen dataclass's __init__ (one object.__setattr__ per field).
_ROW_FIELDS = (
    "task_id",
    "status",
    "result",
    "content_type",
    "traceback",
    "name",
    "args",
    "kwargs",
    "queue",
    "worker",
    "retries",
    "parent_id",
    "root_id",
    "group_id",
    "children",
    "raw_message",
    "date_done",
    "expires_at",
)
_FAST_ROWS = tuple(f.name for f in dataclasses.fields(ResultRow)) == _ROW_FIELDS
_JSON = serialization.JSON
_JSON_TYPE = _JSON.content_type
_JSON_ROUTE = serialization._REGISTRY
_new_row = object.__new__
_set_dict = object.__setattr__


def make_result_row(
    app: Liteq,
    task_id: str,
    status: str,
    value: Any,
    *,
    traceback: str | None = None,
    name: str | None = None,
    args: Any = None,
    kwargs: Any = None,
    queue: str | None = None,
    worker: str | None = None,
    retries: int | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
    group_id: str | None = None,
    children: list[Any] | None = None,
    raw_message: bytes | None = None,
    serializer: str | None = None,
    now: float | None = None,
) -> ResultRow:
    """Build a result row: the value is serialized, times come from the clock."""
    settings = app.derived("result_rows", _RowSettings.of)
    serializer = serializer or settings.serializer
    data: bytes | None = None
    if serializer == "json" and _JSON_ROUTE.get("json") is _JSON:
        # The usual case, straight to the encoder: exactly encode_result's
        # bytes; anything unusual (an exception, an error) takes that path.
        kind = type(value)
        if kind is int or kind is str or value is None:
            with contextlib.suppress(Exception):
                data, content_type = json_value(value).encode("utf-8"), _JSON_TYPE
    if data is None:
        try:
            data, content_type = encode_result(app, value, serializer)
        except Exception as exc:
            # The return value cannot be stored: record that, visibly.
            status = states.FAILURE
            data, content_type = encode_result(app, exc, serializer)
    now = app.clock.time() if now is None else now
    expires = settings.expires
    extended = settings.extended
    enc_args = enc_kwargs = None
    if extended and args is not None:
        with contextlib.suppress(Exception):
            enc_args = serialization.dumps(list(args), "json")[0]
            enc_kwargs = serialization.dumps(dict(kwargs or {}), "json")[0]
    fields: dict[str, Any] = {
        "task_id": task_id,
        "status": status,
        "result": data,
        "content_type": content_type,
        "traceback": traceback,
        "name": name,
        "args": enc_args,
        "kwargs": enc_kwargs,
        "queue": queue if extended else None,
        "worker": worker,
        "retries": retries,
        "parent_id": parent_id,
        "root_id": root_id,
        "group_id": group_id,
        "children": children,
        "raw_message": raw_message,
        "date_done": now,
        # Every state expires, not only final ones: the last state of a
        # task that ignores its result must not stay forever.
        "expires_at": now + expires if expires else None,
    }
    if _FAST_ROWS:
        row = _new_row(ResultRow)
        _set_dict(row, "__dict__", fields)
        return row
    return ResultRow(**fields)


def decode_result_row(app: Liteq, row: ResultRow) -> dict[str, Any]:
    """Turn a stored row into Celery's meta dict (exceptions rebuilt)."""
    value: Any = None
    if row.result is not None and row.content_type:
        try:
            value = serialization.loads(row.result, row.content_type, app.result_accept)
        except Exception as exc:
            value = exc
    if row.status in states.EXCEPTION_STATES and is_exception_dict(value):
        value = dict_to_exception(value)
    meta: dict[str, Any] = {
        "task_id": row.task_id,
        "status": row.status,
        "result": value,
        "traceback": row.traceback,
        "children": row.children or [],
        "date_done": from_ts(row.date_done) if row.date_done is not None else None,
        "name": row.name,
        "worker": row.worker,
        "retries": row.retries,
        "queue": row.queue,
        "parent_id": row.parent_id,
        "root_id": row.root_id,
        "group_id": row.group_id,
    }
    if row.args is not None:
        meta["args"] = serialization.json_loads(row.args)
        meta["kwargs"] = serialization.json_loads(row.kwargs or b"{}")
    return meta


def decode_event(app: Liteq, event: EventRow) -> dict[str, Any]:
    """Turn a stored state change into Celery's meta dict."""
    value: Any = None
    if event.result is not None and event.content_type:
        try:
            value = serialization.loads(
                event.result, event.content_type, app.result_accept
            )
        except Exception as exc:
            value = exc
    if event.status in states.EXCEPTION_STATES and is_exception_dict(value):
        value = dict_to_exception(value)
    return {
        "task_id": event.task_id,
        "status": event.status,
        "result": value,
        "traceback": None,
        "children": [],
        "date_done": from_ts(event.created_at),
    }
