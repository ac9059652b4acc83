"""Serializers: JSON by default, pickle only when accepted, msgpack if installed.

The JSON form tags values JSON has no type for the way Celery's (kombu's) JSON
does, so ``datetime``, ``date``, ``time``, ``UUID``, ``Decimal`` and ``bytes``
survive a round trip: ``{"__type__": "datetime", "__value__": "2024-…"}``.
Tuples become lists, as in Celery.
"""

from __future__ import annotations

import base64
import json
import pickle
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from .exceptions import ContentDisallowed, DecodeError, EncodeError


@dataclass(frozen=True)
class Serializer:
    """A named pair of functions turning values into bytes and back."""

    name: str
    content_type: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _tag(marker: str, value: Any) -> dict[str, Any]:
    return {"__type__": marker, "__value__": value}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return _tag("datetime", obj.isoformat())
    if isinstance(obj, date):
        return _tag("date", obj.isoformat())
    if isinstance(obj, time):
        return _tag("time", obj.isoformat())
    if isinstance(obj, Decimal):
        return _tag("decimal", str(obj))
    if isinstance(obj, uuid.UUID):
        return _tag("uuid", str(obj))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        try:
            return _tag("bytes", raw.decode("utf-8"))
        except UnicodeDecodeError:
            return _tag("base64", base64.b64encode(raw).decode("ascii"))
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    reducer = getattr(obj, "__json__", None)
    if reducer is not None:
        return reducer()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v),
}


def _json_hook(obj: dict[str, Any]) -> Any:
    marker = obj.get("__type__")
    if marker is not None and len(obj) == 2 and "__value__" in obj:
        decoder = _DECODERS.get(marker)
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


_encoder = json.JSONEncoder(
    default=_json_default, separators=(",", ":"), ensure_ascii=False
)
_decoder = json.JSONDecoder(object_hook=_json_hook)


def _reusable_encoder() -> Callable[[Any, int], Any] | None:
    """Return a C encoder made once, giving exactly ``_encoder.encode``'s text.

    ``JSONEncoder.encode`` builds a new C encoder on every call, which costs
    more than encoding a task message itself. This one skips the circular
    reference check (a cycle ends in RecursionError), so callers fall back to
    ``_encoder.encode`` on any error to raise the usual exception. None when
    this Python has no C encoder or it does not match.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        iterencode = make(
            None, _json_default, encode_basestring, None, ":", ",", False, False, True
        )
        sample = [{"a": (1, 2.5, None, True)}, 'é"\n', datetime(2024, 1, 1), -0.0]
        text = "".join(iterencode(sample, 0))
        if text != _encoder.encode(sample):  # pragma: no cover
            return None
    except Exception:  # pragma: no cover - an interpreter without it
        return None
    return iterencode  # type: ignore[no-any-return]


#: ``json_chunks(value, 0)`` gives pieces whose join is :func:`json_text`'s
#: text, without its fallback: any error (a cycle too) means "call json_text".
#: None when this Python has no usable C encoder. For loops that encode many
#: values and handle errors themselves.
json_chunks = _reusable_encoder()


def json_text(value: Any) -> str:
    """Return the compact JSON text of ``value`` (what :func:`json_dumps` encodes).

    Raises:
        TypeError: a value JSON cannot carry.
        ValueError: a circular reference.
    """
    if json_chunks is not None:
        try:
            return "".join(json_chunks(value, 0))
        except Exception:
            pass  # re-encoded below, for the usual error
    return _encoder.encode(value)


def json_value(value: Any) -> str:
    """Return the JSON text of one value, with shortcuts for str, int and None."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    return json_text(value)


def canonical_json(value: Any) -> str:
    """JSON text with Celery's type tags and sorted keys: equal values, equal text.

    Raises:
        TypeError: a value of a type JSON cannot carry.
    """
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=_json_default
    )


def json_dumps(value: Any) -> bytes:
    """Serialize ``value`` to compact UTF-8 JSON with Celery's type tags."""
    return json_text(value).encode("utf-8")


def json_loads(data: bytes | str) -> Any:
    """Parse JSON produced by :func:`json_dumps` (or by Celery)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    return _decoder.decode(data)


def _pickle_dumps(value: Any) -> bytes:
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_loads(data: bytes) -> Any:
    return pickle.loads(bytes(data))  # noqa: S301 - only reachable when accepted


_REGISTRY: dict[str, Serializer] = {}
_BY_CONTENT_TYPE: dict[str, Serializer] = {}


def register(serializer: Serializer) -> None:
    """Register a serializer under its name and its content type."""
    _REGISTRY[serializer.name] = serializer
    _BY_CONTENT_TYPE[serializer.content_type] = serializer


#: The JSON serializer (the default): publishing renders its messages from templates.
JSON = Serializer("json", "application/json", json_dumps, json_loads)
register(JSON)
register(
    Serializer("pickle", "application/x-python-serialize", _pickle_dumps, _pickle_loads)
)


def _register_msgpack() -> bool:
    try:
        import msgpack
    except ImportError:
        return False

    def pack_default(obj: Any) -> Any:
        return msgpack.ExtType(1, json_dumps(_json_default(obj)))

    def unpack_ext(code: int, data: bytes) -> Any:
        if code == 1:
            # json_loads already turns the tagged value back into its type.
            return json_loads(data)
        return msgpack.ExtType(code, data)

    def dumps(value: Any) -> bytes:
        return msgpack.packb(value, default=pack_default, use_bin_type=True)  # type: ignore[no-any-return]

    def loads(data: bytes) -> Any:
        return msgpack.unpackb(
            bytes(data), raw=False, ext_hook=unpack_ext, strict_map_key=False
        )

    register(Serializer("msgpack", "application/x-msgpack", dumps, loads))
    return True


HAS_MSGPACK = _register_msgpack()


def get_serializer(name_or_type: str) -> Serializer:
    """Return the serializer registered under a name or content type.

    Raises:
        EncodeError: nothing is registered under that name (for msgpack: the
            optional dependency is not installed).
    """
    found = _REGISTRY.get(name_or_type) or _BY_CONTENT_TYPE.get(name_or_type)
    if found is None:
        hint = (
            " (pip install 'liteq-tasks[msgpack]')" if name_or_type == "msgpack" else ""
        )
        raise EncodeError(
            f"unknown serializer {name_or_type!r}{hint}; known: {sorted(_REGISTRY)}"
        )
    return found


def accepted_content_types(accept: Iterable[str]) -> frozenset[str]:
    """Return the content types for a Celery ``accept_content`` list.

    Entries may be serializer names (``"json"``) or content types.
    """
    types: set[str] = set()
    for item in accept:
        ser = _REGISTRY.get(item)
        types.add(ser.content_type if ser is not None else item)
    return frozenset(types)


def dumps(value: Any, serializer: str = "json") -> tuple[bytes, str]:
    """Serialize ``value``.

    Returns:
        ``(data, content_type)``.

    Raises:
        EncodeError: the value cannot be serialized with that serializer.
    """
    ser = get_serializer(serializer)
    try:
        return ser.dumps(value), ser.content_type
    except Exception as exc:
        raise EncodeError(f"cannot serialize with {ser.name}: {exc}") from exc


def loads(data: bytes, content_type: str, accept: frozenset[str] | None = None) -> Any:
    """Deserialize ``data``.

    Raises:
        ContentDisallowed: ``content_type`` is not in ``accept``.
        DecodeError: the data cannot be parsed.
    """
    if accept is not None and content_type not in accept:
        raise ContentDisallowed(
            f"refusing to deserialize content of type {content_type!r}; "
            f"accept_content allows {sorted(accept)}",
            data=bytes(data),
        )
    ser = _BY_CONTENT_TYPE.get(content_type)
    if ser is None:
        raise DecodeError(
            f"no serializer for content type {content_type!r}", data=bytes(data)
        )
    try:
        return ser.loads(data)
    except Exception as exc:
        raise DecodeError(
            f"cannot decode {content_type} data: {exc}", bytes(data), exc
        ) from exc


# -- exceptions as data (Celery's result format) -----------------------------------------


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """Return Celery's stored form of an exception.

    ``{"exc_type": name, "exc_message": args, "exc_module": module}``; the
    args are made serializable with ``repr`` where JSON cannot carry them.
    """
    args: list[Any] = []
    for arg in exc.args:
        try:
            json_dumps(arg)
            args.append(arg)
        except (TypeError, ValueError):
            args.append(repr(arg))
    return {
        "exc_type": type(exc).__qualname__,
        "exc_message": args,
        "exc_module": type(exc).__module__,
    }


def is_exception_dict(value: Any) -> bool:
    """Return True if ``value`` looks like :func:`exception_to_dict` output."""
    return isinstance(value, dict) and "exc_type" in value and "exc_message" in value


_synthetic: dict[tuple[str, str], type[Exception]] = {}


def dict_to_exception(data: dict[str, Any]) -> BaseException:
    """Rebuild an exception from :func:`exception_to_dict` output.

    The class is taken only from a module that is already imported (or
    builtins); importing modules named by stored data would let a result
    decide what code runs. Otherwise an Exception subclass with the same name
    and module is made up, so ``type(exc).__name__`` and ``str(exc)`` still
    read as the original.
    """
    import builtins
    import sys

    name = str(data.get("exc_type") or "Exception")
    module = str(data.get("exc_module") or "builtins")
    message = data.get("exc_message") or []
    if not isinstance(message, (list, tuple)):
        message = [message]
    owner = builtins if module == "builtins" else sys.modules.get(module)
    cls: Any = owner
    for part in name.split("."):
        cls = getattr(cls, part, None) if cls is not None else None
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        key = (module, name)
        cls = _synthetic.get(key)
        if cls is None:
            cls = type(name.rsplit(".", 1)[-1], (Exception,), {"__module__": module})
            _synthetic[key] = cls
    try:
        made: object = cls(*message)
    except Exception:
        made = Exception(*message)
    if not isinstance(made, BaseException):  # pragma: no cover - defensive
        made = Exception(*message)
    return made
