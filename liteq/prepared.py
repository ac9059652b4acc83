"""Calling options resolved once: the :class:`Prepared` call.

Everything in a task's message and queue row except its id and arguments
comes from the calling options, the task's attributes and the app's
settings. Resolving that is most of the work of a ``.delay()``, so it is
cached at three levels:

* per task, what its attributes and the settings fix (queue, priority,
  serializer, limits, ``acks_late``...), refreshed when a setting or one of
  those attributes changes;
* per task, the whole Prepared of a call without options;
* per set of header values, the JSON template of the envelope (see
  :class:`~liteq.messages.JsonTemplate`), which renders the same bytes as
  encoding the :class:`~liteq.messages.Message`.
"""

from __future__ import annotations

import fnmatch
import operator
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from . import serialization
from .exceptions import ConfigurationError
from .messages import BoundJson, HeaderFields, JsonTemplate, Message, group_index_field
from .serialization import get_serializer
from .storage import NewTask
from .storage.broker import task_values
from .task import Task, current_task
from .task import _local as _task_local
from .timeutils import from_ts, seconds, to_utc

if TYPE_CHECKING:
    from .app import Liteq
    from .canvas import Signature

#: Calling options that only mean something to a network broker: accepted and
#: ignored, so code written for Celery runs unchanged.
_TRANSPORT_OPTIONS = (
    "exchange",
    "routing_key",
    "producer",
    "connection",
    "mandatory",
    "immediate",
    "add_to_parent",
    "publisher",
    "retry",
    "retry_policy",
    "compression",
    "exchange_type",
    "declare",
    "stamped_headers",
    "stamps",
    "reply_to",
    "delivery_mode",
)

#: Calling options that are protocol-2 message headers (Celery's "Hiding
#: sensitive information in arguments"): kept in the message's headers.
_HEADER_OPTIONS = ("argsrepr", "kwargsrepr")

_JSON = "application/json"
#: Stand-ins for the id and the message in ``Prepared.row_parts``.
_ID_MARK = object()
_DATA_MARK = object()

_origin_value = ""


def _origin() -> str:
    """``pid@hostname`` of this process (Celery's ``origin`` header)."""
    global _origin_value
    if not _origin_value:
        _origin_value = f"{os.getpid()}@{socket.gethostname()}"
    return _origin_value


def _forget_origin() -> None:
    global _origin_value
    _origin_value = ""


if hasattr(os, "register_at_fork"):
    # A forked child has another pid (and cached Prepareds compare origins).
    os.register_at_fork(after_in_child=_forget_origin)


def _signatures(app: Liteq, value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    from .canvas import maybe_signature

    items: Sequence[Signature | dict[str, Any]]
    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(maybe_signature(s, app=app)) for s in items]


def route(
    app: Liteq,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    options: dict[str, Any],
    task: Task | None,
) -> dict[str, Any]:
    """Return the routing options ``task_routes`` gives a task (``{}`` if none).

    As Celery's ``task_routes``: one router or a list/tuple of them, asked in
    order until one answers (returns something other than None). A router is

    * a mapping of task names to routes: the exact name first, then the keys
      that are glob patterns (``"feed.tasks.*"``, a key with ``*``) or
      compiled regular expressions (matched from the start), in order;
    * a list or tuple of ``(pattern, route)`` pairs, looked up the same way
      (Celery's ordered form, ``task_routes = ([...],)``); a lone pair also
      counts as such a list;
    * a function ``(name, args, kwargs, options, task=...)``, or an object
      with a ``route_for_task(name, args, kwargs)`` method (Celery before 4.0);
    * a string: the import path of such a router, imported on first use.

    A route is a dict (liteq uses ``queue`` and ``priority``; ``exchange``,
    ``routing_key`` and the like are accepted and ignored) or a queue name.

    Raises:
        ConfigurationError: a router string that cannot be imported, or an
            entry or a route that is none of the above.
    """
    routes = app.conf.task_routes
    if not routes:
        return {}
    for router in routes if isinstance(routes, (list, tuple)) else (routes,):
        if isinstance(router, str):
            router = _named_router(router)
        if isinstance(router, Mapping):
            found = router.get(name)
            if found is None:
                found = _by_pattern(router.items(), name)
        elif isinstance(router, (list, tuple)):
            found = _by_pairs(router, name)
        else:
            legacy = getattr(router, "route_for_task", None)
            if legacy is not None:
                found = legacy(name, args, kwargs)
            elif callable(router):
                found = router(name, args, kwargs, options, task=task)
            else:
                raise ConfigurationError(f"task_routes: {router!r} is not a router")
        if found is not None:
            return _as_route(found)
    return {}


def _by_pattern(items: Iterable[tuple[Any, Any]], name: str) -> Any:
    """Return the route of the first glob or regex key matching ``name`` (or None)."""
    for key, value in items:
        if isinstance(key, str):
            if "*" in key and fnmatch.fnmatchcase(name, key):
                return value
        elif isinstance(key, re.Pattern) and key.match(name):
            return value
    return None


def _by_pairs(pairs: Sequence[Any], name: str) -> Any:
    """Return the route ``(pattern, route)`` pairs give ``name`` (or None)."""
    if len(pairs) == 2 and isinstance(pairs[0], (str, re.Pattern)):
        pairs = (pairs,)  # a lone pair, not a list of them
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigurationError(
                f"task_routes: expected (pattern, route) pairs, got {pair!r}"
            )
        if pair[0] == name and pair[1] is not None:
            return pair[1]
    return _by_pattern(pairs, name)


def _as_route(found: Any) -> dict[str, Any]:
    """Return a router's answer as routing options (a string is a queue name)."""
    if isinstance(found, str):
        return {"queue": found} if found else {}
    try:
        routed = dict(found)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"task_routes: a route must be a dict or a queue name, not {found!r}"
        ) from None
    queue = routed.get("queue")
    if queue is not None and not isinstance(queue, str):
        # A kombu.Queue (or anything with a name), as Celery accepts.
        named = getattr(queue, "name", None)
        if not isinstance(named, str) or not named:
            raise ConfigurationError(f"task_routes: {queue!r} names no queue")
        routed["queue"] = named
    return routed


#: Routers named by import path in ``task_routes``, by path (imported once).
_NAMED_ROUTERS: dict[str, Any] = {}


def _named_router(path: str) -> Any:
    """Return the router ``path`` names, importing it on first use.

    Raises:
        ConfigurationError: it cannot be imported, or is not a router.
    """
    found = _NAMED_ROUTERS.get(path)
    if found is not None:
        return found
    from .config import import_object

    try:
        found = import_object(path)
    except Exception as exc:
        hint = ""
        if "*" in path:
            # ("feed.*", {...}) as the whole setting is two routers, not a pair.
            hint = "; (pattern, route) pairs go in a list: ([(pattern, route)],)"
        raise ConfigurationError(
            f"task_routes: cannot import the router {path!r}: {exc!r}{hint}"
        ) from exc
    if isinstance(found, type) and hasattr(found, "route_for_task"):
        found = found()  # a router class of Celery before 4.0: one instance
    if not callable(found) and not hasattr(found, "route_for_task"):
        raise ConfigurationError(
            f"task_routes: {path!r} names {found!r}, which is not a router"
        )
    _NAMED_ROUTERS[path] = found
    return found


# -- per-task defaults -------------------------------------------------------------------

#: The task attributes the defaults are made of: a change to one refreshes them.
_TASK_OPTIONS = operator.attrgetter(
    "queue",
    "priority",
    "serializer",
    "expires",
    "time_limit",
    "soft_time_limit",
    "ignore_result",
    "acks_late",
    "reject_on_worker_lost",
)


def _clamp_priority(value: Any) -> int:
    return max(0, min(255, int(value)))


class _Defaults:
    """What a task's attributes and the app's settings fix for every call of it."""

    __slots__ = (
        "acks_late",
        "default_priority",
        "expires",
        "ignore_result",
        "key",
        "naive_tz",
        "plain",
        "priority",
        "queue",
        "reject",
        "routes",
        "serializer",
        "soft_time_limit",
        "task",
        "task_priority",
        "time_limit",
    )

    def __init__(self, app: Liteq, task: Task | None, key: tuple[Any, ...]) -> None:
        conf = app.conf
        self.key = key
        self.task = task
        #: The Prepared of a call without options (see ``plain``).
        self.plain: Prepared | None = None
        # Kept as the object, not its truth: a routes dict may gain entries.
        self.routes: Any = conf.task_routes
        self.default_priority: Any = conf.task_default_priority or 0
        # Naive datetimes are in the app's time zone when enable_utc is off.
        self.naive_tz = app.timezone if not conf.enable_utc else None
        if task is not None:
            self.queue: str = task.queue or conf.task_default_queue
            self.task_priority: Any = task.priority
            self.serializer: str = task.serializer or conf.task_serializer
            self.expires: Any = task.expires
            self.time_limit: Any = task.time_limit
            self.soft_time_limit: Any = task.soft_time_limit
            self.ignore_result = bool(task.effective_ignore_result)
            self.acks_late = task.effective_acks_late
            self.reject = task.effective_reject_on_worker_lost
        else:
            self.queue = conf.task_default_queue
            self.task_priority = None
            self.serializer = conf.task_serializer
            self.expires = None
            self.time_limit = None
            self.soft_time_limit = None
            # A task unknown here: the settings cannot say it ignores results.
            self.ignore_result = False
            self.acks_late = bool(conf.task_acks_late)
            self.reject = bool(conf.task_reject_on_worker_lost)
        if self.time_limit is None:
            self.time_limit = conf.task_time_limit
        if self.soft_time_limit is None:
            self.soft_time_limit = conf.task_soft_time_limit
        self.priority = _clamp_priority(
            self.default_priority if self.task_priority is None else self.task_priority
        )


def _defaults(app: Liteq, name: str, task: Task | None) -> _Defaults:
    """Return the cached defaults of ``task`` (or of an unknown task ``name``)."""
    conf = app.conf
    key: tuple[Any, ...]
    if task is None:
        key = (conf, conf._revision)
    else:
        # The effective_* options read the task's own app's settings.
        task_conf = task.app.conf
        key = (
            conf,
            conf._revision,
            task_conf,
            task_conf._revision,
            _TASK_OPTIONS(task),
        )
    cache: dict[str, _Defaults] = app._publish_defaults
    found = cache.get(name)
    if found is not None and found.task is task and found.key == key:
        return found
    found = _Defaults(app, task, key)
    if len(cache) >= 4096:
        # Names sent by send_task are unbounded; the common ones come back.
        cache.clear()
    cache[name] = found
    return found


# -- one call, prepared ------------------------------------------------------------------

#: JSON templates by the header values they fix (see ``Prepared._template_key``).
_TEMPLATES: dict[tuple[Any, ...], JsonTemplate | None] = {}


@dataclass(slots=True, eq=False)
class Prepared:
    """Everything in a task's message and queue row but its id and arguments.

    Made by :func:`prepare`; one Prepared serves every call with the same
    options (all calls without options, a bulk enqueue).
    """

    name: str
    queue: str
    priority: int
    serializer: str
    eta_ts: float | None
    expires_ts: float | None
    retries: int
    group_id: str | None
    group_index: int | None
    #: None: each task is its own root.
    root_id: str | None
    parent_id: str | None
    timelimit: tuple[float | None, float | None]
    ignore_result: bool
    shadow: str | None
    origin: str
    callbacks: list[dict[str, Any]] | None
    errbacks: list[dict[str, Any]] | None
    chain: list[dict[str, Any]] | None
    chord: dict[str, Any] | None
    headers: dict[str, Any]
    acks_late: bool
    reject: bool
    unique_key: str | None
    #: Many calls will use this one: worth a template of its own.
    shared: bool = False
    _render: Callable[[str, Any, Any], bytes] | None = field(default=None, repr=False)
    _tried: bool = field(default=False, repr=False)

    def message(
        self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Message:
        """Return the :class:`Message` of one call."""
        return Message(
            task=self.name,
            id=task_id,
            args=tuple(args),
            kwargs=dict(kwargs),
            eta=from_ts(self.eta_ts) if self.eta_ts is not None else None,
            expires=from_ts(self.expires_ts) if self.expires_ts is not None else None,
            retries=self.retries,
            group=self.group_id,
            group_index=self.group_index,
            root_id=self.root_id or task_id,
            parent_id=self.parent_id,
            timelimit=self.timelimit,
            ignore_result=self.ignore_result,
            shadow=self.shadow,
            origin=self.origin,
            callbacks=self.callbacks,
            errbacks=self.errbacks,
            chain=self.chain,
            chord=self.chord,
            queue=self.queue,
            priority=self.priority,
            headers=dict(self.headers),
        )

    def encode(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[bytes, str]:
        """Serialize the message of one call: the bytes ``message().encode()`` gives.

        Returns:
            ``(data, content_type)``.

        Raises:
            EncodeError: an argument cannot be serialized.
        """
        render = self._render if self._tried else self.renderer()
        if render is not None:
            try:
                return render(task_id, args, kwargs), _JSON
            except Exception:
                pass  # the generic path below raises the usual EncodeError
        return self.message(task_id, args, kwargs).encode(self.serializer)

    def renderer(self) -> Callable[[str, Any, Any], bytes] | None:
        """Return what renders this call's messages from a template, or None.

        ``render(task_id, args, kwargs)`` gives the bytes :meth:`encode`
        gives (JSON), or raises where :meth:`encode` takes its generic path
        (which raises the usual EncodeError). None: no template serves, use
        :meth:`encode`.
        """
        if not self._tried:
            self._render = self._make_renderer()
            self._tried = True
        return self._render

    def _make_renderer(self) -> Callable[[str, Any, Any], bytes] | None:
        found = self._template_fields()
        if found is None:
            return None
        template, fields = found
        if self.shared:
            return _bound_renderer(template.bind(fields))
        return lambda task_id, args, kwargs: template.render(
            task_id, args, kwargs, fields
        )

    def bound(self) -> BoundJson | None:
        """Return the template of this call's JSON messages, headers filled in.

        ``quote(task_id).join(parts) + args_kwargs + tail``, where
        ``args_kwargs`` is the JSON of ``(args, kwargs)`` without its
        brackets, gives the bytes :meth:`encode` gives (UTF-8 encoded). For
        rendering many messages at once (a bulk enqueue).

        Returns:
            None when no template serves (see :meth:`renderer`).
        """
        found = self._template_fields()
        if found is None:
            return None
        template, fields = found
        return template.bind(fields)

    def _template_fields(
        self,
    ) -> tuple[JsonTemplate, HeaderFields] | None:
        if get_serializer(self.serializer) is not serialization.JSON:
            return None
        try:
            fields = JsonTemplate.fields(
                from_ts(self.eta_ts).isoformat() if self.eta_ts is not None else None,
                (
                    from_ts(self.expires_ts).isoformat()
                    if self.expires_ts is not None
                    else None
                ),
                self.group_index,
                self.root_id or None,
                self.parent_id,
            )
        except Exception:
            return None  # values JSON cannot carry: the generic path reports them
        template = self._template()
        if template is None:
            return None
        return template, fields

    def indexed_renderer(self) -> Callable[[str, Any, Any, int], bytes] | None:
        """Return what renders the messages of a group's members from this call.

        ``render(task_id, args, kwargs, group_index)`` gives the bytes the
        Prepared of that member (this one with ``group_index`` set) encodes,
        or raises where that takes its generic path. None: no template serves.
        """
        if self.group_index is not None:
            return None
        if get_serializer(self.serializer) is not serialization.JSON:
            return None
        try:
            eta, expires, _, root_id, parent_id = JsonTemplate.fields(
                from_ts(self.eta_ts).isoformat() if self.eta_ts is not None else None,
                (
                    from_ts(self.expires_ts).isoformat()
                    if self.expires_ts is not None
                    else None
                ),
                None,
                self.root_id or None,
                self.parent_id,
            )
        except Exception:
            return None
        shared, self.shared = self.shared, True
        try:
            template = self._template()
        finally:
            self.shared = shared
        if template is None:
            return None
        render = template.render

        def render_member(task_id: str, args: Any, kwargs: Any, index: int) -> bytes:
            fields = (eta, expires, group_index_field(index), root_id, parent_id)
            return render(task_id, args, kwargs, fields)

        return render_member

    def _template(self) -> JsonTemplate | None:
        """Return the (cached) template of this call's header values, or None."""
        key = self._template_key()
        if key is not None:
            try:
                return _TEMPLATES[key]
            except KeyError:
                template = JsonTemplate.of(self.message("", (), {}))
                if len(_TEMPLATES) >= 1024:
                    _TEMPLATES.clear()
                _TEMPLATES[key] = template
                return template
            except TypeError:
                pass  # an unhashable value in the key
        # Links, headers...: a template only pays for itself in a bulk enqueue.
        return JsonTemplate.of(self.message("", (), {})) if self.shared else None

    def _template_key(self) -> tuple[Any, ...] | None:
        if self.callbacks or self.errbacks or self.chain or self.chord or self.headers:
            return None
        return (
            self.name,
            self.queue,
            self.priority,
            self.retries,
            self.group_id,
            self.timelimit,
            self.ignore_result,
            self.shadow,
            self.origin,
        )

    def values(
        self, task_id: str, data: bytes, content_type: str, now: float
    ) -> tuple[Any, ...]:
        """Return the queue row of one call enqueued at ``now`` (``Broker.insert``)."""
        return task_values(
            task_id,
            self.name,
            data,
            content_type,
            self.queue,
            self.priority,
            self.eta_ts,
            self.expires_ts,
            self.acks_late,
            self.reject,
            self.retries,
            self.unique_key,
            now,
        )

    def row_parts(self, now: float) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """Split :meth:`values` of a JSON message around its id and message.

        Returns:
            ``(head, tail)`` such that ``values(task_id, data, JSON, now)``
            is ``(task_id, *head, data, *tail)`` for every id and message.
        """
        probe = self.values(_ID_MARK, _DATA_MARK, _JSON, now)  # type: ignore[arg-type]
        if probe[0] is not _ID_MARK:  # pragma: no cover - the row layout changed
            raise AssertionError("the task id must lead the queue row")
        at = next(i for i, value in enumerate(probe) if value is _DATA_MARK)
        return probe[1:at], probe[at + 1 :]

    def row(self, task_id: str, data: bytes, content_type: str) -> NewTask:
        """Return the :class:`NewTask` of one call."""
        return NewTask(
            task_id=task_id,
            name=self.name,
            message=data,
            content_type=content_type,
            queue=self.queue,
            priority=self.priority,
            eta=self.eta_ts,
            expires=self.expires_ts,
            acks_late=self.acks_late,
            reject_on_worker_lost=self.reject,
            retries=self.retries,
            unique_key=self.unique_key,
        )


def _bound_renderer(bound: BoundJson) -> Callable[[str, Any, Any], bytes]:
    """Return ``bound.render`` as one closure (the ``.delay()`` hot path).

    Same bytes as ``bound.render``; any error (an argument JSON cannot carry,
    a task id that is not a string) propagates for ``Prepared.encode`` to
    take the generic path, which raises the usual EncodeError.
    """
    chunks = serialization.json_chunks
    if chunks is None:  # pragma: no cover - a Python without the C encoder
        return bound.render
    parts, tail = bound.parts, bound.tail
    quote = encode_basestring
    join = "".join

    def render(task_id: str, args: Any, kwargs: Any) -> bytes:
        return (
            quote(task_id).join(parts) + join(chunks((args, kwargs), 0))[1:-1] + tail
        ).encode()

    return render


def prepare(
    app: Liteq,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    countdown: float | None = None,
    eta: datetime | str | None = None,
    expires: float | datetime | timedelta | str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    serializer: str | None = None,
    link: Any = None,
    link_error: Any = None,
    headers: Mapping[str, Any] | None = None,
    ignore_result: bool | None = None,
    time_limit: float | None = None,
    soft_time_limit: float | None = None,
    shadow: str | None = None,
    parent_id: str | None = None,
    root_id: str | None = None,
    group_id: str | None = None,
    group_index: int | None = None,
    chord: Any = None,
    chain: Any = None,
    retries: int = 0,
    unique_key: str | None = None,
    task_type: Task | None = None,
    now: float | None = None,
    **extra: Any,
) -> Prepared:
    """Resolve the calling options of a call of task ``name`` (nothing is written).

    ``args`` and ``kwargs`` are only shown to ``task_routes`` functions; the
    result serves any call with the same options and routing. ``eta`` and
    ``expires`` may be ISO 8601 strings (naive ones are read as naive
    datetimes are); ``argsrepr`` and ``kwargsrepr`` (how to show the
    arguments, e.g. to hide secrets) become message headers.

    Raises:
        TypeError: an unknown calling option, or an ``eta`` that is neither a
            datetime nor a string.
        ValueError: an ``eta`` or ``expires`` string that is not ISO 8601.
        ConfigurationError: ``task_routes`` holds a router that cannot be
            used (see :func:`route`).
    """
    if extra:
        for ignored in _TRANSPORT_OPTIONS:
            extra.pop(ignored, None)
        group = extra.pop("group", None)
        if group and group_id is None:
            group_id = group
        for header in _HEADER_OPTIONS:
            value = extra.pop(header, None)
            if value is not None:
                headers = {**(headers or {}), header: value}
        if extra:
            raise TypeError(f"unexpected options for {name}: {sorted(extra)}")
    task = task_type if task_type is not None else app.tasks.get(name)
    defaults = _defaults(app, name, task)
    # A call without options: the task's Prepared serves every such call.
    is_plain = (
        countdown is None
        and eta is None
        and expires is None
        and queue is None
        and priority is None
        and serializer is None
        and not link
        and not link_error
        and headers is None
        and ignore_result is None
        and time_limit is None
        and soft_time_limit is None
        and shadow is None
        and parent_id is None
        and root_id is None
        and group_id is None
        and group_index is None
        and not chord
        and not chain
        and retries == 0
        and unique_key is None
        and defaults.expires is None
        and not defaults.routes
    )
    parent = current_task()
    if parent is not None and not parent.request.called_directly:
        request = parent.request
        parent_id = parent_id or request.id
        root_id = root_id or request.root_id or request.id
        is_plain = False
    if is_plain:
        cached = defaults.plain
        if cached is not None and cached.origin == _origin():
            return cached
    if defaults.routes:
        # A router function sees the call's options, as Celery's do.
        given = {
            key: value
            for key, value in (
                ("countdown", countdown),
                ("eta", eta),
                ("expires", expires),
                ("queue", queue),
                ("priority", priority),
                ("serializer", serializer),
                ("headers", headers),
                ("ignore_result", ignore_result),
                ("time_limit", time_limit),
                ("soft_time_limit", soft_time_limit),
                ("shadow", shadow),
            )
            if value is not None
        }
        routed = route(app, name, args or (), kwargs or {}, given, task)
        queue = queue or routed.get("queue") or defaults.queue
        if priority is None:
            priority = routed.get("priority", defaults.task_priority)
            if priority is None:
                priority = defaults.default_priority
    else:
        queue = queue or defaults.queue
    if expires is None:
        expires = defaults.expires
    eta_ts: float | None = None
    expires_ts: float | None = None
    if countdown is not None or eta is not None or expires is not None:
        now_ts = app.clock.time() if now is None else now
        if countdown is not None:
            eta_ts = now_ts + float(countdown)
        elif eta is not None:
            eta_ts = _epoch(eta, "eta", defaults.naive_tz)
        if isinstance(expires, (datetime, str)):
            expires_ts = _epoch(expires, "expires", defaults.naive_tz)
        elif isinstance(expires, timedelta):
            expires_ts = now_ts + expires.total_seconds()
        elif expires is not None:
            expires_ts = now_ts + float(expires)
    prepared = Prepared(
        name=name,
        queue=queue,
        priority=defaults.priority if priority is None else _clamp_priority(priority),
        serializer=serializer or defaults.serializer,
        eta_ts=eta_ts,
        expires_ts=expires_ts,
        retries=retries,
        group_id=group_id,
        group_index=group_index,
        root_id=root_id,
        parent_id=parent_id,
        timelimit=(
            seconds(defaults.time_limit if time_limit is None else time_limit),
            seconds(
                defaults.soft_time_limit if soft_time_limit is None else soft_time_limit
            ),
        ),
        ignore_result=(
            defaults.ignore_result if ignore_result is None else bool(ignore_result)
        ),
        shadow=shadow,
        origin=_origin(),
        callbacks=_signatures(app, link),
        errbacks=_signatures(app, link_error),
        chain=[dict(s) for s in chain] if chain else None,
        chord=dict(chord) if chord else None,
        headers=dict(headers or {}),
        acks_late=defaults.acks_late,
        reject=defaults.reject,
        unique_key=unique_key,
        shared=is_plain,
    )
    if is_plain:
        defaults.plain = prepared
    return prepared


def _epoch(value: Any, option: str, naive_tz: tzinfo | None) -> float | None:
    """Return the epoch seconds of an ``eta``/``expires`` datetime or ISO 8601 string.

    Returns:
        None for an empty string (no time, as Celery's worker reads it).

    Raises:
        TypeError: ``value`` is neither a datetime nor a string.
        ValueError: a string that is not an ISO 8601 date and time.
    """
    if isinstance(value, str):
        if not value:
            return None
        try:
            return to_utc(value, naive_tz).timestamp()
        except (ValueError, OverflowError) as exc:
            raise ValueError(
                f"{option}={value!r} is not an ISO 8601 date and time ({exc})"
            ) from exc
    if not isinstance(value, datetime):
        raise TypeError(
            f"{option} must be a datetime or an ISO 8601 string, "
            f"not {type(value).__name__}"
        )
    return to_utc(value, naive_tz).timestamp()


def plain(app: Liteq, name: str, task_type: Task | None = None) -> Prepared | None:
    """Return the cached Prepared of a call of ``name`` without options, if it serves.

    The same as ``prepare(app, name, task_type=task_type)`` but cheaper; None
    (call ``prepare``) before the first such call, and when routes may look
    at the arguments, expiry counts from each call, or the call comes from
    inside a task (its parent and root ids).
    """
    task = task_type if task_type is not None else app.tasks.get(name)
    defaults = _defaults(app, name, task)
    cached = defaults.plain
    if (
        cached is None
        or defaults.routes
        or defaults.expires is not None
        # Empty after a fork: the cached origin names the parent.
        or cached.origin != _origin_value
    ):
        return None
    stack = getattr(_task_local, "stack", None)
    if stack:
        # Called from inside a task (current_task(), inlined): the call
        # gets the running task as its parent.
        parent = stack[-1]
        if not parent.request.called_directly:
            return None
    return cached
