"""Publishing: turning calls into messages and queue rows, and writing them.

The publish path runs on every ``.delay()``, so it does one INSERT with
pre-rendered SQL and no other query: routing, defaults and serialization all
happen in Python before the write, mostly resolved once per task (see
:mod:`liteq.prepared`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import signals
from .exceptions import DatabaseLocked
from .messages import Message
from .prepared import Prepared, plain, prepare, route
from .storage import NewTask
from .task import Task

if TYPE_CHECKING:
    from .app import Liteq

logger = logging.getLogger("liteq.app")

# -- task ids ------------------------------------------------------------------------

#: The variant digit of a UUID string, from the random hex digit in its place.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}

#: Random ends of task ids (``xxx-Vxxx-xxxxxxxxxxxx``), drawn 256 at a time.
_tails: list[str] = []
#: ``(ms, "tttttttt-tttt-7")``: the time part of ids made in that millisecond.
_stamp: tuple[int, str] = (-1, "")


def _random_tails(n: int) -> list[str]:
    h = os.urandom(10 * n).hex()
    variant = _VARIANT
    return [
        f"{h[i : i + 3]}-{variant[h[i + 3]]}{h[i + 4 : i + 7]}-{h[i + 7 : i + 19]}"
        for i in range(0, 20 * n, 20)
    ]


def _time_part(ms: int) -> str:
    global _stamp
    t = f"{ms:012x}"
    _stamp = (ms, f"{t[:8]}-{t[8:]}-7")
    return _stamp[1]


def next_id() -> str:
    """Return a new task id, as :func:`liteq.messages.new_id` makes them.

    A version-7 UUID string (time-ordered to the millisecond, 74 random
    bits); the randomness is drawn from ``os.urandom`` 256 ids at a time,
    which makes this several times cheaper than ``new_id``. Thread-safe
    (``list.pop`` is atomic), and a forked child never reuses its parent's
    drawn randomness.
    """
    try:
        tail = _tails.pop()
    except IndexError:
        fresh = _random_tails(256)
        tail = fresh.pop()
        _tails.extend(fresh)
    ms = time.time_ns() // 1_000_000
    stamp = _stamp
    return (stamp[1] if stamp[0] == ms else _time_part(ms)) + tail


def next_ids(n: int) -> list[str]:
    """Return ``n`` new task ids (as :func:`next_id`) for one bulk enqueue."""
    prefix = _time_part(time.time_ns() // 1_000_000)
    # Sorted, so the bulk's ids increase like its rows: the id indexes (the
    # queue's, then the results') are written at one end, not on a random
    # page per task (measured: a worker's ack wrote half the WAL pages).
    return [prefix + tail for tail in sorted(_random_tails(n))]


def _forget_ids() -> None:
    # Parent and child would otherwise hand out the same random parts.
    _tails.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_ids)


def build_message(
    app: Liteq,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    task_id: str | None = None,
    **options: Any,
) -> tuple[Message, NewTask]:
    """Build the message and the queue row for one task (nothing is written).

    Options are the calling options of :meth:`Liteq.send_task` (``countdown``,
    ``eta``, ``expires``, ``queue``, ``priority``, ``serializer``, ``link``,
    ``link_error``, ``headers``, ``ignore_result``, ``time_limit``,
    ``soft_time_limit``, ``shadow``, ``parent_id``, ``root_id``,
    ``group_id``, ``group_index``, ``chord``, ``chain``, ``retries``,
    ``unique_key``), plus ``task_type`` (the Task, if known) and ``now``
    (epoch seconds countdowns start from).

    Returns:
        ``(message, row)``.

    Raises:
        EncodeError: an argument cannot be serialized.
        TypeError: an unknown calling option.
    """
    prepared = prepare(app, name, args, kwargs, **options)
    tid = task_id or next_id()
    call_args = tuple(args or ())
    call_kwargs = dict(kwargs or {})
    data, content_type = prepared.encode(tid, call_args, call_kwargs)
    message = prepared.message(tid, call_args, call_kwargs)
    return message, prepared.row(tid, data, content_type)


def build_row(
    app: Liteq,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    task_id: str | None = None,
    **options: Any,
) -> NewTask:
    """:func:`build_message` without the Message: only the queue row.

    For callers that build many rows and never look at the message (a
    workflow's tasks): making the Message costs as much as the row.

    Raises:
        EncodeError: an argument cannot be serialized.
        TypeError: an unknown calling option.
    """
    prepared = prepare(app, name, args, kwargs, **options)
    tid = task_id or next_id()
    data, content_type = prepared.encode(tid, tuple(args or ()), dict(kwargs or {}))
    return prepared.row(tid, data, content_type)


def build_values(
    app: Liteq,
    name: str,
    task: Task | None,
    arguments: Iterable[Any],
    with_kwargs: bool,
    now: float,
    options: dict[str, Any],
) -> list[tuple[Any, ...]]:
    """Build the queue rows (for ``Broker.insert_many``) of many calls of one task.

    ``arguments`` holds argument tuples, or ``(args, kwargs)`` pairs with
    ``with_kwargs``; ``options`` are the calling options of every call. Every
    call is checked against the task's signature before anything is returned.

    Raises:
        TypeError: arguments that do not fit the task, or an unknown option.
        EncodeError: an argument cannot be serialized.
    """
    task_id = options.pop("task_id", None)
    check = task if task is not None and task.typing else None
    shared: Prepared | None = None
    if not app.conf.task_routes:
        # Routing functions may look at the arguments: only without them is
        # one resolution good for every call.
        shared = prepare(app, name, (), {}, task_type=task, now=now, **options)
        shared.shared = True
    items = arguments if isinstance(arguments, list) else list(arguments)
    ids = [task_id] * len(items) if task_id else next_ids(len(items))
    if shared is not None and not with_kwargs:
        render = shared.renderer()
        if render is not None:
            return _plain_rows(shared, render, check, items, ids, now)
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for tid, item in zip(ids, items, strict=True):
        if with_kwargs:
            args, kwargs = item
            call_kwargs = dict(kwargs)
        else:
            args, call_kwargs = item, {}
        call_args = tuple(args)
        if check is not None:
            check.check_arguments(call_args, call_kwargs)
        prepared = shared
        if prepared is None:
            prepared = prepare(
                app, name, args, call_kwargs, task_type=task, now=now, **options
            )
        data, content_type = prepared.encode(tid, call_args, call_kwargs)
        append(prepared.values(tid, data, content_type, now))
    return rows


def _plain_rows(
    prepared: Prepared,
    render: Callable[[str, Any, Any], bytes],
    check: Task | None,
    items: list[Any],
    ids: list[str],
    now: float,
) -> list[tuple[Any, ...]]:
    """The rows of calls with positional arguments only, all from ``prepared``.

    What :func:`build_values` makes, with the per-row work cut to encoding
    the arguments: the JSON messages are rendered from ``prepared``'s
    template and the rows share every column but the id and the message.
    """
    head, tail = prepared.row_parts(now)
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    kwargs: dict[str, Any] = {}
    for tid, args in zip(ids, items, strict=True):
        if type(args) is not tuple:
            args = tuple(args)
        if check is not None:
            check.check_arguments(args, kwargs)
        try:
            data = render(tid, args, kwargs)
        except Exception:
            # The generic encoder raises the usual EncodeError.
            data, _ = prepared.encode(tid, args, kwargs)
        append((tid, *head, data, *tail))
    return rows


# -- writing -------------------------------------------------------------------------


def publish(
    app: Liteq,
    message: Message,
    row: NewTask,
    retry: bool | None = None,
    retry_policy: Mapping[str, Any] | None = None,
) -> bool:
    """Write one built task to the queue (firing the publish signals).

    With ``retry`` (default ``task_publish_retry``) a locked database is
    retried following ``retry_policy`` on top of busy_timeout.

    Returns:
        False if its ``unique_key`` was already queued.
    """
    fire = _has_publish_receivers()
    if fire:
        _before_publish(message, retry_policy)
    broker = app.storage.broker
    try:
        inserted = broker.enqueue(row, app.clock.time())
    except DatabaseLocked as exc:
        inserted = _retry_publish(
            app, lambda: broker.enqueue(row, app.clock.time()), exc, retry, retry_policy
        )
    if fire:
        _after_publish(message)
    return inserted


def send(
    app: Liteq,
    prepared: Prepared,
    task_id: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    retry: bool | None = None,
    retry_policy: Mapping[str, Any] | None = None,
) -> bool:
    """Encode and write one call made from ``prepared`` (as :func:`publish`).

    Returns:
        False if its ``unique_key`` was already queued.

    Raises:
        EncodeError: an argument cannot be serialized.
        StorageError: the database could not be written.
    """
    data, content_type = prepared.encode(task_id, args, kwargs)
    message: Message | None = None
    if _has_publish_receivers():
        message = prepared.message(task_id, args, kwargs)
        _before_publish(message, retry_policy)
    broker = app.storage.broker
    try:
        inserted = broker.insert(
            prepared.values(task_id, data, content_type, app.clock.time())
        )
    except DatabaseLocked as exc:
        inserted = _retry_publish(
            app,
            lambda: broker.insert(
                prepared.values(task_id, data, content_type, app.clock.time())
            ),
            exc,
            retry,
            retry_policy,
        )
    if message is not None:
        _after_publish(message)
    return inserted


def _has_publish_receivers() -> bool:
    return (
        signals.before_task_publish.has_receivers()
        or signals.after_task_publish.has_receivers()
    )


def _before_publish(message: Message, retry_policy: Mapping[str, Any] | None) -> None:
    envelope = message.to_dict()
    signals.before_task_publish.send(
        sender=message.task,
        body=envelope["body"],
        exchange="",
        routing_key=message.queue,
        headers=envelope["headers"],
        properties={},
        declare=[],
        retry_policy=retry_policy,
    )


def _after_publish(message: Message) -> None:
    envelope = message.to_dict()
    signals.after_task_publish.send(
        sender=message.task,
        body=envelope["body"],
        exchange="",
        routing_key=message.queue,
        headers=envelope["headers"],
    )


def _retry_publish(
    app: Liteq,
    fn: Callable[[], bool],
    locked: DatabaseLocked,
    retry: bool | None,
    policy: Mapping[str, Any] | None,
) -> bool:
    """Retry ``fn`` after its first try found the database ``locked``.

    Raises:
        DatabaseLocked: retrying is off, or every retry found it locked.
    """
    do_retry = app.conf.task_publish_retry if retry is None else retry
    # Inside a transaction the lock is ours: waiting cannot help.
    if not do_retry or app.storage.db.in_transaction():
        raise locked
    settings = dict(app.conf.task_publish_retry_policy or {})
    settings.update(policy or {})
    max_retries = int(settings.get("max_retries", 3))
    if max_retries <= 0:
        raise locked
    interval = float(settings.get("interval_start", 0.0))
    step = float(settings.get("interval_step", 0.2))
    interval_max = float(settings.get("interval_max", 0.2))
    attempt = 0
    while True:
        attempt += 1
        logger.warning(
            "database locked while publishing; retry %d/%d", attempt, max_retries
        )
        app.clock.wait(threading.Event(), interval)
        interval = min(interval + step, interval_max)
        try:
            return fn()
        except DatabaseLocked:
            if attempt >= max_retries:
                raise


__all__ = [
    "Prepared",
    "build_message",
    "build_row",
    "build_values",
    "plain",
    "prepare",
    "publish",
    "route",
    "send",
]
