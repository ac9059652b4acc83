"""Workflows: ``signature``, ``chain``, ``group``, ``chord``, ``xmap``/``xstarmap``, ``chunks``.

A :class:`Signature` is a dict, as Celery's, so it travels inside messages and
schedules: ``{"task", "args", "kwargs", "options", "subtask_type",
"immutable"}``. ``chain``, ``group`` and ``chord`` are Signatures too; their
parts live in ``kwargs`` (``tasks``, ``header``/``body``).

Applying a workflow writes every row it needs in one transaction:

* a chain enqueues its first task with the rest of the chain in the
  message (``message.chain``, reversed as Celery's); the worker enqueues the
  next step in the same transaction that acks the previous one;
* a group enqueues all its tasks at once;
* a chord stores a counter row (with the body) in ``liteq_group`` next to
  its header tasks; each header part decrements it in the transaction that
  stores the part's result, and the part that reaches zero enqueues the body
  with the header results in header order (see :mod:`liteq.followups`).

Every task of a workflow gets its id when the workflow is applied
("frozen"), so the results (``parent`` links, ``GroupResult`` members) exist
before the tasks run.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, overload

from . import publishing, serialization
from .messages import new_id
from .prepared import prepare
from .result import AsyncResult, EagerResult, GroupResult, ResultSet
from .storage import GroupRow, NewTask, ResultRow

if TYPE_CHECKING:
    from .app import Liteq
    from .task import Task

#: What applying a signature returns: one task's result or a group's.
ResultLike = AsyncResult | GroupResult
#: A row a workflow writes: a task to enqueue, a chord counter, a result.
Row = NewTask | GroupRow | ResultRow

#: Options that merging never overrides once set (a task's place in a group).
_IMMUTABLE_OPTIONS = frozenset({"group_id"})
#: Options Celery accepts that mean nothing for a message stored in SQLite.
_DROPPED_OPTIONS = frozenset({"route_name", "stamped_headers"})


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _merge_options(own: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``own`` updated with ``extra``, except options that must not change."""
    merged = dict(own)
    for key, value in extra.items():
        if key in _IMMUTABLE_OPTIONS and key in own:
            continue
        merged[key] = value
    return merged


def _join_chain(first: list[Any] | None, then: list[Any] | None) -> list[Any] | None:
    """Join two reversed step lists: ``first``'s steps run before ``then``'s."""
    joined = list(then or ()) + list(first or ())
    return joined or None


def _root(result: Any) -> Any:
    """The earliest result reachable through ``parent`` links."""
    node = result
    seen: set[int] = set()
    while getattr(node, "parent", None) is not None:
        if id(node) in seen:
            raise RuntimeError("recursive result parents")
        seen.add(id(node))
        node = node.parent
    return node


def leaf_results(result: ResultLike) -> list[AsyncResult]:
    """The task results behind ``result``, flattening groups, in order."""
    if isinstance(result, ResultSet):
        leaves: list[AsyncResult] = []
        for member in result.results:
            leaves.extend(leaf_results(member))
        return leaves
    return [result]


@dataclass
class Plan:
    """Rows that applying a workflow writes, all in one transaction.

    Attributes:
        now: Epoch seconds used for every row.
        check: Check arguments against task signatures (client side only: a
            worker never raises while computing follow-ups).
    """

    now: float
    check: bool = False
    tasks: list[NewTask] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    results: list[ResultRow] = field(default_factory=list)
    #: Some task's id came with it (a frozen signature's, or an option):
    #: it may be queued already, which the insert then checks.
    given_ids: bool = False

    def task_id(self, given: str | None) -> str:
        """Return ``given`` (and remember that an id was given), or a new id."""
        if given:
            self.given_ids = True
            return given
        return new_id()

    def rows(self) -> list[Row]:
        """Every row, counters and results before the tasks that depend on them."""
        return [*self.groups, *self.results, *self.tasks]


def publish(
    app: Liteq,
    sig: Signature,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> ResultLike:
    """Apply ``sig`` now: every task, counter and result row in one transaction.

    Returns:
        The workflow's result (frozen before anything is written).

    Raises:
        TypeError: arguments do not fit a task of the workflow.
        EncodeError: an argument cannot be serialized.
        StorageError: the database could not be written; nothing was.
    """
    plan = Plan(now=app.clock.time(), check=True)
    result = sig._build(app, plan, tuple(args or ()), dict(kwargs or {}), options or {})
    storage = app.storage
    announced = publishing.announce_before(plan.tasks)
    with storage.db.write():
        for group_row in plan.groups:
            storage.results.save_group(group_row, plan.now)
        for result_row in plan.results:
            storage.results.store(result_row)
        storage.broker.enqueue_many(plan.tasks, plan.now, not plan.given_ids)
    publishing.announce_after(announced, storage.db)
    return result


class _MemberRows:
    """Builds the rows of a group's plain members from one prepared call per task.

    What ``member._build`` adds to the plan for a member that is a plain
    task signature without options of its own (``task.s(i)``), without
    resolving the calling options and making a message per member: the
    members of a group share every option but their id, arguments and
    ``group_index``.
    """

    def __init__(
        self,
        app: Liteq,
        plan: Plan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        group_id: str,
        options: dict[str, Any],
    ) -> None:
        self.app = app
        self.plan = plan
        self.args = args
        self.kwargs = kwargs
        self.group_id = group_id
        self.options = {k: v for k, v in options.items() if k not in _DROPPED_OPTIONS}
        # Routing functions may look at each member's arguments.
        self.enabled = not app.conf.task_routes and "chain" not in options
        self._by_name: dict[str, Any] = {}

    def add(self, member: Signature, index: int) -> ResultLike | None:
        """Add ``member``'s row to the plan and return its result.

        Returns:
            None when the member needs the general path (``member._build``);
            nothing was added then.
        """
        if not self.enabled or type(member) is not Signature:
            return None
        own = member.options
        if own and (len(own) > 1 or "task_id" not in own):
            return None
        name = member.name
        app = self.app
        found = self._by_name.get(name)
        if found is None:
            found = self._prepare(name, member)
            self._by_name[name] = found
        task, prepared, render = found
        if render is None or (member._type is not None and member._type is not task):
            return None
        if member.immutable:
            args, kwargs = member.args, dict(member.kwargs)
        else:
            args = self.args + member.args if self.args else member.args
            kwargs = {**member.kwargs, **self.kwargs}
        if self.plan.check and task is not None and task.typing:
            task.check_arguments(args, kwargs)
        task_id = self.plan.task_id(own.get("task_id"))
        try:
            data = render(task_id, args, kwargs, index)
        except Exception:
            return None  # the general path raises the usual EncodeError
        self.plan.tasks.append(prepared.row(task_id, data, "application/json"))
        return app.AsyncResult(task_id, task_name=name)

    def _prepare(self, name: str, member: Signature) -> tuple[Any, Any, Any]:
        app = self.app
        task = member._type or app.tasks.get(name)
        try:
            prepared = prepare(
                app,
                name,
                (),
                {},
                task_type=task,
                now=self.plan.now,
                group_id=self.group_id,
                **self.options,
            )
        except Exception:
            return task, None, None  # the general path raises it
        return task, prepared, prepared.indexed_renderer()


class Signature(dict[str, Any]):
    """One task call to make later: name, partial args/kwargs and options.

    Args:
        task: A task, its name, or a dict made by another Signature.
        args: Partial positional arguments (the parent's result is prepended).
        kwargs: Partial keyword arguments.
        options: Calling options (``countdown``, ``queue``, ``link``, ...).
        subtask_type: ``chain``, ``group``, ``chord``... (set by subclasses).
        immutable: Ignore the parent's result (``si()``).
        app: The app to publish to (default: the task's, or the current one).
        **ex: More calling options.
    """

    #: Signature classes by ``subtask_type``, for rebuilding dicts.
    TYPES: ClassVar[dict[str, type[Signature]]] = {}

    def __init__(
        self,
        task: str | Task | dict[str, Any] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        type: Task | None = None,  # noqa: A002 - Celery's name
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Liteq | None = None,
        **ex: Any,
    ) -> None:
        self._app = app
        self._type: Task | None = type
        if isinstance(task, dict):
            super().__init__(task)
            return
        if task is None or isinstance(task, str):
            name = task
        else:
            name = task.name
            self._type = task
            if app is None:
                self._app = getattr(task, "_app", None)
        super().__init__(
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options=dict(options or {}, **ex),
            subtask_type=subtask_type,
            immutable=immutable,
        )

    @classmethod
    def register_type(
        cls, name: str | None = None
    ) -> Callable[[type[Signature]], type[Signature]]:
        """Class decorator: rebuild dicts with this ``subtask_type`` as that class."""

        def register(subclass: type[Signature]) -> type[Signature]:
            cls.TYPES[name or subclass.__name__] = subclass
            return subclass

        return register

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Liteq | None = None) -> Signature:
        """Rebuild a signature (of the right class) from its dict form."""
        kind = data.get("subtask_type")
        target = cls.TYPES.get(kind) if kind else None
        if target is not None and target is not cls:
            return target.from_dict(data, app=app)
        return Signature(dict(data), app=app)

    # -- fields ----------------------------------------------------------------------
    @property
    def app(self) -> Liteq:
        """The app this signature publishes to."""
        if self._app is not None:
            return self._app
        if self._type is not None:
            app = getattr(self._type, "_app", None)
            if app is not None:
                return app  # type: ignore[no-any-return]
        from .app import current_app

        return current_app()

    @property
    def name(self) -> str:
        """The task name."""
        return str(self.get("task"))

    @property
    def task(self) -> str:
        """The task name (Celery's field)."""
        return str(self.get("task"))

    @property
    def args(self) -> tuple[Any, ...]:
        """Partial positional arguments."""
        return tuple(self.get("args") or ())

    @args.setter
    def args(self, value: Sequence[Any]) -> None:
        self["args"] = tuple(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        """Partial keyword arguments (the stored dict: changes stick)."""
        value = self.get("kwargs")
        if value is None:
            value = self["kwargs"] = {}
        return value

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self["kwargs"] = dict(value)

    @property
    def options(self) -> dict[str, Any]:
        """Calling options (the stored dict: changes stick)."""
        value = self.get("options")
        if value is None:
            value = self["options"] = {}
        return value

    @options.setter
    def options(self, value: dict[str, Any]) -> None:
        self["options"] = dict(value)

    @property
    def subtask_type(self) -> str | None:
        """``None`` for a plain task, else ``chain``, ``group``, ``chord``..."""
        return self.get("subtask_type")

    @property
    def immutable(self) -> bool:
        """True if the parent's result is not prepended to the arguments."""
        return bool(self.get("immutable"))

    @immutable.setter
    def immutable(self, value: bool) -> None:
        self["immutable"] = bool(value)

    @property
    def id(self) -> str | None:
        """The task id, once frozen (``options["task_id"]``)."""
        return self.options.get("task_id")

    @property
    def parent_id(self) -> str | None:
        """The parent task id, if set."""
        return self.options.get("parent_id")

    @property
    def root_id(self) -> str | None:
        """The workflow's root task id, if set."""
        return self.options.get("root_id")

    @property
    def type(self) -> Task:
        """The task object.

        Raises:
            NotRegistered: no task of that name in the app.
        """
        if self._type is not None:
            return self._type
        return self.app.tasks[self.name]

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802 - Celery's name
        """Return the result object of ``task_id`` for this task."""
        return self.app.AsyncResult(task_id, task_name=self.name)

    # -- building -------------------------------------------------------------------------
    def _merge(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        force: bool = False,
    ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Merge partial arguments as Celery: new args first, kwargs updated.

        An immutable signature keeps its arguments (unless ``force``); options
        always merge.
        """
        opts = (
            self.options if options is None else _merge_options(self.options, options)
        )
        if self.immutable and not force:
            return self.args, dict(self.kwargs), dict(opts)
        return (
            tuple(args or ()) + self.args,
            {**self.kwargs, **(kwargs or {})},
            dict(opts),
        )

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **opts: Any,
    ) -> Signature:
        """Return a copy with partial args/kwargs/options merged in.

        Returns:
            A new signature; options are deep-copied, so links added to the
            copy do not touch this one.
        """
        if args or kwargs or opts:
            new_args, new_kwargs, new_opts = self._merge(args, kwargs, opts)
        else:
            new_args, new_kwargs, new_opts = self.args, dict(self.kwargs), self.options
        data = dict(self)
        data.update(
            args=tuple(new_args),
            kwargs=new_kwargs,
            options=copy.deepcopy(new_opts),
        )
        sig = type(self).from_dict(data, app=self._app)
        sig._type = self._type
        return sig

    partial = clone

    def replace(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> Signature:
        """Return a copy with args, kwargs or options replaced (those not None)."""
        sig = self.clone()
        if args is not None:
            sig.args = args
        if kwargs is not None:
            sig.kwargs = kwargs
        if options is not None:
            sig.options = options
        return sig

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Set calling options in place (``add.s(2, 2).set(countdown=1)``).

        Returns:
            This signature, for chaining calls.
        """
        if immutable is not None:
            self.set_immutable(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Make the signature ignore (True) or take (False) its parent's result."""
        self.immutable = immutable

    def _append_option(self, key: str, value: Any) -> Any:
        items = self.options.get(key)
        if not isinstance(items, list):
            items = self.options[key] = _as_list(items)
        if value not in items:
            items.append(value)
        return value

    def link(self, callback: Signature) -> Signature:
        """Run ``callback`` with this task's return value when it succeeds.

        Returns:
            The callback (Celery's convention).
        """
        return self._append_option("link", callback)  # type: ignore[no-any-return]

    def link_error(self, errback: Signature) -> Signature:
        """Run ``errback`` when this task fails.

        New-style errbacks take ``(request, exc, traceback)`` and run in the
        worker; old-style ones take the failed task's id and are enqueued.

        Returns:
            The errback.
        """
        return self._append_option("link_error", errback)  # type: ignore[no-any-return]

    def on_error(self, errback: Signature) -> Signature:
        """Like :meth:`link_error`, but returns this signature (for chaining)."""
        self.link_error(errback)
        return self

    def flatten_links(self) -> list[Signature]:
        """Return this signature and, recursively, every callback linked to it."""
        found: list[Signature] = [self]
        for callback in _as_list(self.options.get("link")):
            found.extend(maybe_signature(callback, app=self._app).flatten_links())
        return found

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultLike:
        """Fix the task id (and its place in a group or chord) now.

        Returns:
            The result object of the task (it can be waited on once applied).
        """
        opts = self.options
        if "task_id" not in opts:
            opts["task_id"] = _id or new_id()
        if root_id:
            opts["root_id"] = root_id
        if parent_id:
            opts["parent_id"] = parent_id
        if group_id and "group_id" not in opts:
            opts["group_id"] = group_id
        if chord is not None:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        return self.AsyncResult(opts["task_id"])

    def _build(
        self,
        app: Liteq,
        plan: Plan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> ResultLike:
        """Add the rows that applying this signature writes to ``plan``."""
        options = dict(options)
        outer_chain = options.pop("chain", None)
        new_args, new_kwargs, opts = self._merge(args, kwargs, options)
        after = _join_chain(opts.pop("chain", None), outer_chain)
        task_id = plan.task_id(opts.pop("task_id", None))
        for key in _DROPPED_OPTIONS:
            opts.pop(key, None)
        task = self._type or app.tasks.get(self.name)
        if plan.check and task is not None and task.typing:
            task.check_arguments(new_args, new_kwargs)
        _, row = app.build_message(
            self.name,
            new_args,
            new_kwargs,
            task_id=task_id,
            chain=after,
            task_type=task,
            now=plan.now,
            **opts,
        )
        plan.tasks.append(row)
        return app.AsyncResult(task_id, task_name=self.name)

    def _leaves(self) -> list[Signature]:
        """The plain task signatures this signature runs (frozen ones have ids)."""
        return [self]

    def _errbacks(self) -> list[Signature]:
        """The errbacks that must run if this signature cannot run at all."""
        return [
            maybe_signature(e, app=self._app)
            for e in _as_list(self.options.get("link_error"))
        ]

    def _membership(self) -> str | None:
        """The chord whose counter this signature's completion decrements, if any."""
        if self.options.get("chord") is not None:
            return self.options.get("group_id")
        return None

    def _result_id(self) -> str | None:
        """The id of the result that :meth:`freeze` returns."""
        return self.id

    # -- calling ---------------------------------------------------------------------------
    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> ResultLike:
        """Enqueue the call; ``args`` are prepended, ``kwargs`` and options merged.

        Returns:
            The task's result (an EagerResult under ``task_always_eager``).

        Raises:
            TypeError: the arguments do not fit the task.
            EncodeError: an argument cannot be serialized.
        """
        options = {k: v for k, v in options.items() if v is not None}
        new_args, new_kwargs, opts = self._merge(args, kwargs, options)
        for key in _DROPPED_OPTIONS:
            opts.pop(key, None)
        app = self.app
        task = self._type or app.tasks.get(self.name)
        if task is not None:
            return task.apply_async(new_args, new_kwargs, **opts)
        return app.send_task(self.name, new_args, new_kwargs, **opts)

    def delay(self, *args: Any, **kwargs: Any) -> ResultLike:
        """Enqueue with extra partial arguments (``sig.delay(4)``)."""
        return self.apply_async(args, kwargs)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> ResultLike:
        """Run the call in this process, through the worker's code path.

        Returns:
            An :class:`~liteq.result.EagerResult`.
        """
        options = {k: v for k, v in options.items() if v is not None}
        new_args, new_kwargs, opts = self._merge(args, kwargs, options)
        for key in (*_DROPPED_OPTIONS, "chain", "chord", "group_id", "group_index"):
            opts.pop(key, None)
        return self.type.apply(new_args, new_kwargs, **opts)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task function in this process (like calling the function)."""
        new_args, new_kwargs, _ = self._merge(args, kwargs, None)
        return self.type(*new_args, **new_kwargs)

    def __invert__(self) -> Any:
        """``~sig``: apply and wait for the result."""
        return self.apply_async().get()

    def __or__(self, other: Any) -> Any:
        """``a | b``: a chain (a group after a task stays a step of the chain)."""
        if isinstance(other, chain):
            return chain(self, *other._unchained(), app=self._app)
        if isinstance(other, group):
            return chain(self, _unroll(other), app=self._app)
        if isinstance(other, Signature):
            return chain(self, other, app=self._app)
        return NotImplemented

    def __ior__(self, other: Any) -> Any:
        return self.__or__(other)

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        sig = type(self).from_dict(copy.deepcopy(dict(self), memo), app=self._app)
        sig._type = self._type
        return sig

    def __copy__(self) -> Signature:
        sig = type(self).from_dict(dict(self), app=self._app)
        sig._type = self._type
        return sig

    def __reduce__(self) -> tuple[Any, ...]:
        # Travels as plain data; the task and app are looked up on arrival.
        return (_rebuild, (dict(self),))

    def __json__(self) -> dict[str, Any]:
        return dict(self)

    def reprcall(self, *args: Any, **kwargs: Any) -> str:
        """Return ``name(args, kwargs)`` with partial arguments merged in."""
        new_args, new_kwargs, _ = self._merge(args, kwargs, None, force=True)
        parts = [repr(a) for a in new_args] + [
            f"{k}={v!r}" for k, v in new_kwargs.items()
        ]
        return f"{self.name}({', '.join(parts)})"

    def __repr__(self) -> str:
        return self.reprcall() + ("!" if self.immutable else "")


def _rebuild(data: dict[str, Any]) -> Signature:
    return Signature.from_dict(data)


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """Return a signature: by task name, task, or from a dict (or clone one).

    ``signature("tasks.add", args=(2, 2), countdown=10)`` needs no import of
    the task's code; extra keywords are calling options.

    Returns:
        A new Signature (a copy when given a Signature).
    """
    app = kwargs.get("app")
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, dict):
        return Signature.from_dict(varies, app=app)
    return Signature(varies, *args, **kwargs)


subtask = signature


@overload
def maybe_signature(
    value: None, app: Liteq | None = None, clone: bool = False
) -> None: ...


@overload
def maybe_signature(
    value: Signature | dict[str, Any], app: Liteq | None = None, clone: bool = False
) -> Signature: ...


def maybe_signature(
    value: Signature | dict[str, Any] | None,
    app: Liteq | None = None,
    clone: bool = False,
) -> Signature | None:
    """Return ``value`` as a Signature (dicts from messages are rebuilt); None stays None.

    Raises:
        TypeError: ``value`` is neither a Signature, a dict nor None.
    """
    if value is None:
        # Celery's: an optional callback argument passes through.
        return None
    if isinstance(value, Signature):
        sig = value.clone() if clone else value
    elif isinstance(value, dict):
        sig = Signature.from_dict(value, app=app)
    else:
        raise TypeError(f"expected a signature, got {type(value).__name__}")
    if app is not None:
        sig._app = app
    return sig


maybe_subtask = maybe_signature


def _is_iterable(value: Any) -> bool:
    """True for a list/generator of signatures (not a signature or a string)."""
    return isinstance(value, Iterable) and not isinstance(value, (dict, str, bytes))


def _unroll(g: group) -> Signature:
    """A group of one task is that task."""
    tasks = g.tasks
    return tasks[0] if len(tasks) == 1 else g


# -- chain ---------------------------------------------------------------------------------


class _Composite(Signature):
    """A signature made of other signatures (``kwargs["tasks"]``): chain and group."""

    @property
    def tasks(self) -> list[Signature]:
        """The member signatures, in order."""
        return self.kwargs.setdefault("tasks", [])  # type: ignore[no-any-return]

    @tasks.setter
    def tasks(self, value: list[Signature]) -> None:
        self.kwargs["tasks"] = list(value)

    @property
    def app(self) -> Liteq:
        """The app given, or the first member's."""
        if self._app is None and self.tasks and self.tasks[0]._app is not None:
            return self.tasks[0].app
        return super().app

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **opts: Any,
    ) -> Signature:
        """Return a copy with copies of the members."""
        sig = super().clone(args, kwargs, **opts)
        assert isinstance(sig, _Composite)
        sig.tasks = [t.clone() for t in sig.tasks]
        return sig


@Signature.register_type(name="chain")
class chain(_Composite):  # noqa: N801 - Celery's name
    """Tasks run one after another, each receiving the previous one's result.

    ``chain(a.s(), b.s())`` is ``a.s() | b.s()``; calling it returns the last
    task's result, whose ``parent`` is the previous task's result, and so on.
    A failure stops the chain: the failing task's errbacks run and the tasks
    that will not run get the same FAILURE. A group followed by a task becomes
    a chord; nested chains are flattened.

    Args:
        *tasks: The steps (or one iterable of steps).
        app: The app.
        **options: Options of the chain: ``link`` goes to the last step,
            ``link_error`` to every step, the others to the first step.
    """

    def __init__(self, *tasks: Any, app: Liteq | None = None, **options: Any) -> None:
        if len(tasks) == 1 and _is_iterable(tasks[0]):
            tasks = tuple(tasks[0])
        steps: list[Signature] = []
        for task in tasks:
            sig = maybe_signature(task, app=app)
            if isinstance(sig, chain) and not sig.options:
                steps.extend(sig.tasks)
            else:
                steps.append(sig)
        super().__init__(
            "celery.chain", (), {"tasks": steps}, options, subtask_type="chain", app=app
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Liteq | None = None) -> Signature:
        """Rebuild a chain from its dict form."""
        tasks = [
            maybe_signature(t, app=app)
            for t in (data.get("kwargs") or {}).get("tasks") or ()
        ]
        sig = cls(*tasks, app=app, **(data.get("options") or {}))
        sig["args"] = tuple(data.get("args") or ())
        sig["immutable"] = bool(data.get("immutable"))
        return sig

    def _unchained(self) -> list[Signature]:
        """Copies of the steps, with the chain's ``link`` and ``link_error`` on them."""
        steps = [t.clone() for t in self.tasks]
        if steps:
            for callback in _as_list(self.options.get("link")):
                steps[-1].link(maybe_signature(callback, app=self._app))
        for errback in _as_list(self.options.get("link_error")):
            for step in steps:
                step.link_error(maybe_signature(errback, app=self._app))
        return steps

    def _prepared(self) -> list[Signature]:
        """The steps as they run: nested chains spliced, groups before a step made chords."""
        flat: list[Signature] = []
        emptied = False
        for step in self._unchained():
            if isinstance(step, chain):
                flat.extend(step._prepared())
                continue
            if isinstance(step, group):
                step = _unroll(step)
                if isinstance(step, group) and not step.tasks:
                    emptied = True
                    continue
            flat.append(step)
        if not flat and emptied:
            return [group([], app=self._app)]
        steps: list[Signature] = []
        for step in reversed(flat):
            if isinstance(step, group) and steps:
                step = chord(step, steps.pop(), app=self._app)
            steps.append(step)
        steps.reverse()
        return steps

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultLike:
        """Give every step its id; the last step takes ``_id`` and the group place.

        Returns:
            The last step's result, linked to the earlier ones by ``parent``.

        Raises:
            ValueError: the chain has no steps.
        """
        steps = self._prepared()
        if not steps:
            raise ValueError("cannot freeze or apply an empty chain")
        results: list[ResultLike] = []
        last = len(steps) - 1
        for index in range(last, -1, -1):
            step = steps[index]
            if index == last:
                res = step.freeze(
                    _id or self.options.get("task_id"),
                    group_id=group_id,
                    chord=chord,
                    root_id=root_id,
                    group_index=group_index,
                )
            else:
                res = step.freeze(
                    root_id=root_id, parent_id=parent_id if index == 0 else None
                )
            results.append(res)
        results.reverse()
        for earlier, later in itertools.pairwise(results):
            _root(later).parent = earlier
        self.tasks = steps
        # The chain's links now sit on its steps.
        self.options.pop("link", None)
        self.options.pop("link_error", None)
        return results[-1]

    def _build(
        self,
        app: Liteq,
        plan: Plan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> ResultLike:
        options = dict(options)
        outer_chain = options.pop("chain", None)
        opts = _merge_options(self.options, options)
        own_chain = opts.pop("chain", None)
        sig = self.clone()
        assert isinstance(sig, chain)
        for callback in _as_list(opts.pop("link", None)):
            sig.link(maybe_signature(callback, app=app))
        for errback in _as_list(opts.pop("link_error", None)):
            sig.link_error(maybe_signature(errback, app=app))
        result = sig.freeze(
            opts.pop("task_id", None),
            group_id=opts.pop("group_id", None),
            chord=opts.pop("chord", None),
            root_id=opts.get("root_id"),
            group_index=opts.pop("group_index", None),
        )
        first, rest = sig.tasks[0], sig.tasks[1:]
        after = _join_chain(
            [dict(s) for s in reversed(rest)], _join_chain(own_chain, outer_chain)
        )
        if after:
            opts["chain"] = after
        first_args = (
            tuple(args) + self.args if args and not self.immutable else self.args
        )
        first._build(app, plan, first_args, kwargs, opts)
        return result

    def _leaves(self) -> list[Signature]:
        return [leaf for step in self.tasks for leaf in step._leaves()]

    def _errbacks(self) -> list[Signature]:
        found = super()._errbacks()
        for step in self.tasks:
            found.extend(step._errbacks())
        return found

    def _membership(self) -> str | None:
        return self.tasks[-1]._membership() if self.tasks else None

    def _result_id(self) -> str | None:
        return self.tasks[-1]._result_id() if self.tasks else None

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> ResultLike:
        """Enqueue the first step (the rest travels in its message).

        Returns:
            The last step's result (``.parent`` leads back to the first).

        Raises:
            ValueError: the chain is empty.
        """
        options = {k: v for k, v in options.items() if v is not None}
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return publish(app, self, args, kwargs, options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> ResultLike:
        """Run every step in this process, in order.

        Returns:
            The last step's EagerResult (``.parent`` leads back to the first).
        """
        options = {k: v for k, v in options.items() if v is not None}
        steps = self._prepared()
        if not steps:
            raise ValueError("cannot apply an empty chain")
        link = _as_list(options.pop("link", None))
        link_error = _as_list(options.pop("link_error", None))
        task_id = options.pop("task_id", None)
        last: ResultLike | None = None
        step_args: Sequence[Any] | None = tuple(args or ()) + self.args
        step_kwargs: dict[str, Any] | None = kwargs
        for index, step in enumerate(steps):
            step = step.clone()
            for errback in link_error:
                step.link_error(errback)
            step_opts = dict(options)
            if index == len(steps) - 1:
                for callback in link:
                    step.link(callback)
                if task_id:
                    step_opts["task_id"] = task_id
            res = step.apply(
                (last.get(),) if last is not None else step_args,
                step_kwargs,
                **step_opts,
            )
            _root(res).parent = last
            last, step_args, step_kwargs = res, None, None
            if isinstance(res, EagerResult) and res.state in ("IGNORED", "REJECTED"):
                break
        assert last is not None
        return last

    def __call__(self, *args: Any, **kwargs: Any) -> ResultLike:
        """Apply the chain with partial arguments for its first step."""
        return self.apply_async(args, kwargs)

    def __or__(self, other: Any) -> Any:
        """``chain | x``: append ``x``; a group last followed by a task makes a chord."""
        if isinstance(other, group):
            other = _unroll(other)
            if isinstance(other, group) and not other.tasks:
                return self
        if isinstance(other, chain):
            return chain(*self._unchained(), *other._unchained(), app=self._app)
        if isinstance(other, Signature):
            steps = self._unchained()
            if steps and isinstance(steps[-1], group) and not isinstance(other, group):
                steps[-1] = chord(steps[-1], other, app=self._app)
                return chain(*steps, app=self._app)
            if (
                steps
                and isinstance(steps[-1], chord)
                and not isinstance(other, (group, chord))
            ):
                last = steps[-1]
                last.body = last._require_body() | other
                return chain(*steps, app=self._app)
            return chain(*steps, other, app=self._app)
        return NotImplemented

    def __repr__(self) -> str:
        if not self.tasks:
            return "<chain: empty>"
        return " | ".join(repr(t) for t in self.tasks)


# -- group ---------------------------------------------------------------------------------


@Signature.register_type(name="group")
class group(_Composite):  # noqa: N801 - Celery's name
    """Tasks run in parallel; their results come back in order (a GroupResult).

    Unlike Celery's, ``len()`` of a group counts its dict keys (use
    ``len(g.tasks)``): a dict whose length differs from its items would be
    written wrongly by msgpack.

    Args:
        *tasks: The tasks (or one iterable of them; a generator works).
        app: The app.
        **options: Calling options given to every task.
    """

    def __init__(self, *tasks: Any, app: Liteq | None = None, **options: Any) -> None:
        if len(tasks) == 1:
            only = tasks[0]
            if isinstance(only, group):
                tasks = tuple(only.tasks)
            elif _is_iterable(only):
                tasks = tuple(only)
        members = [maybe_signature(t, app=app) for t in tasks]
        super().__init__(
            "celery.group",
            (),
            {"tasks": members},
            options,
            subtask_type="group",
            app=app,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Liteq | None = None) -> Signature:
        """Rebuild a group from its dict form."""
        tasks = [
            maybe_signature(t, app=app)
            for t in (data.get("kwargs") or {}).get("tasks") or ()
        ]
        sig = cls(tasks, app=app, **(data.get("options") or {}))
        sig["immutable"] = bool(data.get("immutable"))
        return sig

    def skew(
        self, start: float = 1.0, stop: float | None = None, step: float = 1.0
    ) -> group:
        """Spread the members out in time: countdowns ``start``, ``start + step``... (Celery's).

        The countdowns stop growing at ``stop`` (inclusive, if given): the
        members after that take the last one.

        Returns:
            This group.
        """
        countdown = float(start)
        last = countdown
        for task in self.tasks:
            if not stop or countdown <= stop:
                last = countdown
                countdown += step
            task.set(countdown=last)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Make every member (im)mutable."""
        for task in self.tasks:
            task.set_immutable(immutable)

    def link(self, callback: Signature) -> Signature:
        """Link ``callback`` (made immutable) to the first member only, as Celery.

        Use a chord to run something after the whole group.
        """
        sig = maybe_signature(callback, app=self._app).clone().set(immutable=True)
        return self.tasks[0].link(sig)

    def link_error(self, errback: Signature) -> Signature:
        """Link ``errback`` to every member (it may run once per failing member)."""
        sig = maybe_signature(errback, app=self._app)
        for task in self.tasks:
            task.link_error(sig.clone())
        return sig

    def _flat(self, shallow: bool = False) -> list[Signature]:
        """Copies of the members, nested groups flattened, empty chains dropped.

        With ``shallow``, plain task signatures are not copied (for building
        rows, which reads them only).
        """
        flat: list[Signature] = []
        for task in self.tasks:
            sig = maybe_signature(task, app=self._app)
            if not shallow or type(sig) is not Signature:
                sig = sig.clone()
            if isinstance(sig, group):
                flat.extend(sig._flat(shallow))
            elif isinstance(sig, chain) and not sig.tasks:
                continue
            else:
                flat.append(sig)
        return flat

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultLike:
        """Give the group and each member an id.

        Returns:
            The :class:`GroupResult`, members in order.
        """
        opts = self.options
        gid = opts.get("task_id") or _id or group_id or new_id()
        opts["task_id"] = gid
        if group_id:
            opts.setdefault("group_id", group_id)
        if chord is not None:
            opts["chord"] = chord
        if group_index is not None:
            opts["group_index"] = group_index
        members = self._flat()
        results = [
            m.freeze(
                group_id=gid,
                chord=chord,
                root_id=root_id,
                parent_id=parent_id,
                group_index=i,
            )
            for i, m in enumerate(members)
        ]
        self.tasks = members
        return GroupResult(gid, results, app=self.app)

    def _build(
        self,
        app: Liteq,
        plan: Plan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> ResultLike:
        options = dict(options)
        outer_chain = options.pop("chain", None)
        opts = _merge_options(self.options, options)
        after = _join_chain(opts.pop("chain", None), outer_chain)
        if after:
            # A group followed by more steps waits for all its members: a chord.
            head = self.clone()
            head.options.pop("chain", None)
            body = chain(
                *[maybe_signature(s, app=app) for s in reversed(after)], app=app
            )
            whole = chord(head, _unroll_chain(body), app=app)
            return whole._build(
                app,
                plan,
                args,
                kwargs,
                {k: v for k, v in opts.items() if k != "task_id"},
            )
        if opts.get("link") or opts.get("link_error"):
            raise TypeError("cannot link to a group: use a chord, or link its tasks")
        membership = opts.pop("group_id", None)
        gid = opts.pop("task_id", None) or membership or new_id()
        opts.pop("group_index", None)
        chord_body = opts.pop("chord", None)
        member_opts = dict(opts)
        if chord_body is not None:
            member_opts["chord"] = chord_body
        results: list[ResultLike] = []
        rows = _MemberRows(app, plan, args, kwargs, gid, member_opts)
        for index, member in enumerate(self._flat(shallow=True)):
            result = rows.add(member, index)
            if result is None:
                result = member._build(
                    app,
                    plan,
                    args,
                    kwargs,
                    {**member_opts, "group_id": gid, "group_index": index},
                )
            results.append(result)
        return GroupResult(gid, results, app=app)

    def _leaves(self) -> list[Signature]:
        return [leaf for task in self.tasks for leaf in task._leaves()]

    def _errbacks(self) -> list[Signature]:
        found = super()._errbacks()
        for task in self.tasks:
            found.extend(task._errbacks())
        return found

    def _membership(self) -> str | None:
        for task in self.tasks:
            found = task._membership()
            if found is not None:
                return found
        return None

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> ResultLike:
        """Enqueue every member in one transaction; partial ``args`` go to each.

        Returns:
            The :class:`GroupResult` (members in order).

        Raises:
            TypeError: ``link``/``link_error`` given (use a chord), or bad arguments.
        """
        options = {k: v for k, v in options.items() if v is not None}
        if options.get("link") is not None or options.get("link_error") is not None:
            raise TypeError("cannot link to a group: use a chord, or link its tasks")
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        return publish(app, self, args, kwargs, options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> ResultLike:
        """Run every member in this process.

        Returns:
            A :class:`GroupResult` of EagerResults.
        """
        options = {k: v for k, v in options.items() if v is not None}
        own = {
            k: v
            for k, v in self.options.items()
            if k not in ("task_id", "group_id", "group_index", "chord", "chain")
        }
        gid = options.pop("task_id", None) or self.options.get("task_id") or new_id()
        options = {**own, **options}
        results = [m.apply(args, kwargs, **options) for m in self._flat()]
        return GroupResult(gid, results, app=self.app)

    def __call__(self, *args: Any, **options: Any) -> ResultLike:
        """Apply the group; positional arguments are prepended to every member's."""
        return self.apply_async(args, **options)

    def __or__(self, other: Any) -> Any:
        """``group | task``: a chord with ``task`` as body."""
        if isinstance(other, group) and not other.tasks:
            return self
        if isinstance(other, Signature):
            return chord(self, other, app=self._app)
        return NotImplemented

    def __repr__(self) -> str:
        if not self.tasks:
            return "group(<empty>)"
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"


#: ``group`` under another name, for annotations inside classes with a ``group`` method.
_group = group


def _unroll_chain(c: chain) -> Signature:
    """A chain of one step is that step."""
    return c.tasks[0] if len(c.tasks) == 1 and not c.options else c


# -- chord ---------------------------------------------------------------------------------


@Signature.register_type(name="chord")
class chord(Signature):  # noqa: N801 - Celery's name
    """A group (the header) whose results, in order, are passed to one more task (the body).

    The body runs exactly once, enqueued in the transaction that stores the
    last header result. If a header task fails, the body does not run: its
    result becomes FAILURE(ChordError) and its errbacks run once.

    Args:
        header: The header tasks (a group, or an iterable of signatures).
        body: The body; may also be given when calling: ``chord(header)(body)``.
        app: The app.
        **options: Calling options (``task_id`` is the body's id).
    """

    def __init__(
        self,
        header: Any,
        body: Any = None,
        app: Liteq | None = None,
        task: str = "celery.chord",
        **options: Any,
    ) -> None:
        if isinstance(header, dict):
            header = maybe_signature(header, app=app)
        head = header if isinstance(header, group) else group(header, app=app)
        body_sig = maybe_signature(body, app=app) if body is not None else None
        super().__init__(
            task,
            (),
            {"header": head, "body": body_sig, "kwargs": {}},
            options,
            subtask_type="chord",
            app=app,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Liteq | None = None) -> Signature:
        """Rebuild a chord from its dict form."""
        kw = data.get("kwargs") or {}
        header = kw.get("header") or []
        if isinstance(header, dict):
            header = maybe_signature(header, app=app)
        sig = cls(header, kw.get("body"), app=app, **(data.get("options") or {}))
        sig["args"] = tuple(data.get("args") or ())
        sig["immutable"] = bool(data.get("immutable"))
        return sig

    @property
    def header(self) -> group:
        """The header group."""
        head = self.kwargs.get("header")
        if not isinstance(head, group):
            head = self.kwargs["header"] = group(head or [], app=self._app)
        return head

    @property
    def tasks(self) -> list[Signature]:
        """The header's member signatures."""
        return self.header.tasks

    @property
    def body(self) -> Signature | None:
        """The body signature (None until given)."""
        body = self.kwargs.get("body")
        if body is not None and not isinstance(body, Signature):
            body = self.kwargs["body"] = maybe_signature(body, app=self._app)
        return body

    @body.setter
    def body(self, value: Signature | None) -> None:
        self.kwargs["body"] = value

    @property
    def app(self) -> Liteq:
        """The chord's app (or its header's or body's)."""
        if self._app is None:
            if self.tasks and self.tasks[0]._app is not None:
                return self.tasks[0].app
            body = self.body
            if body is not None and body._app is not None:
                return body.app
        return super().app

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **opts: Any,
    ) -> Signature:
        """Return a copy with copies of the header and body."""
        sig = super().clone(args, kwargs, **opts)
        assert isinstance(sig, chord)
        sig.kwargs["header"] = self.header.clone()
        body = self.body
        sig.body = body.clone() if body is not None else None
        return sig

    def set_immutable(self, immutable: bool) -> None:
        """Make the header tasks (im)mutable (not the body)."""
        self.header.set_immutable(immutable)

    def link(self, callback: Signature) -> Signature:
        """Link ``callback`` to the body."""
        return self._require_body().link(callback)

    def link_error(self, errback: Signature) -> Signature:
        """Link ``errback`` to the body: it runs once if the chord fails."""
        sig = maybe_signature(errback, app=self._app)
        for task in self.tasks:
            if isinstance(task, chord):
                task.link_error(sig)
        self._require_body().link_error(sig)
        return sig

    def _require_body(self) -> Signature:
        body = self.body
        if body is None:
            raise ValueError(
                "the chord has no body: chord(header, body) or chord(header)(body)"
            )
        return body

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Signature | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> ResultLike:
        """Give the body (``_id``) and every header task an id.

        Returns:
            The body's result; its (first) ``parent`` is the header's GroupResult.
        """
        body = self._require_body()
        body_result = body.freeze(
            _id or self.options.get("task_id"),
            group_id=group_id,
            chord=chord,
            root_id=root_id,
            group_index=group_index,
        )
        header_result = self.header.freeze(
            chord=body, root_id=root_id, parent_id=parent_id
        )
        _root(body_result).parent = header_result
        return body_result

    def _build(
        self,
        app: Liteq,
        plan: Plan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> ResultLike:
        options = dict(options)
        outer_chain = options.pop("chain", None)
        sig = self.clone()
        assert isinstance(sig, chord)
        opts = _merge_options(sig.options, options)
        after = _join_chain(opts.pop("chain", None), outer_chain)
        body_id = opts.pop("task_id", None)
        group_id = opts.pop("group_id", None)
        group_index = opts.pop("group_index", None)
        outer_chord = opts.pop("chord", None)
        callbacks = _as_list(opts.pop("link", None))
        errbacks = _as_list(opts.pop("link_error", None))
        header_only: dict[str, Any] = {
            k: opts.pop(k) for k in ("countdown", "eta", "parent_id") if k in opts
        }
        body = sig._require_body()
        body.options.update(opts)
        if after:
            body.options["chain"] = _join_chain(body.options.get("chain"), after)
        for callback in callbacks:
            body.link(maybe_signature(callback, app=app))
        for errback in errbacks:
            body.link_error(maybe_signature(errback, app=app))
        body_result = body.freeze(
            body_id,
            group_id=group_id,
            chord=outer_chord,
            group_index=group_index,
            root_id=opts.get("root_id"),
        )
        header = sig.header
        gid = header.options.get("task_id") or new_id()
        header.options["task_id"] = gid
        header_args = tuple(args) + sig.args if args and not sig.immutable else sig.args
        header_result = header._build(
            app,
            plan,
            header_args,
            kwargs,
            {**opts, **header_only, "task_id": gid, "chord": body},
        )
        _root(body_result).parent = header_result
        parts = leaf_results(header_result)
        if not parts:
            body._build(app, plan, ([],), {}, {})
            return body_result
        data, content_type = encode_body(app, body)
        plan.groups.append(
            GroupRow(
                gid,
                [p.id for p in parts],
                remaining=len(parts),
                body=data,
                content_type=content_type,
            )
        )
        return body_result

    def _leaves(self) -> list[Signature]:
        body = self.body
        return self.header._leaves() + (body._leaves() if body is not None else [])

    def _errbacks(self) -> list[Signature]:
        body = self.body
        return super()._errbacks() + (body._errbacks() if body is not None else [])

    def _membership(self) -> str | None:
        body = self.body
        return body._membership() if body is not None else None

    def _result_id(self) -> str | None:
        body = self.body
        return body._result_id() if body is not None else None

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> ResultLike:
        """Enqueue the header and store the chord's counter, in one transaction.

        ``countdown``/``eta`` delay the header; ``task_id`` is the body's id.
        An empty header runs the body at once with ``[]``.

        Returns:
            The body's result (``.parent`` is the header's GroupResult).

        Raises:
            ValueError: the chord has no body.
        """
        options = {k: v for k, v in options.items() if v is not None}
        kwargs = dict(kwargs or {})
        sig: chord = self
        body = kwargs.pop("body", None)
        if body is not None:
            sig = self.clone()  # type: ignore[assignment]
            sig.body = maybe_signature(body, app=self._app)
        sig._require_body()
        app = sig.app
        if app.conf.task_always_eager:
            return sig.apply(args, kwargs, **options)
        return publish(app, sig, args, kwargs, options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        propagate: bool = True,
        **options: Any,
    ) -> ResultLike:
        """Run the header, then the body with the header's results, in this process.

        Returns:
            The body's EagerResult.
        """
        body = options.pop("body", None)
        body = (
            maybe_signature(body, app=self._app)
            if body is not None
            else self._require_body()
        )
        header_result = self.header.apply(args, kwargs)
        values = header_result.get(propagate=propagate)
        result = body.apply(
            (values,), **{k: v for k, v in options.items() if v is not None}
        )
        _root(result).parent = header_result
        return result

    def __call__(self, body: Any = None, **options: Any) -> ResultLike:
        """Apply the chord (``chord(header)(body)`` gives the body here)."""
        return self.apply_async(
            (), {"body": body} if body is not None else {}, **options
        )

    def __or__(self, other: Any) -> Any:
        """``chord | task``: the task runs after the body (added to the body)."""
        if isinstance(other, Signature) and not isinstance(other, (group, chain)):
            sig = self.clone()
            assert isinstance(sig, chord)
            sig.body = sig._require_body() | other
            return sig
        return super().__or__(other)

    def __repr__(self) -> str:
        body = self.body
        if body is None:
            return f"<chord without body: {self.tasks!r}>"
        return f"chord({self.header!r}, {body!r})"


def encode_body(app: Liteq, body: Signature) -> tuple[bytes, str]:
    """Serialize a chord body for its counter row.

    Returns:
        ``(data, content_type)``.
    """
    task = app.tasks.get(body.name)
    name = body.options.get("serializer") or (
        task.serializer if task is not None else None
    )
    return serialization.dumps(dict(body), name or app.conf.task_serializer)


def decode_body(app: Liteq, data: bytes, content_type: str) -> Signature:
    """Rebuild a chord body stored by :func:`encode_body`."""
    body: dict[str, Any] = serialization.loads(data, content_type, app.accept)
    return maybe_signature(body, app=app)


# -- maps and chunks -------------------------------------------------------------------------


class _basemap(Signature):  # noqa: N801
    """A signature calling one task for every item, in one message."""

    _task_name: ClassVar[str] = ""
    _kind: ClassVar[str] = ""

    def __init__(
        self, task: Any, it: Iterable[Any], app: Liteq | None = None, **options: Any
    ) -> None:
        sig = task if isinstance(task, Signature) else Signature(task, app=app)
        super().__init__(
            self._task_name,
            (),
            {"task": sig, "it": list(it)},
            options,
            subtask_type=self._kind,
            immutable=True,
            app=app or sig._app,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Liteq | None = None) -> Signature:
        """Rebuild from the dict form."""
        kw = data.get("kwargs") or {}
        return cls(
            maybe_signature(kw["task"], app=app),
            kw.get("it") or [],
            app=app,
            **(data.get("options") or {}),
        )

    def __repr__(self) -> str:
        task = maybe_signature(self.kwargs["task"])
        items = repr(self.kwargs.get("it"))
        if len(items) > 100:
            items = items[:97] + "..."
        call = "(x)" if self._kind == "xmap" else "(*x)"
        return f"[{task.name}{call} for x in {items}]"


@Signature.register_type(name="xmap")
class xmap(_basemap):  # noqa: N801 - Celery's name
    """``task(item)`` for each item, sequentially, in one task (``liteq.map``)."""

    _task_name = "liteq.map"
    _kind = "xmap"


@Signature.register_type(name="xstarmap")
class xstarmap(_basemap):  # noqa: N801 - Celery's name
    """``task(*item)`` for each item, sequentially, in one task (``liteq.starmap``)."""

    _task_name = "liteq.starmap"
    _kind = "xstarmap"


def _split(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    iterator = iter(it)
    while True:
        part = list(itertools.islice(iterator, n))
        if not part:
            return
        yield part


@Signature.register_type(name="chunks")
class chunks(Signature):  # noqa: N801 - Celery's name
    """Split the argument tuples into chunks of ``n``: one ``xstarmap`` task per chunk.

    ``add.chunks(zip(a, b), 10)`` applies as a group; ``.group()`` returns it.
    """

    def __init__(
        self,
        task: Any,
        it: Iterable[Any],
        n: int,
        app: Liteq | None = None,
        **options: Any,
    ) -> None:
        if int(n) < 1:
            raise ValueError("chunks: n must be at least 1")
        sig = task if isinstance(task, Signature) else Signature(task, app=app)
        super().__init__(
            "liteq.chunks",
            (),
            {"task": sig, "it": [list(i) for i in it], "n": int(n)},
            options,
            subtask_type="chunks",
            immutable=True,
            app=app or sig._app,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], app: Liteq | None = None) -> Signature:
        """Rebuild from the dict form."""
        kw = data.get("kwargs") or {}
        return cls(
            maybe_signature(kw["task"], app=app),
            kw.get("it") or [],
            kw["n"],
            app=app,
            **(data.get("options") or {}),
        )

    def group(self) -> _group:
        """The group of one ``xstarmap`` per chunk."""
        task = maybe_signature(self.kwargs["task"], app=self._app)
        parts = _split(self.kwargs.get("it") or [], int(self.kwargs["n"]))
        return group(
            [xstarmap(task, part, app=self._app) for part in parts],
            app=self._app,
            **self.options,
        )

    def _build(
        self,
        app: Liteq,
        plan: Plan,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> ResultLike:
        return self.group()._build(app, plan, args, kwargs, options)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        route_name: str | None = None,
        **options: Any,
    ) -> ResultLike:
        """Apply the chunks as a group.

        Returns:
            The :class:`GroupResult`: one list of results per chunk.
        """
        return self.group().apply_async(args, kwargs, **options)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> ResultLike:
        """Run the chunks in this process."""
        return self.group().apply(args, kwargs, **options)

    def __call__(self, *args: Any, **options: Any) -> ResultLike:
        """Apply the chunks as a group."""
        return self.apply_async(**options)

    def __repr__(self) -> str:
        task = maybe_signature(self.kwargs["task"])
        return f"chunks({task!r}, n={self.kwargs['n']})"


__all__ = [
    "Plan",
    "ResultLike",
    "Signature",
    "chain",
    "chord",
    "chunks",
    "decode_body",
    "encode_body",
    "group",
    "leaf_results",
    "maybe_signature",
    "maybe_subtask",
    "publish",
    "signature",
    "subtask",
    "xmap",
    "xstarmap",
]
