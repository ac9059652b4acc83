"""Signatures and workflows: ``signature``, ``chain``, ``group``, ``chord``, ...

A :class:`Signature` is a dict (as Celery's), so it serializes into messages
and schedules: ``{"task", "args", "kwargs", "options", "subtask_type",
"immutable"}``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .messages import Message

if TYPE_CHECKING:
    import sqlite3

    from .app import Liteq
    from .result import AsyncResult
    from .storage import NewTask
    from .storage.results import ResultRow
    from .task import Context, Task


class Signature(dict[str, Any]):
    """A task call to be made later: name, partial args/kwargs and options."""

    def __init__(
        self,
        task: str | Task | dict[str, Any] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        type: Any = None,  # noqa: A002 - Celery's name
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Liteq | None = None,
        **ex: Any,
    ) -> None:
        if isinstance(task, dict):
            super().__init__(task)
            self._app = app
            return
        name = task if isinstance(task, str) or task is None else task.name
        super().__init__(
            task=name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            options=dict(options or {}, **ex),
            subtask_type=subtask_type,
            immutable=immutable,
        )
        self._app = (
            app
            if app is not None
            else (task.app if task is not None and not isinstance(task, str) else None)
        )

    # -- accessors ---------------------------------------------------------------------
    @property
    def app(self) -> Liteq:
        """The app this signature publishes to."""
        if self._app is not None:
            return self._app
        from .app import current_app

        return current_app()

    @property
    def name(self) -> str:
        """The task name."""
        return str(self["task"])

    task = name

    @property
    def args(self) -> tuple[Any, ...]:
        """Partial positional arguments."""
        return tuple(self.get("args") or ())

    @property
    def kwargs(self) -> dict[str, Any]:
        """Partial keyword arguments."""
        return dict(self.get("kwargs") or {})

    @property
    def options(self) -> dict[str, Any]:
        """Calling options (``countdown``, ``queue``, ``link``...)."""
        opts = self.get("options")
        if opts is None:
            opts = self["options"] = {}
        return opts  # type: ignore[no-any-return]

    @property
    def immutable(self) -> bool:
        """True if the parent's result is not prepended to the arguments."""
        return bool(self.get("immutable"))

    @property
    def type(self) -> Task:
        """The task object (looked up by name)."""
        return self.app.tasks[self.name]

    # -- building ------------------------------------------------------------------------
    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **opts: Any,
    ) -> Signature:
        """Return a copy with extra partial args/kwargs/options merged in (Celery's rules)."""
        new_args, new_kwargs, new_opts = self._merge(args, kwargs, opts)
        sig = Signature(dict(copy.deepcopy(dict(self))), app=self._app)
        sig["args"] = list(new_args)
        sig["kwargs"] = new_kwargs
        sig["options"] = new_opts
        return sig

    def _merge(
        self,
        args: Sequence[Any] | None,
        kwargs: dict[str, Any] | None,
        options: dict[str, Any] | None,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        opts = dict(self.options, **(options or {}))
        if self.immutable:
            return self.args, self.kwargs, opts
        return (
            tuple(args or ()) + self.args,
            dict(self.kwargs, **(kwargs or {})),
            opts,
        )

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set calling options in place; returns self (``add.s(2, 2).set(countdown=1)``)."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Make the signature (im)mutable."""
        self["immutable"] = immutable

    def link(self, callback: Signature) -> Signature:
        """Add a callback run with this task's result; returns the callback."""
        self.options.setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Add an errback run when this task fails; returns the errback."""
        self.options.setdefault("link_error", []).append(errback)
        return errback

    def on_error(self, errback: Signature) -> Signature:
        """Add an errback; returns self (for chaining calls)."""
        self.link_error(errback)
        return self

    def freeze(
        self, _id: str | None = None, group_id: str | None = None, **kwargs: Any
    ) -> AsyncResult:
        """Fix the task id now and return its result object."""
        from .messages import new_id

        opts = self.options
        if _id is not None:
            opts["task_id"] = _id
        opts.setdefault("task_id", new_id())
        if group_id is not None:
            opts["group_id"] = group_id
        return self.app.AsyncResult(opts["task_id"], task_name=self.name)

    @property
    def id(self) -> str | None:
        """The frozen task id, if any."""
        return self.options.get("task_id")  # type: ignore[no-any-return]

    # -- calling -------------------------------------------------------------------------
    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Enqueue the call (partial args/kwargs merged first)."""
        new_args, new_kwargs, opts = self._merge(args, kwargs, options)
        task = self.app.tasks.get(self.name)
        if task is not None:
            return task.apply_async(new_args, new_kwargs, **opts)
        return self.app.send_task(self.name, new_args, new_kwargs, **opts)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Enqueue with extra partial arguments."""
        return self.apply_async(args, kwargs)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Run the call eagerly in this process."""
        new_args, new_kwargs, opts = self._merge(args, kwargs, options)
        return self.type.apply(new_args, new_kwargs, **opts)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task in this process (like calling the function)."""
        new_args, new_kwargs, _ = self._merge(args, kwargs, None)
        return self.type(*new_args, **new_kwargs)

    def __or__(self, other: Any) -> Any:
        from . import canvas_ops

        return canvas_ops.pipe(self, other)

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        return Signature(copy.deepcopy(dict(self), memo), app=self._app)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (dict(self),))

    def __repr__(self) -> str:
        args = ", ".join(
            [repr(a) for a in self.args]
            + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        )
        return f"{self.name}({args}){'!' if self.immutable else ''}"


def _rebuild(data: dict[str, Any]) -> Signature:
    return maybe_signature(data)


def signature(
    varies: Any, *args: Any, app: Liteq | None = None, **kwargs: Any
) -> Signature:
    """Return a signature by task name, task, or dict: ``signature("tasks.add", args=(2, 2), countdown=10)``."""
    if isinstance(varies, dict):
        return maybe_signature(varies, app=app)
    sig_args = kwargs.pop("args", args[0] if args else None)
    sig_kwargs = kwargs.pop("kwargs", args[1] if len(args) > 1 else None)
    options = kwargs.pop("options", None) or {}
    immutable = kwargs.pop("immutable", False)
    subtask_type = kwargs.pop("subtask_type", None)
    options.update(kwargs)
    return Signature(
        varies,
        sig_args,
        sig_kwargs,
        options,
        subtask_type=subtask_type,
        immutable=immutable,
        app=app,
    )


subtask = signature


def maybe_signature(value: Any, app: Liteq | None = None) -> Signature:
    """Return ``value`` as a Signature (dicts from messages are rebuilt)."""
    if isinstance(value, Signature):
        if app is not None and value._app is None:
            value._app = app
        return value
    if isinstance(value, dict):
        sig = Signature(dict(value), app=app)
        return sig
    raise TypeError(f"expected a signature, got {type(value).__name__}")


# -- what the worker enqueues after a task -----------------------------------------------


def _followup(
    app: Liteq,
    sig: Signature,
    parent: Message,
    args: tuple[Any, ...],
    now: float | None = None,
) -> NewTask:
    new_args, new_kwargs, opts = sig._merge(args, None, None)
    opts = dict(opts)
    opts.pop("link", None)
    opts.pop("link_error", None)
    task_id = opts.pop("task_id", None)
    _, row = app.build_message(
        sig.name,
        new_args,
        new_kwargs,
        task_id=task_id,
        parent_id=parent.id,
        root_id=parent.root_id or parent.id,
        link=sig.options.get("link"),
        link_error=sig.options.get("link_error"),
        **{k: v for k, v in opts.items() if k in _CALL_OPTIONS},
    )
    return row


_CALL_OPTIONS = frozenset(
    {
        "countdown",
        "eta",
        "expires",
        "queue",
        "priority",
        "serializer",
        "headers",
        "ignore_result",
        "time_limit",
        "soft_time_limit",
        "shadow",
        "group_id",
        "group_index",
        "chord",
        "chain",
        "unique_key",
    }
)


def on_success_followups(app: Liteq, message: Message, retval: Any) -> list[NewTask]:
    """Return the tasks to enqueue after ``message`` succeeded: its links and the next chain step."""
    rows: list[NewTask] = []
    for data in message.callbacks or ():
        rows.append(_followup(app, maybe_signature(data, app=app), message, (retval,)))
    if message.chain:
        remaining = list(message.chain)
        nxt = maybe_signature(remaining.pop(), app=app)
        if remaining:
            nxt = nxt.clone()
            nxt.options["chain"] = remaining
        rows.append(_followup(app, nxt, message, (retval,)))
    return rows


def on_failure_followups(
    app: Liteq,
    message: Message,
    request: Context | None,
    exc: BaseException,
    traceback: str,
) -> list[NewTask]:
    """Return the errback tasks to enqueue after ``message`` failed.

    New-style errbacks (``(request, exc, traceback)``) run right here in the
    worker, as in Celery (the exception cannot travel in a message); old-style
    ones (``(task_id)``) are enqueued with the failed task's id.
    """
    rows: list[NewTask] = []
    errbacks = list(message.errbacks or ())
    for data in errbacks:
        sig = maybe_signature(data, app=app)
        task = app.tasks.get(sig.name)
        if task is not None and _accepts_request(task):
            try:
                task(*((request, exc, traceback) + sig.args), **sig.kwargs)
            except Exception:
                import logging

                logging.getLogger(__name__).exception("errback %s raised", sig.name)
            continue
        rows.append(_followup(app, sig, message, (message.id,)))
    return rows


def _accepts_request(task: Task) -> bool:
    import inspect

    fun = task.__wrapped__
    if fun is None:
        return False
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        return False
    if task._bound:
        params = params[1:]
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


def chord_hook(
    app: Liteq,
    conn: sqlite3.Connection,
    group_id: str,
    failed: ResultRow | None,
    now: float,
) -> tuple[list[NewTask], list[ResultRow]]:
    """Called when a chord's last header part finished (or one failed): enqueue the body."""
    from .canvas_ops import chord_complete

    return chord_complete(app, conn, group_id, failed, now)


def xmap(task: Signature, it: Iterable[Any], app: Liteq | None = None) -> Signature:
    """Return a signature calling ``task`` for each item (one message)."""
    from .canvas_ops import xmap as _xmap

    return _xmap(task, it, app=app)


def xstarmap(
    task: Signature, it: Iterable[Sequence[Any]], app: Liteq | None = None
) -> Signature:
    """Return a signature calling ``task(*args)`` for each item (one message)."""
    from .canvas_ops import xstarmap as _xstarmap

    return _xstarmap(task, it, app=app)


def chunks(
    task: Signature, it: Iterable[Sequence[Any]], n: int, app: Liteq | None = None
) -> Signature:
    """Return a signature splitting ``it`` into chunks of ``n``."""
    from .canvas_ops import chunks as _chunks

    return _chunks(task, it, n, app=app)
