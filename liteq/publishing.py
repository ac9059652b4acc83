"""Publishing: turning calls into messages and queue rows, and writing them.

The publish path runs on every ``.delay()``, so it does one INSERT with
pre-rendered SQL and no other query: routing, defaults and serialization all
happen in Python before the write, mostly resolved once per task (see
:mod:`liteq.prepared`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from . import serialization, signals
from .exceptions import DatabaseLocked
from .messages import Message, encode_envelope, new_id, new_ids
from .prepared import Prepared, plain, prepare, route
from .storage import NewTask
from .storage.broker import MESSAGE_AT as _MESSAGE
from .task import Task

if TYPE_CHECKING:
    from .app import Liteq
    from .storage.broker import Broker
    from .storage.db import Database

logger = logging.getLogger("liteq.app")


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
    tid = task_id or new_id()
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
    tid = task_id or new_id()
    data, content_type = prepared.encode(tid, tuple(args or ()), dict(kwargs or {}))
    return prepared.row(tid, data, content_type)


@dataclass(slots=True)
class Rows:
    """The queue rows of a bulk enqueue, as :func:`build_values` makes them.

    Either ``rows`` holds every complete row (for ``Broker.insert_many``), or
    it is None and row ``i`` is ``(ids[i], *head, messages[i], *tail)`` (for
    ``Broker.insert_uniform``, which binds the shared values once per
    statement instead of once per row).
    """

    #: The task ids, in the order of the calls.
    ids: list[str]
    rows: list[tuple[Any, ...]] | None = None
    head: tuple[Any, ...] = ()
    messages: list[bytes] = field(default_factory=list)
    tail: tuple[Any, ...] = ()
    #: The ids were made by :func:`~liteq.messages.new_ids` for these rows.
    fresh_ids: bool = False

    def insert(self, broker: Broker) -> int:
        """Write the rows in one transaction.

        Returns:
            How many rows were inserted (unique-key duplicates are skipped).

        Raises:
            StorageError: the database could not be written.
        """
        if self.rows is not None:
            return broker.insert_many(self.rows, self.fresh_ids)
        return broker.insert_uniform(
            self.head, self.ids, self.messages, self.tail, self.fresh_ids
        )


def build_values(
    app: Liteq,
    name: str,
    task: Task | None,
    arguments: Iterable[Any],
    with_kwargs: bool,
    now: float,
    options: dict[str, Any],
) -> Rows:
    """Build the queue rows of many calls of one task (nothing is written).

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
    ids = [task_id] * len(items) if task_id else new_ids(len(items))
    if shared is not None and not with_kwargs:
        render = shared.renderer()
        if render is not None:
            messages = _bulk_messages(shared, check, items, ids, task_id is None)
            if messages is None:
                messages = _plain_messages(shared, render, check, items, ids)
            head, tail = shared.row_parts(now)
            return Rows(ids, None, head, messages, tail, task_id is None)
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
    return Rows(ids, rows, fresh_ids=task_id is None)


def _bulk_messages(
    prepared: Prepared,
    check: Task | None,
    items: list[Any],
    ids: list[str],
    own_ids: bool,
) -> list[bytes] | None:
    """:func:`_plain_messages` a stage at a time, for the common bulk enqueue.

    Every argument list is a tuple or a list; the arguments are checked
    once per length, and the messages rendered by one comprehension.
    ``own_ids``: ``ids`` come from :func:`~liteq.messages.new_ids` (no
    character JSON escapes).

    Returns:
        The messages, or None: some call needs :func:`_plain_messages`
        (which also raises the usual errors).
    """
    chunks = serialization.json_chunks
    bound = prepared.bound()
    if chunks is None or bound is None:
        return None
    if not set(map(type, items)) <= {tuple, list}:
        return None
    if check is not None:
        if type(check).check_arguments is not Task.check_arguments:
            return None  # a check of its own may look at the values
        # With positional arguments only, whether they fit the signature
        # depends on their number alone: one check per length.
        for args in dict(zip(map(len, items), items, strict=True)).values():
            check.check_arguments(tuple(args), {})
    join = "".join
    parts, after = bound.parts, ",{}" + bound.tail  # the kwargs: always {}
    try:
        if own_ids:
            # quote(tid) is '"' + tid + '"' for these ids: the quotes join the parts.
            last = len(parts) - 1
            quoted = tuple(
                ('"' if i else "") + part + ('"' if i < last else "")
                for i, part in enumerate(parts)
            )
            return [
                (tid.join(quoted) + join(chunks(args, 0)) + after).encode()
                for tid, args in zip(ids, items, strict=True)
            ]
        quote = encode_basestring
        return [
            (quote(tid).join(parts) + join(chunks(args, 0)) + after).encode()
            for tid, args in zip(ids, items, strict=True)
        ]
    except Exception:
        return None  # the generic encoder raises the usual EncodeError


def _plain_messages(
    prepared: Prepared,
    render: Callable[[str, Any, Any], bytes],
    check: Task | None,
    items: list[Any],
    ids: list[str],
) -> list[bytes]:
    """The JSON messages of calls with positional arguments only, all from ``prepared``.

    What :func:`build_values` makes, with the per-row work cut to encoding
    the arguments: the messages are rendered from ``prepared``'s template.
    """
    messages: list[bytes] = []
    append = messages.append
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
        append(data)
    return messages


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
    fresh_id: bool = False,
) -> bool:
    """Encode and write one call made from ``prepared`` (as :func:`publish`).

    ``fresh_id``: ``task_id`` was made for this call (see ``Broker.insert``).

    Returns:
        False if its ``unique_key`` was already queued.

    Raises:
        EncodeError: an argument cannot be serialized.
        StorageError: the database could not be written.
    """
    message: Message | None = None
    if _has_publish_receivers():
        # Receivers may change the headers and body they are given (tracing
        # integrations add theirs): the message is written as they left it.
        envelope = _before_publish(
            prepared.message(task_id, args, kwargs), retry_policy
        )
        data, content_type = encode_envelope(envelope, prepared.serializer)
        message = Message.from_dict(envelope)
    else:
        data, content_type = prepared.encode(task_id, args, kwargs)
    broker = app.storage.broker
    try:
        inserted = broker.insert(
            prepared.values(task_id, data, content_type, app.clock.time()), fresh_id
        )
    except DatabaseLocked as exc:
        # A partial, not a closure: a closure would make these variables
        # cells, which every call pays for.
        again = partial(_insert, app, prepared, task_id, data, content_type, fresh_id)
        inserted = _retry_publish(app, again, exc, retry, retry_policy)
    if message is not None and inserted:
        # Sent means committed: inside app.transaction(), once it commits.
        app.storage.db.after_commit(partial(_after_publish, message))
    return inserted


def _insert(
    app: Liteq,
    prepared: Prepared,
    task_id: str,
    data: bytes,
    content_type: str,
    fresh_id: bool,
) -> bool:
    return app.storage.broker.insert(
        prepared.values(task_id, data, content_type, app.clock.time()), fresh_id
    )


def announce_before(rows: list[NewTask]) -> list[Message]:
    """Send ``before_task_publish`` for each row about to be written together.

    For the tasks a workflow (group, chain, chord) writes in one
    transaction, as :func:`publish` does for one task. A row whose headers
    or body a receiver changed is replaced, in ``rows``, by one that
    carries the change.

    Returns:
        The rows' messages, for :func:`announce_after` once they are
        committed (empty when no receiver listens).

    Raises:
        DecodeError: a row's message cannot be read back.
        EncodeError: a receiver left something that cannot be serialized.
    """
    if not rows or not _has_publish_receivers():
        return []
    messages = []
    for i, row in enumerate(rows):
        data, message = _announce_one(row.message, row.content_type)
        if data != row.message:
            rows[i] = replace(row, message=data)
        messages.append(message)
    return messages


def announce_rows(rows: Rows) -> list[Message]:
    """:func:`announce_before` for the rows of a bulk enqueue (:func:`build_values`).

    A message a receiver changed is replaced in ``rows``.

    Returns:
        The messages, for :func:`announce_after` once the rows are
        committed (empty when no receiver listens).

    Raises:
        DecodeError: a row's message cannot be read back.
        EncodeError: a receiver left something that cannot be serialized.
    """
    if not rows.ids or not _has_publish_receivers():
        return []
    messages = []
    if rows.rows is not None:
        table = rows.rows
        for i, row in enumerate(table):
            data, message = _announce_one(row[_MESSAGE], row[_MESSAGE + 1])
            if data != row[_MESSAGE]:
                table[i] = (*row[:_MESSAGE], data, *row[_MESSAGE + 1 :])
            messages.append(message)
    else:
        # Row i is (ids[i], *head, messages[i], *tail): the content type
        # comes first in the shared tail.
        content_type = rows.tail[0]
        for i, old in enumerate(rows.messages):
            data, message = _announce_one(old, content_type)
            rows.messages[i] = data
            messages.append(message)
    return messages


def _announce_one(data: bytes, content_type: str) -> tuple[bytes, Message]:
    """Send ``before_task_publish`` for one written message.

    Returns:
        The message serialized as the receivers left it (same serializer),
        and that message.
    """
    envelope = _before_publish(Message.decode(data, content_type), None)
    changed, _ = encode_envelope(envelope, content_type)
    return changed, Message.from_dict(envelope)


def announce_after(messages: Sequence[Message], db: Database | None = None) -> None:
    """Send ``after_task_publish`` for messages :func:`announce_before` returned.

    With ``db``, inside the user's open transaction on it (``app.transaction()``):
    once that commits, and not at all if it rolls back.
    """
    if not messages:
        return
    if db is not None:
        db.after_commit(partial(_announce_after, messages))
    else:
        _announce_after(messages)


def _announce_after(messages: Sequence[Message]) -> None:
    for message in messages:
        _after_publish(message)


def announce_written_with(rows: list[Any]) -> list[Message]:
    """Send ``before_task_publish`` for the tasks among ``rows`` (any follow-up rows).

    For the tasks a worker or beat writes in a transaction of its own (a
    task's callbacks and next chain step, a due schedule entry): rows a
    receiver changed are replaced in ``rows``. A receiver's change that
    cannot be written is logged and dropped: it must not cost the task its
    outcome, nor beat its tick.

    Returns:
        The messages for :func:`announce_after` (empty when no receiver listens).
    """
    if not rows or not _has_publish_receivers():
        return []
    places = [i for i, row in enumerate(rows) if isinstance(row, NewTask)]
    tasks = [rows[i] for i in places]
    try:
        messages = announce_before(tasks)
    except Exception as exc:  # noqa: BLE001 - see above
        logger.error(
            "before_task_publish left a message that cannot be written: %r", exc
        )
        return []
    for i, task in zip(places, tasks, strict=True):
        rows[i] = task
    return messages


def announce_retry(message: Message, serializer: str) -> bytes | None:
    """Send both publish signals for a retry's message, as Celery's ``retry`` publishes.

    Returns:
        The message as the receivers left it, serialized; None when no
        receiver listens or what they left cannot be written (logged).
    """
    if not _has_publish_receivers():
        return None
    envelope = _before_publish(message, None)
    try:
        data, _ = encode_envelope(envelope, serializer)
    except Exception as exc:  # noqa: BLE001 - the retry goes ahead unchanged
        logger.error(
            "before_task_publish left a message that cannot be written: %r", exc
        )
        return None
    _after_publish(Message.from_dict(envelope))
    return data


def _has_publish_receivers() -> bool:
    return (
        signals.before_task_publish.has_receivers()
        or signals.after_task_publish.has_receivers()
    )


def _before_publish(
    message: Message, retry_policy: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Send ``before_task_publish``; return the envelope as receivers left it."""
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
    return envelope


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
    "Rows",
    "build_message",
    "build_row",
    "build_values",
    "plain",
    "prepare",
    "publish",
    "route",
    "send",
]
