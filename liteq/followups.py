"""What a worker writes after a task of a workflow ends, and the canvas's built-in tasks.

:func:`on_success_followups` and :func:`on_failure_followups` run where the
task ran (a pool child, ``drain``, ``apply``) and return rows — tasks to
enqueue, results to store — that the worker writes in the same transaction
as the task's ack. :func:`chord_hook` runs inside that transaction when a
chord's counter reaches zero (or a header part fails) and returns the body to
enqueue, or the body's FAILURE(ChordError) and errbacks. So a workflow never
advances twice, and never stalls because a process died between two writes.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import states
from .canvas import (
    Plan,
    Row,
    Signature,
    chain,
    chunks,
    decode_body,
    maybe_signature,
)
from .exceptions import ChordError
from .messages import Message
from .serialization import dict_to_exception, exception_to_dict, is_exception_dict
from .storage import NewTask, ResultRow
from .task import Context

if TYPE_CHECKING:
    import sqlite3

    from .app import Liteq
    from .task import Task

logger = logging.getLogger(__name__)

#: Name of the built-in task that runs a new-style errback of a failed chord.
ERRBACK_TASK = "liteq.errback"


def _base_options(message: Message) -> dict[str, Any]:
    return {"parent_id": message.id, "root_id": message.root_id or message.id}


def _add(
    app: Liteq,
    plan: Plan,
    sig: Signature,
    args: tuple[Any, ...],
    options: dict[str, Any],
) -> None:
    """Add ``sig`` applied with ``args`` to ``plan``; a failure to do so is recorded, not raised.

    A follow-up that cannot even be built (an argument the serializer
    rejects, a bad option) must not make the worker drop the parent's ack:
    the tasks it would have run get a FAILURE result instead.
    """
    mark = (len(plan.tasks), len(plan.groups), len(plan.results))
    try:
        sig._build(app, plan, args, {}, options)
    except Exception as exc:
        del plan.tasks[mark[0] :], plan.groups[mark[1] :], plan.results[mark[2] :]
        logger.error("cannot apply follow-up %r: %r", sig, exc, exc_info=True)
        _fail_leaves(app, plan, sig, exc, None, options.get("parent_id"))


def _fail_leaves(
    app: Liteq,
    plan: Plan,
    sig: Signature,
    exc: BaseException,
    traceback: str | None,
    parent_id: str | None,
) -> None:
    """Store FAILURE(``exc``) for every task of ``sig`` that has an id already."""
    for leaf in sig._leaves():
        if leaf.id:
            plan.results.append(
                app.make_result_row(
                    leaf.id,
                    states.FAILURE,
                    exc,
                    traceback=traceback,
                    name=leaf.name,
                    parent_id=parent_id,
                    group_id=leaf.options.get("group_id"),
                    now=plan.now,
                )
            )


def on_success_followups(
    app: Liteq, message: Message, retval: Any, eager: bool = False
) -> list[Row]:
    """Return what to write after ``message`` succeeded: its callbacks, the next chain step.

    Each callback and the next step receive ``retval`` as their first
    argument (unless immutable). In eager mode (``apply``) callbacks that are
    workflows run right here; plain ones are returned and run by the caller.

    Returns:
        Rows for the same transaction as the ack.
    """
    plan = Plan(now=app.clock.time())
    base = _base_options(message)
    for data in message.callbacks or ():
        sig = maybe_signature(data, app=app)
        if eager and sig.subtask_type is not None:
            sig.apply((retval,), **base)
            continue
        _add(app, plan, sig, (retval,), base)
    if message.chain:
        remaining = list(message.chain)
        if eager:
            steps = [maybe_signature(s, app=app) for s in reversed(remaining)]
            chain(*steps, app=app).apply((retval,), **base)
        else:
            nxt = maybe_signature(remaining.pop(), app=app)
            _add(app, plan, nxt, (retval,), {**base, "chain": remaining or None})
    return plan.rows()


def on_failure_followups(
    app: Liteq,
    message: Message,
    request: Context | None,
    exc: BaseException,
    traceback: str | None,
) -> list[Row]:
    """Return what to write after ``message`` failed, and run its new-style errbacks.

    Errbacks taking ``(request, exc, traceback)`` run here, in the worker, as
    Celery runs them (the exception cannot travel in a message); old-style
    ones taking ``(task_id)`` are enqueued with the failed task's id. The
    chain steps that will now never run get the same FAILURE, so waiting on
    a chain's last result raises instead of hanging.

    Returns:
        Rows for the same transaction as the ack.
    """
    plan = Plan(now=app.clock.time())
    if request is None:
        request = Context(
            id=message.id,
            task=message.task,
            args=message.args,
            kwargs=message.kwargs,
            root_id=message.root_id,
            parent_id=message.parent_id,
            group=message.group,
        )
    base = _base_options(message)
    for data in message.errbacks or ():
        sig = maybe_signature(data, app=app)
        if takes_request(app, sig):
            try:
                sig(request, exc, traceback)
            except Exception:
                logger.exception(
                    "errback %s of %s[%s] raised", sig.name, message.task, message.id
                )
            continue
        _add(app, plan, sig, (message.id,), base)
    for data in message.chain or ():
        _fail_leaves(
            app, plan, maybe_signature(data, app=app), exc, traceback, message.id
        )
    return plan.rows()


def takes_request(app: Liteq, sig: Signature) -> bool:
    """True for a new-style errback: ``(request, exc, traceback)``, run in the worker.

    As Celery: a registered, unbound task function taking more than one
    positional argument (or ``*args``). Anything else (old style, bound, a
    workflow, a task this worker does not know) is enqueued with the task id.
    """
    if sig.subtask_type is not None:
        return False
    task = app.tasks.get(sig.name)
    if task is None or task._bound:
        return False
    fun = task.__dict__.get("__wrapped__") or type(task).__wrapped__
    if fun is None:
        return False
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) > 1 or any(p.kind == p.VAR_POSITIONAL for p in params)


def failed_chord_group(message: Message) -> str | None:
    """The chord that ends (failed) when ``message`` fails, is revoked or rejected.

    That is the chord ``message`` is a header part of, or, for a task whose
    chain leads to a header part, that part's chord: the part will never run.
    """
    if message.chord is not None and message.group:
        return message.group
    if message.chain:
        return maybe_signature(message.chain[0])._membership()
    return None


def chord_of_message(app: Liteq, data: bytes, content_type: str) -> str | None:
    """:func:`failed_chord_group` of an encoded message (None if it cannot be read)."""
    try:
        message = Message.decode(data, content_type, app.accept)
    except Exception:
        return None
    return failed_chord_group(message)


# -- chords -------------------------------------------------------------------------------


def chord_hook(
    app: Liteq,
    conn: sqlite3.Connection,
    group_id: str,
    failed: ResultRow | None,
    now: float,
) -> tuple[list[Row], list[ResultRow]]:
    """Finish chord ``group_id``; called inside the transaction that ended its header.

    Reads run on this thread's connection, which is ``conn``, so they see the
    header results stored in this same transaction.

    Args:
        app: The app.
        conn: The open write transaction.
        group_id: The chord's header group.
        failed: The failed part's result, or None when every part succeeded.
        now: Epoch seconds of the transaction.

    Returns:
        ``(rows, results)``: the body (or its errbacks) to enqueue, and, on
        failure, the body's FAILURE(ChordError) results.
    """
    results = app.storage.results
    group = results.get_group(group_id)
    if group is None or group.body is None or group.content_type is None:
        logger.error("chord %s finished but its counter row is gone", group_id)
        return [], []
    plan = Plan(now=now)
    expires = app.result_expires_seconds()
    plan.groups.append(
        dataclasses.replace(
            group, date_done=now, expires_at=now + expires if expires else None
        )
    )
    try:
        body = decode_body(app, group.body, group.content_type)
    except Exception as exc:
        logger.error("chord %s: cannot decode its body: %r", group_id, exc)
        return plan.rows(), []
    if failed is None:
        rows = results.get_many(group.task_ids)
        values = [_value(app, rows.get(task_id)) for task_id in group.task_ids]
        _add(app, plan, body, (values,), {})
    else:
        _fail_chord(app, plan, body, failed)
    return [*plan.groups, *plan.tasks], plan.results


def _value(app: Liteq, row: ResultRow | None) -> Any:
    return None if row is None else app.decode_result_row(row)["result"]


def _fail_chord(app: Liteq, plan: Plan, body: Signature, failed: ResultRow) -> None:
    """The body will never run: store its ChordError and run its errbacks once."""
    meta = app.decode_result_row(failed)
    cause = meta["result"]
    if isinstance(cause, BaseException):
        reason = ChordError(f"Dependency {failed.task_id} raised {cause!r}")
    else:
        reason = ChordError(f"Dependency {failed.task_id} ended {failed.status}")
    body_id = body._result_id()
    _fail_leaves(app, plan, body, reason, None, None)
    seen: list[Signature] = []
    for errback in body._errbacks():
        if errback in seen:
            continue
        seen.append(errback)
        options = {"parent_id": body_id, "root_id": body.root_id or body_id}
        if takes_request(app, errback):
            request = {
                "id": body_id,
                "task": body.name,
                "args": list(body.args),
                "kwargs": dict(body.kwargs),
                "root_id": body.root_id,
                "group": body.options.get("group_id"),
            }
            runner = Signature(
                ERRBACK_TASK,
                (dict(errback), request, exception_to_dict(reason), None),
                options={**_errback_route(app, errback), **options},
                app=app,
            )
            _add(app, plan, runner, (), {})
        else:
            _add(app, plan, errback, (body_id,), options)


def _errback_route(app: Liteq, errback: Signature) -> dict[str, Any]:
    """Send the errback runner where the errback itself would go (its queue, routes)."""
    given: dict[str, Any] = {
        k: errback.options[k] for k in ("queue", "priority") if k in errback.options
    }
    try:
        _, probe = app.build_message(errback.name, (), {}, **given)
    except Exception:
        return given
    return {"queue": probe.queue, "priority": probe.priority}


def followup_ids(rows: Sequence[Row]) -> list[str]:
    """The ids of the tasks among ``rows`` (a result's ``children``)."""
    return [row.task_id for row in rows if isinstance(row, NewTask)]


# -- built-in tasks ---------------------------------------------------------------------------


def register_builtin_tasks(app: Liteq) -> None:
    """Register the canvas's tasks on ``app``: ``liteq.map``, ``liteq.starmap``,
    ``liteq.chunks``, ``liteq.errback``, ``liteq.accumulate``; Celery's
    ``celery.*`` names map to them.
    """

    def map_task(task: dict[str, Any], it: list[Any]) -> list[Any]:
        """Call ``task(item)`` for each item, in this process."""
        sig = maybe_signature(task, app=app)
        return [sig(item) for item in it]

    def starmap_task(task: dict[str, Any], it: list[Any]) -> list[Any]:
        """Call ``task(*item)`` for each item, in this process."""
        sig = maybe_signature(task, app=app)
        return [sig(*item) for item in it]

    def chunks_task(task: dict[str, Any], it: list[Any], n: int) -> Any:
        """Apply ``task`` over ``it`` in chunks of ``n`` (a group of starmaps)."""
        result = chunks(maybe_signature(task, app=app), it, n, app=app).apply_async()
        return result.as_tuple()

    def errback_task(
        errback: dict[str, Any],
        request: dict[str, Any],
        exc: Any,
        traceback: str | None,
    ) -> Any:
        """Call a new-style errback of a chord whose header failed."""
        sig = maybe_signature(errback, app=app)
        error = dict_to_exception(exc) if is_exception_dict(exc) else exc
        return sig(Context(**request), error, traceback)

    def accumulate_task(*args: Any, index: int | None = None) -> Any:
        """Return the arguments (or the one at ``index``): ``Task.replace`` with a group."""
        return args[index] if index is not None else list(args)

    made: list[tuple[str, Task]] = []
    for name, fun in (
        ("map", map_task),
        ("starmap", starmap_task),
        ("chunks", chunks_task),
        ("errback", errback_task),
        ("accumulate", accumulate_task),
    ):
        task = app._create_task(fun, name=f"liteq.{name}", typing=False)
        made.append((name, task))
    for name, task in made:
        if name != "errback":
            app.tasks.setdefault(f"celery.{name}", task)


__all__ = [
    "ERRBACK_TASK",
    "chord_hook",
    "chord_of_message",
    "failed_chord_group",
    "followup_ids",
    "on_failure_followups",
    "on_success_followups",
    "register_builtin_tasks",
    "takes_request",
]
