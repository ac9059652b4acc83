"""Running one task: the code path shared by the worker, ``drain`` and ``apply``.

:func:`execute` takes a claimed message, runs the task and returns an
:class:`Outcome` whose :class:`~liteq.storage.Completion` says how the queue
row ends (deleted, rescheduled, requeued), what result to store and which
follow-up tasks to enqueue. The caller applies completions in one
transaction, so an ack, its result, its callbacks and its chord counter are
committed together or not at all.

Every exception a task raises maps to a visible state: ``Retry`` → RETRY
(a new due time in the database), ``Ignore`` → nothing stored, ``Reject`` →
REJECTED or requeued, anything else — even ``SystemExit`` or
``KeyboardInterrupt`` raised inside the task — → FAILURE.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import traceback as tb_module
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import publishing, signals, states
from .exceptions import (
    ContentDisallowed,
    DecodeError,
    EncodeError,
    Ignore,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Replaced,
    Retry,
    TaskRevokedError,
)
from .messages import Message, new_id
from .result import EagerResult
from .signals import task_postrun, task_prerun, task_success
from .storage import Completion
from .storage.broker import Claimed
from .task import Context, Task, retry_eta

if TYPE_CHECKING:
    from .app import Liteq

logger = logging.getLogger("liteq.worker.execution")

#: Exceptions that a worker must never swallow as a task failure.
_PASSTHROUGH: tuple[type[BaseException], ...] = ()


@dataclass
class Outcome:
    """What happened to one task, for logging and for the ack."""

    task_id: str
    name: str
    state: str
    completion: Completion
    retval: Any = None
    exc: BaseException | None = None
    traceback: str | None = None
    runtime: float = 0.0
    #: Seconds until the retry (for the log line), when state is RETRY.
    retry_in: float | None = None
    #: The exception was one the task declared in ``throws`` (no traceback in logs).
    expected: bool = False
    followups_eager: list[Any] = field(default_factory=list)
    #: Set when the outcome was stored before the task's hooks ran (see
    #: :func:`execute`'s ``store``): whether that ack applied. None: it was
    #: not stored (whoever runs the task acks it, as usual).
    acked: bool | None = None

    def describe(self) -> str:
        """Return the Celery-style log line for this outcome."""
        label = f"Task {self.name}[{self.task_id}]"
        if self.state == states.SUCCESS:
            return f"{label} succeeded in {self.runtime:.6f}s: {self.retval!r}"
        if self.state == states.RETRY:
            return f"{label} retry: Retry in {self.retry_in:.0f}s: {self.exc!r}"
        if self.state == states.REVOKED:
            return f"{label} revoked: {self.exc}"
        if self.state == states.REJECTED:
            return f"{label} rejected: {self.exc!r}"
        if self.state == states.IGNORED:
            return f"{label} ignored"
        return f"{label} raised unexpected: {self.exc!r}"


def _format_tb(exc: BaseException) -> str:
    return "".join(tb_module.format_exception(type(exc), exc, exc.__traceback__))


class _EInfo:
    """Celery's ExceptionInfo: ``exception``, ``type``, ``tb``, ``traceback`` (str)."""

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc
        self.type = type(exc)
        self.tb = exc.__traceback__
        self.traceback = _format_tb(exc)

    def __str__(self) -> str:
        return self.traceback


def _hostname() -> str:
    return f"liteq@{socket.gethostname()}"


def execute(
    app: Liteq,
    claimed: Claimed | None,
    message: Message | None = None,
    *,
    hostname: str | None = None,
    is_eager: bool = False,
    autoimport: bool = False,
    now: float | None = None,
    store: Callable[[Completion], bool | None] | None = None,
) -> Outcome:
    """Run one task and decide how it ends.

    Args:
        app: The app (its tasks, settings, clock and storage).
        claimed: The claimed queue row (None for an eager call).
        message: The decoded message; decoded from ``claimed`` when None.
        hostname: The worker's name for ``request.hostname``.
        is_eager: True for ``apply()`` / ``task_always_eager``.
        autoimport: Import ``module`` of an unknown ``module.function`` task.
        now: Epoch seconds at the start (defaults to the app's clock).
        store: Applies a completion (the ack, with the result) and returns
            whether it applied, or None if it failed. Given, it is called
            before the task's own end hooks run, when it has any
            (``on_success``, ``on_failure``, ``on_retry``, ``after_return``,
            or receivers of ``task_success``, ``task_failure``,
            ``task_retry``, ``task_postrun``): as in Celery, those see the
            result stored. ``Outcome.acked`` then tells how it went.

    Returns:
        The outcome; its completion is not applied yet, unless
        ``outcome.acked`` is not None.
    """
    clock = app.clock
    start_ts = clock.time() if now is None else now
    hostname = hostname or _hostname()
    if message is None:
        assert claimed is not None
        try:
            message = Message.decode(
                claimed.message, claimed.content_type, app.accept, claimed.task_id
            )
        except (DecodeError, ContentDisallowed) as exc:
            return _undecodable(app, claimed, exc, hostname)
    name = message.task
    try:
        task = app.resolve_task(name, autoimport=autoimport)
    except NotRegistered as exc:
        signals.task_unknown.send(
            sender=None, message=message, exc=exc, name=name, id=message.id
        )
        return _failed_without_running(app, claimed, message, exc, hostname, start_ts)
    acks_late, reject_on_worker_lost, _, track_started, _ = task.effective_options()
    if claimed is not None and (
        claimed.acks_late != acks_late
        or claimed.reject_on_worker_lost != reject_on_worker_lost
    ):
        # The producer did not know the task (send_task): fix the row so that
        # recovery after a crash follows the task's real delivery mode.
        app.storage.broker.set_delivery_mode(claimed, acks_late, reject_on_worker_lost)
    request = _make_request(message, hostname, is_eager, claimed)
    if message.expires is not None and message.expires.timestamp() <= start_ts:
        expired = TaskRevokedError(f"expired at {message.expires.isoformat()}")
        signals.task_revoked.send(
            sender=task, request=request, terminated=False, signum=None, expired=True
        )
        return _ended(
            app,
            task,
            claimed,
            message,
            request,
            states.REVOKED,
            expired,
            None,
            start_ts,
            hostname,
        )
    if store is not None and claimed is not None and _has_end_hooks(task):
        request.__dict__["_store_first"] = _StoreFirst(claimed, store)
    return _run(app, task, claimed, message, request, start_ts, hostname, track_started)


def _overrides(task: Task, name: str) -> bool:
    return name in task.__dict__ or getattr(type(task), name) is not getattr(Task, name)


def _has_end_hooks(task: Task) -> bool:
    """True if code of the task's or of a receiver runs once the task ended."""
    return bool(
        task_success._receivers
        or signals.task_failure._receivers
        or signals.task_retry._receivers
        or task_postrun._receivers
        or _overrides(task, "on_success")
        or _overrides(task, "on_failure")
        or _overrides(task, "on_retry")
        or _overrides(task, "after_return")
    )


class _StoreFirst:
    """Applies a task's completion once, right before its first end hook."""

    __slots__ = ("claimed", "store", "acked")

    def __init__(
        self, claimed: Claimed, store: Callable[[Completion], bool | None]
    ) -> None:
        self.claimed = claimed
        self.store: Callable[[Completion], bool | None] | None = store
        self.acked: bool | None = None

    def __call__(self, completion: Completion) -> None:
        store, self.store = self.store, None
        if store is not None:
            completion.claimed = self.claimed
            self.acked = store(completion)


def _store_first(request: Context | None, completion: Completion) -> _StoreFirst | None:
    """Store ``completion`` now if the task's hooks must see it stored (once).

    Returns:
        The request's early store (its ``acked`` tells how it went), or
        None if the task is stored with the worker's batch.
    """
    first = None if request is None else request.__dict__.get("_store_first")
    if first is not None:
        first(completion)
    return first


def received_request(app: Liteq, claimed: Claimed, hostname: str) -> Context | None:
    """Return the request ``task_received`` receivers get for ``claimed``.

    The task's request as it will run, plus ``name`` and ``task_name`` (the
    task's name, as on Celery's worker request).

    Returns:
        The request, or None when the message cannot be decoded (the task
        then ends FAILURE when it runs).
    """
    try:
        message = Message.decode(
            claimed.message, claimed.content_type, app.accept, claimed.task_id
        )
    except (DecodeError, ContentDisallowed):
        return None
    request = _make_request(message, hostname, False, claimed)
    request.__dict__["name"] = request.__dict__["task_name"] = message.task
    return request


def _make_request(
    message: Message, hostname: str, is_eager: bool, claimed: Claimed | None
) -> Context:
    # A dict literal assigned as the instance dict: the same attributes as
    # Context(**fields), without building the keyword arguments first.
    request = _new_context(Context)
    request.__dict__ = {
        "id": message.id,
        "task": message.task,
        "args": message.args,
        "kwargs": message.kwargs,
        "retries": message.retries,
        "eta": message.eta,
        "expires": message.expires,
        "hostname": hostname,
        "delivery_info": {
            "queue": message.queue,
            "priority": message.priority,
            "routing_key": message.queue,
            "exchange": "",
            "redelivered": bool(claimed is not None and claimed.deliveries > 1),
        },
        "is_eager": is_eager,
        "parent_id": message.parent_id,
        "root_id": message.root_id,
        "group": message.group,
        "group_index": message.group_index,
        "chord": message.chord,
        "chain": message.chain,
        "callbacks": message.callbacks,
        "errbacks": message.errbacks,
        "timelimit": message.timelimit,
        "origin": message.origin,
        "reply_to": message.reply_to,
        "correlation_id": message.correlation_id or message.id,
        "headers": message.headers,
        "called_directly": False,
        "ignore_result": message.ignore_result,
        "delivery_count": claimed.deliveries if claimed is not None else 1,
        "shadow": message.shadow,
    }
    if message.headers:
        # Custom headers (``headers=``, or added by a before_task_publish
        # receiver) are also request attributes, as in Celery: tracing
        # integrations read them with ``request.get(name)``. They never
        # replace a request field.
        fields = request.__dict__
        for name, value in message.headers.items():
            if type(name) is str and name not in fields and not hasattr(Context, name):
                fields[name] = value
    return request


_new_context = object.__new__


def _run(
    app: Liteq,
    task: Task,
    claimed: Claimed | None,
    message: Message,
    request: Context,
    start_ts: float,
    hostname: str,
    track_started: bool,
) -> Outcome:
    args, kwargs = message.args, message.kwargs
    task.push_request(request)
    started = time.perf_counter()
    try:
        if track_started and not request.is_eager:
            app.store_state(
                message.id,
                states.STARTED,
                {"pid": os.getpid(), "hostname": hostname},
                task=task,
            )
        # Receivers are looked up at each send (one may connect at any
        # time); without any, the keyword arguments are not even built.
        if task_prerun._receivers:
            task_prerun.send(
                sender=task, task_id=message.id, task=task, args=args, kwargs=kwargs
            )
        try:
            task.before_start(message.id, args, kwargs)
            retval = task.run(*args, **kwargs)
            pending = request.retry_requested
            if pending is not None:
                raise pending
        except Retry as exc:
            outcome = _retried(
                app, task, claimed, message, request, exc, start_ts, hostname
            )
        except Replaced as exc:
            outcome = _replaced(
                app, task, claimed, message, request, exc.sig, start_ts, hostname
            )
        except Ignore as exc:
            outcome = _ended(
                app,
                task,
                claimed,
                message,
                request,
                states.IGNORED,
                exc,
                None,
                start_ts,
                hostname,
            )
        except Reject as exc:
            outcome = _rejected(
                app, task, claimed, message, request, exc, start_ts, hostname
            )
        except BaseException as exc:  # noqa: BLE001 - every task error becomes a visible state
            if isinstance(exc, _PASSTHROUGH):
                raise
            outcome = _maybe_autoretry(
                app, task, claimed, message, request, exc, start_ts, hostname
            )
        else:
            outcome = _succeeded(
                app, task, claimed, message, request, retval, start_ts, hostname
            )
        outcome.runtime = time.perf_counter() - started
        # Ends without an on_* hook of their own (ignored, rejected,
        # replaced) are stored here, before after_return.
        first = _store_first(request, outcome.completion)
        if first is not None:
            outcome.acked = first.acked
        einfo = _EInfo(outcome.exc) if outcome.exc is not None else None
        try:
            task.after_return(
                outcome.state,
                outcome.retval if outcome.exc is None else outcome.exc,
                message.id,
                args,
                kwargs,
                einfo,
            )
        except Exception:
            logger.exception("after_return of %s[%s] raised", task.name, message.id)
        if task_postrun._receivers:
            task_postrun.send(
                sender=task,
                task_id=message.id,
                task=task,
                args=args,
                kwargs=kwargs,
                retval=outcome.retval if outcome.exc is None else outcome.exc,
                state=outcome.state,
            )
        return outcome
    finally:
        task.pop_request()


def _result_row(
    app: Liteq,
    task: Task | None,
    message: Message,
    state: str,
    value: Any,
    hostname: str,
    traceback: str | None = None,
    raw: bytes | None = None,
    retries: int | None = None,
) -> Any:
    return app.make_result_row(
        message.id,
        state,
        value,
        traceback=traceback,
        name=message.task,
        args=message.args,
        kwargs=message.kwargs,
        queue=message.queue,
        worker=hostname,
        retries=message.retries if retries is None else retries,
        parent_id=message.parent_id,
        root_id=message.root_id,
        group_id=message.group,
        raw_message=raw,
        serializer=task.serializer if task is not None and task.serializer else None,
    )


def _succeeded(
    app: Liteq,
    task: Task,
    claimed: Claimed | None,
    message: Message,
    request: Context,
    retval: Any,
    start_ts: float,
    hostname: str,
) -> Outcome:
    ignore = message.ignore_result or task.effective_options()[2]
    completion = Completion(task_id=message.id, claimed=claimed)
    if not ignore or message.chord is not None:
        completion.result = _result_row(
            app, task, message, states.SUCCESS, retval, hostname
        )
        if completion.result.status != states.SUCCESS:
            # The return value cannot be stored: the task fails, with its
            # errbacks, its chord and the rest of its chain (as in Celery,
            # where storing it raises EncodeError into the failure path).
            exc = _decode_stored_exception(app, completion.result)
            return _failed(
                app, task, claimed, message, request, exc, start_ts, hostname
            )
    children = _trail(request)
    if message.callbacks or message.chain:
        from .followups import followup_ids, on_success_followups

        try:
            completion.followups = on_success_followups(
                app, message, retval, eager=request.is_eager
            )
        except EncodeError as exc:
            # A callback's or the next step's arguments hold the return value.
            return _failed(
                app, task, claimed, message, request, exc, start_ts, hostname
            )
        if not request.is_eager:
            _announce(completion.followups)
        children += followup_ids(completion.followups)
    if children and completion.result is not None:
        completion.result = replace(completion.result, children=children)
    if message.chord is not None and message.group:
        completion.chord_group = message.group
    # As in Celery, once the result is stored when the task has end hooks;
    # otherwise the worker stores it with the ack, with others.
    _store_first(request, completion)
    try:
        task.on_success(retval, message.id, message.args, message.kwargs)
    except Exception:
        logger.exception("on_success of %s[%s] raised", task.name, message.id)
    if task_success._receivers:
        task_success.send(sender=task, result=retval)
    return Outcome(message.id, message.task, states.SUCCESS, completion, retval=retval)


def _trail(request: Context | None) -> list[str]:
    """The ids of the tasks ``request``'s task sent while it ran (``Task.trail``)."""
    if request is None or not request.children:
        return []
    return [child.id for child in request.children]


def _announce(rows: list[Any]) -> None:
    """Send the publish signals of the follow-up tasks among ``rows``.

    From the process that ran the task, as Celery publishes callbacks, so
    that tracing receivers see the task's context; the rows are written
    with the task's ack.
    """
    publishing.announce_after(publishing.announce_written_with(rows))


def _decode_stored_exception(app: Liteq, row: Any) -> BaseException:
    meta = app.decode_result_row(row)
    value = meta["result"]
    return value if isinstance(value, BaseException) else RuntimeError(str(value))


def _failed(
    app: Liteq,
    task: Task | None,
    claimed: Claimed | None,
    message: Message,
    request: Context | None,
    exc: BaseException,
    start_ts: float,
    hostname: str,
    call_hooks: bool = True,
) -> Outcome:
    from .followups import failed_chord_group, on_failure_followups

    tb = _format_tb(exc)
    completion = Completion(task_id=message.id, claimed=claimed)
    ignore = message.ignore_result or (
        task is not None and task.effective_ignore_result
    )
    store = (
        not ignore
        or (task is not None and task.effective_store_errors)
        or message.chord is not None
    )
    if store or task is None:
        completion.result = _result_row(
            app, task, message, states.FAILURE, exc, hostname, traceback=tb
        )
        if request is not None and request.children:
            completion.result = replace(completion.result, children=_trail(request))
    completion.followups = on_failure_followups(app, message, request, exc, tb)
    if request is None or not request.is_eager:
        _announce(completion.followups)
    # A header part of a chord, or a task whose chain leads to one: the chord ends.
    chord_group = failed_chord_group(message)
    if chord_group is not None:
        completion.chord_group = chord_group
        completion.chord_failed = True
        if completion.result is None:
            completion.result = _result_row(
                app, task, message, states.FAILURE, exc, hostname, traceback=tb
            )
    if task is not None:
        einfo = _EInfo(exc)
        _store_first(request, completion)
        if call_hooks:
            try:
                task.on_failure(exc, message.id, message.args, message.kwargs, einfo)
            except Exception:
                logger.exception("on_failure of %s[%s] raised", task.name, message.id)
        # Also for a task whose process died or hit its hard time limit, as
        # Celery's worker sends it (its hooks ran nowhere).
        signals.task_failure.send(
            sender=task,
            task_id=message.id,
            exception=exc,
            args=message.args,
            kwargs=message.kwargs,
            traceback=exc.__traceback__,
            einfo=einfo,
        )
    expected = bool(task is not None and task.throws and isinstance(exc, task.throws))
    return Outcome(
        message.id,
        message.task,
        states.FAILURE,
        completion,
        exc=exc,
        traceback=tb,
        expected=expected,
    )


def _failed_without_running(
    app: Liteq,
    claimed: Claimed | None,
    message: Message,
    exc: BaseException,
    hostname: str,
    start_ts: float,
) -> Outcome:
    return _failed(
        app, None, claimed, message, None, exc, start_ts, hostname, call_hooks=False
    )


def _undecodable(
    app: Liteq, claimed: Claimed, exc: BaseException, hostname: str
) -> Outcome:
    tb = _format_tb(exc)
    row = app.make_result_row(
        claimed.task_id,
        states.FAILURE,
        exc,
        traceback=tb,
        name=claimed.name,
        queue=claimed.queue,
        worker=hostname,
        retries=claimed.retries,
        raw_message=bytes(claimed.message),
    )
    completion = Completion(task_id=claimed.task_id, claimed=claimed, result=row)
    return Outcome(
        claimed.task_id, claimed.name, states.FAILURE, completion, exc=exc, traceback=tb
    )


def _ended(
    app: Liteq,
    task: Task,
    claimed: Claimed | None,
    message: Message,
    request: Context,
    state: str,
    exc: BaseException | None,
    value: Any,
    start_ts: float,
    hostname: str,
) -> Outcome:
    from .followups import failed_chord_group

    completion = Completion(task_id=message.id, claimed=claimed)
    chord_group = failed_chord_group(message)
    if state == states.REVOKED or chord_group is not None:
        # An ignored chord part still ends its chord, so the chord never hangs.
        completion.result = _result_row(app, task, message, state, exc, hostname)
        if chord_group is not None:
            completion.chord_group = chord_group
            completion.chord_failed = True
    return Outcome(message.id, message.task, state, completion, exc=exc)


def _replaced(
    app: Liteq,
    task: Task,
    claimed: Claimed | None,
    message: Message,
    request: Context,
    sig: Any,
    start_ts: float,
    hostname: str,
) -> Outcome:
    """End a task that called ``replace(sig)``: ``sig`` is queued in its place.

    ``sig`` takes the task's id, callbacks, errbacks, the rest of its chain
    and its group or chord membership; its rows are written with the ack.
    The task itself stores no result and leaves its chord's counter alone:
    ``sig`` counts for it. A ``sig`` that cannot be queued (arguments that
    cannot be serialized, say) fails the task instead.
    """
    from .canvas import Plan

    plan = Plan(now=app.clock.time())
    options = {
        "task_id": message.id,
        "link": message.callbacks,
        "link_error": message.errbacks,
        "chain": message.chain,
        "group_id": message.group,
        "group_index": message.group_index,
        "chord": message.chord,
        "root_id": message.root_id,
        "parent_id": message.parent_id,
    }
    try:
        sig._build(
            app, plan, (), {}, {k: v for k, v in options.items() if v is not None}
        )
    except Exception as exc:  # noqa: BLE001 - the task ends in a visible state
        return _failed(app, task, claimed, message, request, exc, start_ts, hostname)
    completion = Completion(task_id=message.id, claimed=claimed)
    completion.followups = plan.rows()
    _announce(completion.followups)
    return Outcome(
        message.id, message.task, states.IGNORED, completion, exc=Replaced(sig)
    )


def _rejected(
    app: Liteq,
    task: Task,
    claimed: Claimed | None,
    message: Message,
    request: Context,
    exc: Reject,
    start_ts: float,
    hostname: str,
) -> Outcome:
    signals.task_rejected.send(sender=task, message=message, exc=exc)
    completion = Completion(task_id=message.id, claimed=claimed)
    max_deliveries = int(app.conf.task_max_deliveries)
    if exc.requeue and claimed is not None and claimed.deliveries < max_deliveries:
        completion.requeue = True
        return Outcome(message.id, message.task, states.REJECTED, completion, exc=exc)
    completion.result = _result_row(app, task, message, states.REJECTED, exc, hostname)
    from .followups import failed_chord_group

    chord_group = failed_chord_group(message)
    if chord_group is not None:
        completion.chord_group = chord_group
        completion.chord_failed = True
    return Outcome(message.id, message.task, states.REJECTED, completion, exc=exc)


def _maybe_autoretry(
    app: Liteq,
    task: Task,
    claimed: Claimed | None,
    message: Message,
    request: Context,
    exc: BaseException,
    start_ts: float,
    hostname: str,
) -> Outcome:
    if (
        task.autoretry_for
        and isinstance(exc, task.autoretry_for)
        and not (task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for))
        and isinstance(exc, Exception)
    ):
        options = dict(task.retry_kwargs)
        if task.retry_backoff and "countdown" not in options and "eta" not in options:
            options["countdown"] = task.backoff_countdown(request.retries)
        try:
            task.retry(exc=exc, **options)
        except Retry as retry:
            return _retried(
                app, task, claimed, message, request, retry, start_ts, hostname
            )
        except (
            BaseException
        ) as final:  # max retries exceeded: the original (or MaxRetries) error
            exc = final
    return _failed(app, task, claimed, message, request, exc, start_ts, hostname)


def _retried(
    app: Liteq,
    task: Task,
    claimed: Claimed | None,
    message: Message,
    request: Context,
    exc: Retry,
    start_ts: float,
    hostname: str,
) -> Outcome:
    reason = exc.exc if exc.exc is not None else exc
    sig = exc.sig or {}
    if request.is_eager or claimed is None:
        # Celery runs an eager retry at once, in this process.
        return _eager_retry(app, task, message, request, exc, sig, start_ts, hostname)
    eta = retry_eta(task, exc, start_ts)
    options = dict(sig.get("options") or {})
    new_message = message.copy(
        args=tuple(sig.get("args", message.args)),
        kwargs=dict(sig.get("kwargs", message.kwargs)),
        retries=message.retries + 1,
        eta=None,
        queue=options.get("queue", message.queue),
        priority=int(options.get("priority", message.priority)),
    )
    serializer = task.serializer or _serializer_name(claimed.content_type)
    data, _ = new_message.encode(serializer)
    data = publishing.announce_retry(new_message, serializer) or data
    einfo = _EInfo(reason)
    completion = Completion(
        task_id=message.id,
        claimed=claimed,
        retry_eta=eta,
        retry_message=data,
        event=True,
    )
    completion.result = _result_row(
        app,
        task,
        message,
        states.RETRY,
        reason,
        hostname,
        traceback=einfo.traceback,
        retries=message.retries + 1,
    )
    _store_first(request, completion)
    try:
        task.on_retry(reason, message.id, message.args, message.kwargs, einfo)
    except Exception:
        logger.exception("on_retry of %s[%s] raised", task.name, message.id)
    signals.task_retry.send(sender=task, request=request, reason=reason, einfo=einfo)
    return Outcome(
        message.id,
        message.task,
        states.RETRY,
        completion,
        exc=reason,
        traceback=einfo.traceback,
        retry_in=max(0.0, eta - start_ts),
    )


def _serializer_name(content_type: str) -> str:
    from .serialization import get_serializer

    return get_serializer(content_type).name


def _eager_retry(
    app: Liteq,
    task: Task,
    message: Message,
    request: Context,
    exc: Retry,
    sig: dict[str, Any],
    start_ts: float,
    hostname: str,
) -> Outcome:
    new_message = message.copy(
        args=tuple(sig.get("args", message.args)),
        kwargs=dict(sig.get("kwargs", message.kwargs)),
        retries=message.retries + 1,
    )
    reason = exc.exc if exc.exc is not None else exc
    signals.task_retry.send(
        sender=task, request=request, reason=reason, einfo=_EInfo(reason)
    )
    return execute(
        app, None, new_message, hostname=hostname, is_eager=True, now=start_ts
    )


def apply_eagerly(
    task: Task,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    task_id: str | None = None,
    link: Any = None,
    link_error: Any = None,
    retries: int = 0,
    throw: bool | None = None,
    options: dict[str, Any] | None = None,
) -> EagerResult:
    """Run ``task`` in this process through :func:`execute` (``Task.apply``).

    The message is encoded and decoded with the task's serializer first, so
    arguments a worker could not receive fail here too. Callbacks and chain
    steps run eagerly too. With ``task_store_eager_result`` the result is
    stored in the database as a worker would.

    Returns:
        The :class:`EagerResult`.
    """
    app = task.app
    options = dict(options or {})
    # The request sees custom headers as a worker's would.
    headers = options.pop("headers", None)
    for key in (
        "countdown",
        "eta",
        "expires",
        "queue",
        "priority",
        "serializer",
        "time_limit",
        "soft_time_limit",
        "retry",
        "retry_policy",
        "unique_key",
        "shadow",
        "exchange",
        "routing_key",
        "add_to_parent",
        "producer",
        "connection",
        "ignore_result",
        "group_id",
        "group_index",
        "chord",
        "chain",
        "root_id",
        "parent_id",
    ):
        options.pop(key, None)
    message, row = app.build_message(
        task.name,
        args,
        kwargs,
        task_id=task_id or new_id(),
        link=link,
        link_error=link_error,
        retries=retries,
        task_type=task,
        headers=headers,
    )
    message = Message.decode(row.message, row.content_type, None)
    outcome = execute(app, None, message, hostname=_hostname(), is_eager=True)
    store = bool(app.conf.task_store_eager_result)
    if store and outcome.completion.result is not None:
        app.storage.complete(
            [Completion(task_id=outcome.task_id, result=outcome.completion.result)],
            app.clock.time(),
        )
    run_followups_eagerly(app, outcome)
    propagate = app.conf.task_eager_propagates if throw is None else throw
    if propagate and outcome.exc is not None and outcome.state == states.FAILURE:
        raise outcome.exc
    value: Any = (
        outcome.exc
        if outcome.state in (states.FAILURE, states.REVOKED, states.REJECTED)
        else outcome.retval
    )
    stored = outcome.completion.result
    if outcome.state == states.SUCCESS and stored is not None:
        # What a worker's caller would read: the value as the serializer
        # gives it back (a tuple becomes a list under JSON, and so on).
        value = app.decode_result_row(stored)["result"]
    return EagerResult(
        outcome.task_id,
        value,
        outcome.state,
        traceback=outcome.traceback,
        name=task.name,
        app=app,
        retries=message.retries,
    )


def run_followups_eagerly(app: Liteq, outcome: Outcome) -> None:
    """Run an eager outcome's follow-up tasks (callbacks, chain steps) in this process."""
    from .storage import NewTask

    for row in outcome.completion.followups:
        if not isinstance(row, NewTask):
            continue
        follow = Message.decode(row.message, row.content_type, None)
        sub = execute(app, None, follow, hostname=_hostname(), is_eager=True)
        if app.conf.task_store_eager_result and sub.completion.result is not None:
            app.storage.complete(
                [Completion(task_id=sub.task_id, result=sub.completion.result)],
                app.clock.time(),
            )
        run_followups_eagerly(app, sub)


def end_claimed(
    app: Liteq,
    claimed: Claimed,
    exc: BaseException,
    state: str = states.FAILURE,
    *,
    hostname: str | None = None,
) -> Outcome:
    """End a claimed task that did not finish by itself.

    For a task whose process died, that ran past its hard time limit or that
    was terminated: the outcome stores ``state`` (FAILURE or REVOKED) with
    ``exc``, enqueues the old-style errbacks and fails its chord, like a task
    that raised. The task's own hooks do not run (its process is gone).

    Returns:
        The outcome; its completion is not applied yet.
    """
    hostname = hostname or _hostname()
    try:
        message = Message.decode(
            claimed.message, claimed.content_type, app.accept, claimed.task_id
        )
    except (DecodeError, ContentDisallowed) as err:
        return _undecodable(app, claimed, err, hostname)
    task = app.tasks.get(message.task)
    if state != states.REVOKED:
        return _failed(
            app,
            task,
            claimed,
            message,
            None,
            exc,
            app.clock.time(),
            hostname,
            call_hooks=False,
        )
    from .followups import failed_chord_group

    completion = Completion(task_id=message.id, claimed=claimed)
    completion.result = _result_row(app, task, message, state, exc, hostname)
    chord_group = failed_chord_group(message)
    if chord_group is not None:
        completion.chord_group = chord_group
        completion.chord_failed = True
    return Outcome(message.id, message.task, state, completion, exc=exc)


def lost_outcome_message(name: str, task_id: str, reason: str) -> str:
    """Return the log line for a task recovered as lost."""
    return f"Task {name}[{task_id}] {reason}"


def exc_info_string() -> str:
    """Return the current exception's formatted traceback."""
    return "".join(tb_module.format_exception(*sys.exc_info()))


__all__ = [
    "MaxRetriesExceededError",
    "Outcome",
    "apply_eagerly",
    "end_claimed",
    "execute",
    "run_followups_eagerly",
]
