"""Task messages: Celery protocol-2 field names in a frozen dataclass.

The wire form is one serialized envelope::

    {"headers": {...}, "properties": {...}, "body": [args, kwargs, embed]}

where ``headers`` carries Celery's protocol-2 names (``task``, ``id``, ``eta``,
``expires``, ``retries``, ``group``, ``root_id``, ``parent_id``,
``timelimit``, ...), and ``embed`` holds ``callbacks``, ``errbacks``,
``chain`` and ``chord``. Decoding ignores headers it does not know and
defaults the optional ones, so messages from newer or older liteq versions
(and hand-written ones) still load.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from . import serialization
from .exceptions import DecodeError
from .timeutils import parse_iso, to_utc

#: Headers that map onto Message fields; everything else lands in ``headers``.
_KNOWN_HEADERS = frozenset(
    {
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
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
    }
)


def new_id() -> str:
    """Return a new task id (a random UUID4 string, as Celery)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Message:
    """One task invocation, as stored in the database.

    Attributes mirror Celery's protocol-2 headers and body. Times are aware
    UTC datetimes.
    """

    task: str
    id: str = field(default_factory=new_id)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    eta: datetime | None = None
    expires: datetime | None = None
    retries: int = 0
    group: str | None = None
    group_index: int | None = None
    root_id: str | None = None
    parent_id: str | None = None
    #: ``(hard, soft)`` time limits in seconds, Celery's order.
    timelimit: tuple[float | None, float | None] = (None, None)
    ignore_result: bool = False
    shadow: str | None = None
    origin: str | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None
    queue: str = "celery"
    priority: int = 0
    reply_to: str | None = None
    correlation_id: str | None = None
    #: Extra headers: user ``headers=`` and anything unknown when decoding.
    headers: dict[str, Any] = field(default_factory=dict)

    def copy(self, **changes: Any) -> Message:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the protocol-2 envelope as plain (serializable) data."""
        headers: dict[str, Any] = dict(self.headers)
        headers.update(
            {
                "lang": "py",
                "task": self.task,
                "id": self.id,
                "shadow": self.shadow,
                "eta": self.eta.isoformat() if self.eta else None,
                "expires": self.expires.isoformat() if self.expires else None,
                "group": self.group,
                "group_index": self.group_index,
                "retries": self.retries,
                "timelimit": list(self.timelimit),
                "root_id": self.root_id,
                "parent_id": self.parent_id,
                "origin": self.origin,
                "ignore_result": self.ignore_result,
            }
        )
        properties = {
            "correlation_id": self.correlation_id or self.id,
            "reply_to": self.reply_to,
            "priority": self.priority,
            "delivery_info": {"routing_key": self.queue, "exchange": ""},
        }
        embed = {
            "callbacks": self.callbacks,
            "errbacks": self.errbacks,
            "chain": self.chain,
            "chord": self.chord,
        }
        return {
            "headers": headers,
            "properties": properties,
            "body": [list(self.args), self.kwargs, embed],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        """Build a Message from an envelope; unknown headers are kept.

        Raises:
            DecodeError: required fields (``task``, ``id``) are missing or the
                body has the wrong shape.
        """
        try:
            headers = dict(data.get("headers") or {})
            properties = data.get("properties") or {}
            body = data.get("body") or [[], {}, {}]
            args, kwargs = body[0], body[1]
            embed = (body[2] if len(body) > 2 else None) or {}
            task, task_id = headers["task"], headers["id"]
        except (AttributeError, KeyError, IndexError, TypeError) as exc:
            raise DecodeError(f"malformed task message: {exc!r}", error=exc) from exc
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
            raise DecodeError(
                "malformed task message: args must be a list, kwargs a dict"
            )
        timelimit = headers.get("timelimit") or (None, None)
        delivery = properties.get("delivery_info") or {}
        extra = {k: v for k, v in headers.items() if k not in _KNOWN_HEADERS}
        return cls(
            task=task,
            id=task_id,
            args=tuple(args),
            kwargs=kwargs,
            eta=_maybe_datetime(headers.get("eta")),
            expires=_maybe_datetime(headers.get("expires")),
            retries=int(headers.get("retries") or 0),
            group=headers.get("group"),
            group_index=headers.get("group_index"),
            root_id=headers.get("root_id"),
            parent_id=headers.get("parent_id"),
            timelimit=(timelimit[0], timelimit[1]),
            ignore_result=bool(headers.get("ignore_result", False)),
            shadow=headers.get("shadow"),
            origin=headers.get("origin"),
            callbacks=embed.get("callbacks"),
            errbacks=embed.get("errbacks"),
            chain=embed.get("chain"),
            chord=embed.get("chord"),
            queue=delivery.get("routing_key") or "celery",
            priority=int(properties.get("priority") or 0),
            reply_to=properties.get("reply_to"),
            correlation_id=properties.get("correlation_id"),
            headers=extra,
        )

    def encode(self, serializer: str = "json") -> tuple[bytes, str]:
        """Serialize the message.

        Returns:
            ``(data, content_type)``.

        Raises:
            EncodeError: an argument cannot be serialized with ``serializer``.
        """
        return serialization.dumps(self.to_dict(), serializer)

    @classmethod
    def decode(
        cls, data: bytes, content_type: str, accept: frozenset[str] | None = None
    ) -> Message:
        """Deserialize a message produced by :meth:`encode`.

        Raises:
            ContentDisallowed: its serializer is not accepted.
            DecodeError: the bytes are not a valid message; ``.data`` keeps them.
        """
        envelope = serialization.loads(data, content_type, accept)
        try:
            return cls.from_dict(envelope)
        except DecodeError as exc:
            exc.data = bytes(data)
            raise


def _maybe_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, (int, float)):
        from .timeutils import from_ts

        return from_ts(float(value))
    return to_utc(parse_iso(str(value)))
