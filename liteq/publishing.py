"""Publishing: turning a call into a message and a queue row, and writing it.

The publish path runs on every ``.delay()``, so it does one INSERT with
pre-rendered SQL and no other query: routing, defaults and serialization all
happen in Python before the write.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import signals
from .exceptions import DatabaseLocked
from .messages import Message, new_id
from .storage import NewTask
from .task import Task, current_task
from .timeutils import from_ts, seconds, to_utc

if TYPE_CHECKING:
    from .app import Liteq

logger = logging.getLogger("liteq.app")


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

_origin_cache: tuple[int, str] = (0, "")


def _origin() -> str:
    global _origin_cache
    pid = os.getpid()
    if _origin_cache[0] != pid:
        _origin_cache = (pid, f"{pid}@{socket.gethostname()}")
    return _origin_cache[1]


def _signatures(app: Liteq, value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    from .canvas import maybe_signature

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

    Entries are tried in order: a mapping by exact name, then by glob
    pattern (``"reports.*"``), or a function ``(name, args, kwargs, options,
    task=...)``; a plain string means a queue name.
    """
    routes = app.conf.task_routes
    if not routes:
        return {}
    for router in routes if isinstance(routes, (list, tuple)) else [routes]:
        found: Any = None
        if callable(router):
            found = router(name, args, kwargs, options, task=task)
        elif isinstance(router, Mapping):
            found = router.get(name)
            if found is None:
                for pattern, value in router.items():
                    if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(
                        name, pattern
                    ):
                        found = value
                        break
        if found:
            return {"queue": found} if isinstance(found, str) else dict(found)
    return {}


def build_message(
    app: Liteq,
    name: str,
    args: Sequence[Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    task_id: str | None = None,
    countdown: float | None = None,
    eta: datetime | None = None,
    expires: float | datetime | None = None,
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
) -> tuple[Message, NewTask]:
    """Build the message and the queue row for one task (nothing is written).

    Returns:
        ``(message, row)``.

    Raises:
        EncodeError: an argument cannot be serialized.
    """
    if extra:
        for ignored in _TRANSPORT_OPTIONS:
            extra.pop(ignored, None)
        group = extra.pop("group", None)
        if group and group_id is None:
            group_id = group
        if extra:
            raise TypeError(f"unexpected options for {name}: {sorted(extra)}")
    conf = app.conf
    task = task_type if task_type is not None else app.tasks.get(name)
    if task is not None:
        routed = route(app, name, args or (), kwargs or {}, {}, task)
        queue = queue or routed.get("queue") or task.queue
        priority = (
            priority if priority is not None else routed.get("priority", task.priority)
        )
        serializer = serializer or task.serializer
        if expires is None:
            expires = task.expires
        if time_limit is None:
            time_limit = task.time_limit
        if soft_time_limit is None:
            soft_time_limit = task.soft_time_limit
        if ignore_result is None:
            ignore_result = task.effective_ignore_result
    else:
        routed = route(app, name, args or (), kwargs or {}, {}, None)
        queue = queue or routed.get("queue")
        priority = priority if priority is not None else routed.get("priority")
    queue = queue or conf.task_default_queue
    if priority is None:
        priority = conf.task_default_priority or 0
    priority = max(0, min(255, int(priority)))
    serializer = serializer or conf.task_serializer
    if time_limit is None:
        time_limit = conf.task_time_limit
    if soft_time_limit is None:
        soft_time_limit = conf.task_soft_time_limit
    now_ts = app.clock.time() if now is None else now
    # Naive datetimes are in the app's time zone when enable_utc is off.
    naive_tz = app.timezone if not conf.enable_utc else None
    eta_ts: float | None = None
    if countdown is not None:
        eta_ts = now_ts + float(countdown)
    elif eta is not None:
        eta_ts = to_utc(eta, naive_tz).timestamp()
    expires_ts: float | None = None
    if isinstance(expires, datetime):
        expires_ts = to_utc(expires, naive_tz).timestamp()
    elif isinstance(expires, timedelta):
        expires_ts = now_ts + expires.total_seconds()
    elif expires is not None:
        expires_ts = now_ts + float(expires)
    parent = current_task()
    if parent is not None and not parent.request.called_directly:
        request = parent.request
        parent_id = parent_id or request.id
        root_id = root_id or request.root_id or request.id
    tid = task_id or new_id()
    message = Message(
        task=name,
        id=tid,
        args=tuple(args or ()),
        kwargs=dict(kwargs or {}),
        eta=from_ts(eta_ts) if eta_ts is not None else None,
        expires=from_ts(expires_ts) if expires_ts is not None else None,
        retries=retries,
        group=group_id,
        group_index=group_index,
        root_id=root_id or tid,
        parent_id=parent_id,
        timelimit=(seconds(time_limit), seconds(soft_time_limit)),
        ignore_result=bool(ignore_result),
        shadow=shadow,
        origin=_origin(),
        callbacks=_signatures(app, link),
        errbacks=_signatures(app, link_error),
        chain=[dict(s) for s in chain] if chain else None,
        chord=dict(chord) if chord else None,
        queue=queue,
        priority=priority,
        headers=dict(headers or {}),
    )
    data, content_type = message.encode(serializer)
    acks_late = (
        task.effective_acks_late if task is not None else bool(conf.task_acks_late)
    )
    reject = (
        task.effective_reject_on_worker_lost
        if task is not None
        else bool(conf.task_reject_on_worker_lost)
    )
    row = NewTask(
        task_id=tid,
        name=name,
        message=data,
        content_type=content_type,
        queue=queue,
        priority=priority,
        eta=eta_ts,
        expires=expires_ts,
        acks_late=acks_late,
        reject_on_worker_lost=reject,
        retries=retries,
        unique_key=unique_key,
    )
    return message, row


def publish(
    app: Liteq,
    message: Message,
    row: NewTask,
    retry: bool | None = None,
    retry_policy: Mapping[str, Any] | None = None,
) -> bool:
    """Write one built task to the queue (firing the publish signals).

    Returns:
        False if its ``unique_key`` was already queued.
    """
    has_signals = (
        signals.before_task_publish.has_receivers()
        or signals.after_task_publish.has_receivers()
    )
    if has_signals:
        signals.before_task_publish.send(
            sender=message.task,
            body=message.to_dict()["body"],
            exchange="",
            routing_key=message.queue,
            headers=message.to_dict()["headers"],
            properties={},
            declare=[],
            retry_policy=retry_policy,
        )
    do_retry = app.conf.task_publish_retry if retry is None else retry
    inserted = _with_publish_retry(
        app,
        lambda: app.storage.broker.enqueue(row, app.clock.time()),
        bool(do_retry),
        retry_policy,
    )
    if has_signals:
        signals.after_task_publish.send(
            sender=message.task,
            body=message.to_dict()["body"],
            exchange="",
            routing_key=message.queue,
            headers=message.to_dict()["headers"],
        )
    return inserted


def _with_publish_retry(
    app: Liteq, fn: Callable[[], bool], retry: bool, policy: Mapping[str, Any] | None
) -> bool:

    try:
        return fn()
    except DatabaseLocked:
        # Inside a transaction the lock is ours: waiting cannot help.
        if not retry or app.storage.db.in_transaction():
            raise
        settings = dict(app.conf.task_publish_retry_policy or {})
        settings.update(policy or {})
        if int(settings.get("max_retries", 3)) <= 0:
            raise
    max_retries = int(settings.get("max_retries", 3))
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
