"""Task messages: Celery protocol-2 field names in a frozen dataclass.

The wire form is one serialized envelope::

    {"headers": {...}, "properties": {...}, "body": [args, kwargs, embed]}

where ``headers`` carries Celery's protocol-2 names (``task``, ``id``, ``eta``,
``expires``, ``retries``, ``group``, ``root_id``, ``parent_id``,
``timelimit``, ...), and ``embed`` holds ``callbacks``, ``errbacks``,
``chain`` and ``chord``. Decoding ignores headers it does not know and
defaults the optional ones, so messages from newer or older liteq versions
(and hand-written ones) still load.

:meth:`Message.to_dict` gives the whole envelope, as Celery's protocol
spells it. What is stored leaves out the fields at their defaults
(:func:`compact_envelope`): a no-op task's message is about 150 bytes
instead of 540, and every byte a queue row carries is written to the WAL and
copied again at checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

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
        "origin",
        "ignore_result",
    }
)


# -- task ids ------------------------------------------------------------------------

#: The variant digit of a UUID string, from the random hex digit in its place.
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab" * 4)
#: Where the random hex digits go in ``xxx-Vxxx-xxxxxxxxxxxx`` (None: a dash).
_TAIL_LAYOUT = (0, 1, 2, None, 3, 4, 5, 6, None, *range(7, 19))


def _random_ids(n: int, prefix: str = "") -> list[str]:
    """Return ``n`` strings ``prefix + "xxx-Vxxx-xxxxxxxxxxxx"`` (random, V: variant).

    Built a column at a time (strided slices of one buffer), so the cost
    per id is a fraction of formatting each one.
    """
    if n <= 0:
        return []
    hexed = os.urandom(10 * n).hex().encode()
    head = prefix.encode("ascii")
    width = len(head) + len(_TAIL_LAYOUT) + 1
    buf = bytearray(width * n)
    for col, char in enumerate(head):
        buf[col::width] = bytes((char,)) * n
    dashes = b"-" * n
    for col, digit in enumerate(_TAIL_LAYOUT, len(head)):
        if digit is None:
            buf[col::width] = dashes
        elif digit == 3:
            buf[col::width] = hexed[digit::20].translate(_VARIANT)
        else:
            buf[col::width] = hexed[digit::20]
    buf[width - 1 :: width] = b"," * n
    ids = buf.decode("ascii").split(",")
    ids.pop()  # after the last comma
    return ids


#: Bits of a task id's sequence number within its millisecond (see
#: :func:`new_id`): 42 bits of milliseconds and these fill a 63-bit rowid.
SEQ_BITS = 21
_SEQ_MASK = (1 << SEQ_BITS) - 1
_MS_LIMIT = 1 << (63 - SEQ_BITS)
#: Random 64-bit numbers for :func:`new_id`, drawn 256 at a time.
_randoms: list[int] = []
#: ``[ms, sequence number, time part]`` of the last id :func:`new_id` made in this process.
_last: list[Any] = [-1, 0, ""]
#: The last id :func:`new_id` made, with its rowid: it is usually the next
#: one :func:`rowid_of` is asked about, by the same thread.
_made: tuple[str, int] = ("", 0)
_last_lock = threading.Lock()
_V7 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z"
)


def _time_part(ms: int) -> str:
    t = f"{ms:012x}"
    return f"{t[:8]}-{t[8:]}-7"


def new_id() -> str:
    """Return a new task id: a UUID string whose first 48 bits are the time in ms.

    It is a version-7 UUID (RFC 9562) where Celery uses version 4: still a
    unique UUID string, but ids made later sort later, so the database's id
    indexes grow at one end instead of touching a random page per task
    (measured: about 1.6x the inserts per second). After the milliseconds
    come a 21-bit sequence number, which starts at a random value in each
    millisecond and counts up for each id this process makes in it (the
    RFC's "fixed-length dedicated counter"), then 53 random bits. The
    milliseconds and the sequence number make the queue row's rowid
    (:func:`rowid_of`), so a task is found by its id without an index on it.
    Thread-safe; a forked child starts its own sequence.
    """
    try:
        bits = _randoms.pop()
    except IndexError:
        _randoms.extend(struct.unpack("256Q", os.urandom(2048)))
        bits = _randoms.pop()
    now = time.time_ns() // 1_000_000
    with _last_lock:
        ms, seq, prefix = _last
        seq += 1
        if now > ms or seq > _SEQ_MASK:
            # A new millisecond, or the count ran out and takes the next one
            # (a clock that went back keeps counting on in the last one).
            # Start low in the range, so the count rarely runs out.
            ms = max(now, ms + 1)
            seq = bits >> (64 - SEQ_BITS + 1)
            prefix = _time_part(ms)
            _last[0] = ms
            _last[2] = prefix
        _last[1] = seq
    task_id: str = prefix + "%03x-%04x-%012x" % (  # noqa: UP031 (measured faster)
        seq >> 9,
        0x8000 | (seq & 0x1FF) << 5 | (bits >> 48) & 0x1F,
        bits & 0xFFFF_FFFF_FFFF,
    )
    global _made
    _made = (task_id, ms << SEQ_BITS | seq)
    return task_id


def rowid_of(task_id: str) -> int | None:
    """Return the queue rowid a task id made by :func:`new_id` encodes, or None.

    The rowid is ``ms << 21 | sequence``: ids made later by one process get
    larger rowids, so rows stored under them keep the order they were sent
    in. Any version-7 UUID string gives a number (for an id made elsewhere,
    or by :func:`new_ids`, one where its task is not stored, or another
    task is: lookups compare the id too); anything else gives None.
    """
    made = _made
    if made[0] is task_id:
        return made[1]
    if type(task_id) is not str or len(task_id) != 36 or _V7.match(task_id) is None:
        return None
    ms = int(task_id[:8] + task_id[9:13], 16)
    if ms >= _MS_LIMIT:
        return None
    seq = int(task_id[15:18], 16) << 9 | (int(task_id[19:23], 16) >> 5) & 0x1FF
    return ms << SEQ_BITS | seq


def new_ids(n: int) -> list[str]:
    """Return ``n`` new task ids for one bulk enqueue, sorted.

    Version-7 UUID strings like :func:`new_id`'s, with 74 random bits after
    the milliseconds and no sequence number: a bulk's rows are stored where
    SQLite puts them, and found through the task id index.
    """
    prefix = _time_part(time.time_ns() // 1_000_000)
    # Sorted, so the bulk's ids increase like its rows: the id indexes (the
    # queue's, then the results') are written at one end, not on a random
    # page per task (measured: a worker's ack wrote half the WAL pages).
    ids = _random_ids(n, prefix)
    ids.sort()
    return ids


def _forget_ids() -> None:
    # Parent and child would otherwise hand out the same random parts and
    # count on from the same sequence number.
    global _last_lock
    _randoms.clear()
    _last[0] = -1
    # Another thread may have held it at the fork: the child's would stay held.
    _last_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_ids)


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
            headers = data.get("headers") or {}
            if type(headers) is not dict:
                headers = dict(headers)
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
        get = headers.get
        timelimit = get("timelimit") or (None, None)
        delivery = properties.get("delivery_info") or {}
        # Messages liteq wrote carry only known headers: skip the scan then.
        if headers.keys() <= _KNOWN_HEADERS:
            extra: dict[str, Any] = {}
        else:
            extra = {k: v for k, v in headers.items() if k not in _KNOWN_HEADERS}
        eta, expires = get("eta"), get("expires")
        correlation_id = properties.get("correlation_id")
        fields = {
            "task": task,
            "id": task_id,
            "args": tuple(args),
            "kwargs": kwargs,
            "eta": None if eta is None else _maybe_datetime(eta),
            "expires": None if expires is None else _maybe_datetime(expires),
            "retries": int(get("retries") or 0),
            "group": get("group"),
            "group_index": get("group_index"),
            # Left out when the task is its own root (see compact_envelope).
            "root_id": get("root_id", task_id),
            "parent_id": get("parent_id"),
            "timelimit": (timelimit[0], timelimit[1]),
            "ignore_result": bool(get("ignore_result", False)),
            "shadow": get("shadow"),
            "origin": get("origin"),
            "callbacks": embed.get("callbacks"),
            "errbacks": embed.get("errbacks"),
            "chain": embed.get("chain"),
            "chord": embed.get("chord"),
            "queue": delivery.get("routing_key") or "celery",
            "priority": int(properties.get("priority") or 0),
            "reply_to": properties.get("reply_to"),
            # None stands for the id (to_dict writes it, the stored form leaves it out).
            "correlation_id": None if correlation_id == task_id else correlation_id,
            "headers": extra,
        }
        if cls is not Message:
            return cls(**fields)
        # Every field is given, so the frozen dataclass's __init__ (one
        # object.__setattr__ per field) can be skipped: same object, a
        # fraction of the cost, on the path every task runs through.
        message = _new_message(cls)
        _set_dict(message, "__dict__", fields)
        return message

    def encode(self, serializer: str = "json") -> tuple[bytes, str]:
        """Serialize the message.

        Returns:
            ``(data, content_type)``.

        Raises:
            EncodeError: an argument cannot be serialized with ``serializer``.
        """
        return encode_envelope(self.to_dict(), serializer)

    @classmethod
    def decode(
        cls,
        data: bytes,
        content_type: str,
        accept: frozenset[str] | None = None,
        task_id: str | None = None,
    ) -> Message:
        """Deserialize a message produced by :meth:`encode`.

        Args:
            data: The encoded message.
            content_type: Its content type.
            accept: The content types allowed (None: any).
            task_id: The id the message is expected to carry (a claimed
                row's): only a hint that makes decoding faster.

        Raises:
            ContentDisallowed: its serializer is not accepted.
            DecodeError: the bytes are not a valid message; ``.data`` keeps them.
        """
        if cls is Message:
            fast = _decode_plain_json(data, content_type, accept, task_id)
            if fast is not None:
                return fast
        envelope = serialization.loads(data, content_type, accept)
        try:
            return cls.from_dict(envelope)
        except DecodeError as exc:
            exc.data = bytes(data)
            raise


#: Headers left out of a stored message at these values (same type and value).
_DEFAULT_HEADERS: dict[str, Any] = {
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "parent_id": None,
    "ignore_result": False,
}
#: The same for ``properties``; ``correlation_id`` is also left out when it is the id.
_DEFAULT_PROPERTIES: dict[str, Any] = {
    "reply_to": None,
    "priority": 0,
    "delivery_info": {"routing_key": "celery", "exchange": ""},
}
_EMBED = frozenset({"callbacks", "errbacks", "chain", "chord"})
_KEEP = object()


def _without_defaults(
    fields: dict[str, Any], defaults: dict[str, Any], id_field: str, task_id: Any
) -> dict[str, Any]:
    """Return ``fields`` without those at their default, nor ``id_field`` if it is the id."""
    kept = {}
    for name, value in fields.items():
        default = defaults.get(name, _KEEP)
        if type(value) is type(default) and value == default:
            continue
        if name == id_field and value == task_id:
            continue
        kept[name] = value
    return kept


def compact_envelope(envelope: Any) -> Any:
    """Return ``envelope`` without the protocol fields that are at their defaults.

    This is the form liteq stores: :meth:`Message.from_dict` gives the same
    message for both. Left out are the headers in :data:`_DEFAULT_HEADERS`
    at their default, ``root_id`` when it is the task's own id,
    ``correlation_id`` when it is the id, ``reply_to``, ``priority`` 0, the
    default queue's ``delivery_info`` and the workflow fields of the body
    that are null. Headers of the user's own are kept whatever their value.
    ``envelope`` is not changed; one that is not a well-formed envelope is
    returned as it is, for the decoder to judge.
    """
    if type(envelope) is not dict:
        return envelope
    headers = envelope.get("headers")
    if type(headers) is not dict or "id" not in headers:
        return envelope
    task_id = headers["id"]
    out = dict(envelope)
    out["headers"] = _without_defaults(headers, _DEFAULT_HEADERS, "root_id", task_id)
    properties = envelope.get("properties")
    if type(properties) is dict:
        out["properties"] = _without_defaults(
            properties, _DEFAULT_PROPERTIES, "correlation_id", task_id
        )
    body = envelope.get("body")
    if type(body) is list and len(body) == 3 and type(body[2]) is dict:
        embed = {
            name: value
            for name, value in body[2].items()
            if value is not None or name not in _EMBED
        }
        out["body"] = [body[0], body[1], embed]
    return out


def encode_envelope(envelope: Any, serializer: str) -> tuple[bytes, str]:
    """Serialize ``envelope`` in the stored form (:func:`compact_envelope`).

    Returns:
        ``(data, content_type)``.

    Raises:
        EncodeError: a value cannot be serialized with ``serializer``.
    """
    return serialization.dumps(compact_envelope(envelope), serializer)


_new_message = object.__new__
_set_dict = object.__setattr__

# -- decoding the common message quickly ---------------------------------------------------
#
# Most messages are JSON without type tags or escapes, and the messages of
# one task differ only in their id and arguments. For those, the envelope
# minus its body, with the task id masked, is the key of a template holding
# the decoded fields; only the body is parsed per message. Anything else
# takes the general path, which also reports every error.

#: The C scanner of a JSON decoder without the type-tag hook: ``(value, end)``
#: of the JSON value starting at an index.
_scan_untagged: Callable[[str, int], tuple[Any, int]]
_scan_untagged = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
#: The same for template keys, whose strings hold the (control character) mark.
_scan_masked: Callable[[str, int], tuple[Any, int]]
_scan_masked = json.JSONDecoder(strict=False).scan_once  # type: ignore[attr-defined]
#: Where the body starts in an envelope as :meth:`Message.to_dict` orders it.
_BODY_KEY = ',"body":'
#: Stands for the task id in a template key (raw NUL never occurs in JSON).
_MARK = "\x00"
#: The fields a message's body gives (the rest come from a template).
_BODY_FIELDS = frozenset({"args", "kwargs", "callbacks", "errbacks", "chain", "chord"})
#: Templates kept at most (the key varies with the task, origin, options).
_MAX_TEMPLATES = 256


class _Template(NamedTuple):
    """The decoded fields shared by messages whose envelopes differ only in the id."""

    #: Message fields except those of the body and ``headers`` (always empty).
    fields: dict[str, Any]
    #: The fields that hold the task id.
    marked: tuple[str, ...]


_templates: dict[str, _Template] = {}


def _decode_plain_json(
    data: Any, content_type: str, accept: frozenset[str] | None, task_id: str | None
) -> Message | None:
    """Decode a JSON message without type tags or escapes, skipping the general path.

    The JSON type-tag hook only rewrites objects with a ``"__type__"`` key,
    which text without that string and without backslashes (so without
    escapes) cannot hold: such text decodes the same without the hook.

    Returns:
        The message, or None to take the general path (another content
        type, a replaced JSON serializer, tags, escapes, or any error, which
        the general path reports).
    """
    if (
        content_type != "application/json"
        or (accept is not None and content_type not in accept)
        or serialization._BY_CONTENT_TYPE.get(content_type) is not serialization.JSON
        or type(data) is not bytes
        or 92 in data  # a backslash: escapes
        or b"__type__" in data
        or 0 in data
    ):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    cut = text.find(_BODY_KEY)
    key = None
    # An id that could end a JSON string (or break strict JSON) never gets
    # a template: the envelope made with it might decode differently.
    if (
        task_id
        and cut > 0
        and text[-1] == "}"
        and '"' not in task_id
        and task_id.isprintable()
    ):
        key = text[:cut].replace(task_id, _MARK)
        template = _templates.get(key)
        if template is not None:
            try:
                body, end = _scan_untagged(text, cut + len(_BODY_KEY))
            except Exception:
                return None
            if end != len(text) - 1:
                return None
            return _from_template(template, task_id, body)
    try:
        envelope, end = _scan_untagged(text, 0)
        if end != len(text):
            return None
        message = Message.from_dict(envelope)
    except Exception:
        return None
    if key is not None and message.id == task_id:
        _learn(key, message, envelope.get("body"))
    return message


def _from_template(template: _Template, task_id: str, body: Any) -> Message | None:
    """Build the message from ``template`` and its own id and body (None: irregular)."""
    if type(body) is not list or len(body) != 3:
        return None
    args, kwargs, embed = body
    if type(args) is not list or type(kwargs) is not dict or type(embed) is not dict:
        return None
    fields = template.fields.copy()
    for name in template.marked:
        fields[name] = task_id
    fields["args"] = tuple(args)
    fields["kwargs"] = kwargs
    fields["callbacks"] = embed.get("callbacks")
    fields["errbacks"] = embed.get("errbacks")
    fields["chain"] = embed.get("chain")
    fields["chord"] = embed.get("chord")
    fields["headers"] = {}
    message = _new_message(Message)
    _set_dict(message, "__dict__", fields)
    return message


def _learn(key: str, message: Message, body: Any) -> None:
    """Keep the template of ``key`` if it rebuilds ``message`` exactly.

    ``key`` is the envelope before its body with each occurrence of the id
    replaced by :data:`_MARK`. It is kept only when every mark is a whole
    JSON string (so another message with the same key differs only in the
    fields that hold its id), the message is the common kind (no ETA, expiry, group, parent
    or extra headers, whose values would make one key per message), and the
    template gives back this very message.
    """
    if (
        message.headers
        or message.eta is not None
        or message.expires is not None
        or message.group is not None
        or message.parent_id is not None
    ):
        return
    try:
        head, end = _scan_masked(key + "}", 0)
        if end != len(key) + 1 or type(head) is not dict or "body" in head:
            return
        masked = Message.from_dict({**head, "body": [[], {}, {}]})
    except Exception:
        return
    fields = {
        name: value
        for name, value in masked.__dict__.items()
        if name not in _BODY_FIELDS and name != "headers"
    }
    marked = tuple(name for name, value in fields.items() if value == _MARK)
    # Every mark must be a whole JSON string (not part of a longer one), so
    # that another message with this key differs only in fields that are
    # its id. Fields may be marked without a mark of their own (a root_id
    # left out decodes as the id), and a mark may leave no field marked (a
    # correlation_id equal to the id decodes as None).
    if (
        "id" not in marked
        or key.count(_MARK) != key.count(f'"{_MARK}"')
        or masked.headers
    ):
        return
    if not all(_immutable(value) for value in fields.values()):
        return  # the template's values are shared by every message built from it
    template = _Template(fields, marked)
    if _from_template(template, message.id, body) != message:
        return
    if len(_templates) >= _MAX_TEMPLATES:
        _templates.clear()
    _templates[key] = template


def _immutable(value: Any) -> bool:
    if type(value) is tuple:
        return all(_immutable(item) for item in value)
    return value is None or type(value) in (str, int, float, bool)


def _maybe_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, (int, float)):
        from .timeutils import from_ts

        return from_ts(float(value))
    return to_utc(parse_iso(str(value)))


# -- the JSON envelope as a template -----------------------------------------------------

#: Fields a :class:`JsonTemplate` fills in per message, in ``render``'s order.
_SLOTS = ("id", "eta", "expires", "group_index", "root_id", "parent_id", "body")
#: The slots left out of a stored message at their default: in the template
#: each stands for its whole ``,"name":value`` (or nothing).
_OPTIONAL_SLOTS = ("eta", "expires", "group_index", "root_id", "parent_id")

#: The header fields :meth:`JsonTemplate.render` takes: the ``,"name":value``
#: text of ``eta``, ``expires``, ``group_index``, ``root_id`` (None: each task
#: is its own root) and ``parent_id``, "" for one at its default.
HeaderFields = tuple[str, str, str, str | None, str]


class JsonTemplate(NamedTuple):
    """The JSON envelope of messages that differ only in their per-call fields.

    Publishing many messages with the same options (every ``.delay()`` of a
    task, a bulk enqueue, a group) re-encodes the same headers each time; the
    template encodes them once. ``render`` gives exactly the bytes
    ``Message.encode("json")`` gives for the same message.
    """

    #: ``str.format`` text with ``{0}`` … ``{6}`` standing for :data:`_SLOTS`.
    text: str

    @classmethod
    def of(cls, message: Message) -> JsonTemplate | None:
        """Make the template of ``message``, ignoring its per-call fields.

        Returns:
            None if the message cannot be templated: it has its own
            correlation id, or its values do not serialize.
        """
        if message.correlation_id is not None:
            return None
        token = os.urandom(8).hex()
        value = serialization.json_value
        marks = {slot: value(f"\x00{slot}{token}") for slot in _SLOTS}
        envelope = message.to_dict()
        headers = envelope["headers"]
        headers["id"] = f"\x00id{token}"
        for slot in _OPTIONAL_SLOTS:
            headers[slot] = f"\x00{slot}{token}"
        # The same as the id: left out, as in every message without its own.
        envelope["properties"]["correlation_id"] = headers["id"]
        envelope = compact_envelope(envelope)
        envelope["body"] = [f"\x00body{token}", envelope["body"][2]]
        try:
            text = serialization.json_text(envelope)
        except Exception:
            return None  # encoding the message itself will report it
        # Headers come after "lang", "task" and "id": a comma precedes each.
        for slot in _OPTIONAL_SLOTS:
            marks[slot] = f",{value(slot)}:{marks[slot]}"
        if any(text.count(mark) != 1 for mark in marks.values()):
            return None
        pattern = "|".join(re.escape(mark) for mark in marks.values())
        index = {mark: _SLOTS.index(slot) for slot, mark in marks.items()}
        pieces = re.split(f"({pattern})", text)
        fmt = "".join(
            f"{{{index[piece]}}}"
            if i % 2
            else piece.replace("{", "{{").replace("}", "}}")
            for i, piece in enumerate(pieces)
        )
        return cls(fmt)

    @staticmethod
    def fields(
        eta: str | None = None,
        expires: str | None = None,
        group_index: int | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
    ) -> HeaderFields:
        """Encode the header fields :meth:`render` takes, once for many messages.

        ``eta``/``expires`` are ISO strings; ``root_id`` None means each task
        is its own root.
        """
        value = serialization.json_value
        return (
            "" if eta is None else ',"eta":' + value(eta),
            "" if expires is None else ',"expires":' + value(expires),
            group_index_field(group_index),
            None if root_id is None else ',"root_id":' + value(root_id),
            "" if parent_id is None else ',"parent_id":' + value(parent_id),
        )

    def render(
        self,
        task_id: str,
        args: Any,
        kwargs: Any,
        fields: HeaderFields = ("", "", "", None, ""),
    ) -> bytes:
        """Return the UTF-8 JSON of the message with this id, arguments and ``fields``.

        Raises:
            TypeError: an argument JSON cannot carry.
            ValueError: a circular reference in the arguments.
        """
        eta, expires, group_index, root_id, parent_id = fields
        quoted_id = serialization.json_value(task_id)
        if root_id is None or root_id == ',"root_id":' + quoted_id:
            root_id = ""  # its own root: left out
        return self.text.format(
            quoted_id,
            eta,
            expires,
            group_index,
            root_id,
            parent_id,
            # One encoder call for both; "[args,kwargs]" loses its brackets.
            serialization.json_text((args, kwargs))[1:-1],
        ).encode("utf-8")

    def bind(self, fields: HeaderFields) -> BoundJson:
        """Return the template with ``fields`` filled in (see :meth:`fields`).

        Only the id and the arguments are left, so rendering the messages of
        many calls with the same options is two string joins each. A
        ``root_id`` in ``fields`` is written for every message, even one
        whose id it is (which :meth:`render` leaves out; both decode alike).
        """
        eta, expires, group_index, root_id, parent_id = fields
        # NUL never occurs in JSON text (the encoder escapes it): safe marks.
        text = self.text.format(
            "\x00i",
            eta,
            expires,
            group_index,
            "" if root_id is None else root_id,
            parent_id,
            "\x00b",
        )
        head, tail = text.split("\x00b")
        return BoundJson(tuple(head.split("\x00i")), tail)


def group_index_field(index: int | None) -> str:
    """Return the ``group_index`` text of :meth:`JsonTemplate.fields` ("" for None)."""
    return "" if index is None else f',"group_index":{serialization.json_value(index)}'


class BoundJson(NamedTuple):
    """A :class:`JsonTemplate` with its header fields filled in."""

    #: The text before the arguments, split where the quoted id goes.
    parts: tuple[str, ...]
    #: The text after the arguments.
    tail: str

    def render(self, task_id: str, args: Any, kwargs: Any) -> bytes:
        """Return the UTF-8 JSON of the message with this id and arguments.

        Raises:
            TypeError: an argument JSON cannot carry.
            ValueError: a circular reference in the arguments.
        """
        return (
            serialization.json_value(task_id).join(self.parts)
            + serialization.json_text((args, kwargs))[1:-1]
            + self.tail
        ).encode("utf-8")
