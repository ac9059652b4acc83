"""Tasks: the ``@app.task`` decorator builds one :class:`Task` instance per function.

A Task is called like the function (runs locally), and has Celery's calling
API: ``delay``, ``apply_async``, ``apply`` (eager), ``retry``,
``update_state``, ``s``/``si``/``signature``, ``map``/``starmap``/``chunks``.
"""

from __future__ import annotations

import inspect
import operator
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from . import states
from .exceptions import MaxRetriesExceededError, Retry
from .timeutils import seconds, to_utc

if TYPE_CHECKING:
    from .app import Liteq
    from .canvas import Signature
    from .result import AsyncResult, EagerResult


class Context:
    """The request of the task being executed (``self.request``).

    Attributes follow Celery's ``Task.request``: ``id``, ``args``, ``kwargs``,
    ``retries``, ``eta``, ``expires``, ``hostname``, ``delivery_info``
    (``queue``, ``priority``, ``routing_key``, ``exchange``), ``is_eager``,
    ``parent_id``, ``root_id``, ``group``, ``group_index``, ``chord``,
    ``callbacks``, ``errbacks``, ``chain``, ``timelimit``, ``origin``,
    ``reply_to``, ``correlation_id``, ``headers``, ``called_directly``,
    ``ignore_result``, ``task`` (the name), ``delivery_count``.
    """

    id: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # noqa: RUF012 - overwritten per instance
    retries: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = {}  # noqa: RUF012
    is_eager: bool = False
    parent_id: str | None = None
    root_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    chord: dict[str, Any] | None = None
    chain: list[dict[str, Any]] | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    origin: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    headers: dict[str, Any] | None = None
    called_directly: bool = True
    ignore_result: bool = False
    task: str | None = None
    delivery_count: int = 0
    shadow: str | None = None
    stamps: dict[str, Any] | None = None
    #: Set by ``retry(throw=False)``: the retry to apply when the task returns.
    retry_requested: Retry | None = None
    #: Results of the tasks this one sent while running (``Task.trail``).
    children: list[Any] | None = None

    def __init__(self, **kwargs: Any) -> None:
        self.update(**kwargs)

    def update(self, **kwargs: Any) -> None:
        """Set attributes from keyword arguments."""
        self.__dict__.update(kwargs)

    def get(self, key: str, default: Any = None) -> Any:
        """Return attribute ``key`` or ``default``."""
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        """Return every request field as a dict."""
        fields = {
            k: getattr(self, k) for k in vars(type(self)) if not k.startswith("_")
        }
        fields = {k: v for k, v in fields.items() if not callable(v)}
        fields.update(self.__dict__)
        fields.pop("retry_requested", None)
        fields.pop("_store_first", None)  # the worker's, not a request field
        return fields

    def __repr__(self) -> str:
        return f"<Context: {self.as_dict()!r}>"


_local = threading.local()


def _stack() -> list[Task]:
    stack: list[Task] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


_request_locals_lock = threading.Lock()


def _request_local(task: Task) -> threading.local:
    """Return the per-thread request stacks of ``task``'s class (made once)."""
    cls = type(task)
    local: threading.local | None = cls.__dict__.get("_request_local")
    if local is None:
        with _request_locals_lock:
            local = cls.__dict__.get("_request_local")
            if local is None:
                local = threading.local()
                type.__setattr__(cls, "_request_local", local)
    return local


def current_task() -> Task | None:
    """Return the task executing in this thread, or None."""
    stack = _stack()
    return stack[-1] if stack else None


class Task:
    """A task type. ``@app.task`` makes a subclass with ``run`` set, and one instance.

    Class attributes are the task's options; ``None`` means "use the app's
    setting" (``task_acks_late``, ``task_serializer``, ...).
    """

    #: The task's registered name (``module.function`` by default).
    name: str = ""
    #: Bound by the decorator.
    _app: ClassVar[Liteq | None] = None
    #: Check call arguments against the signature in ``apply_async``.
    typing: bool = True
    max_retries: int | None = 3
    #: Seconds before a retry when ``retry()`` is given no countdown/eta.
    default_retry_delay: float = 180
    #: ``"10/s"``, ``"100/m"``, ``"1000/h"``: enforced across every worker on the file.
    rate_limit: str | None = None
    ignore_result: bool | None = None
    store_errors_even_if_ignored: bool | None = None
    serializer: str | None = None
    #: Hard time limit (seconds): the process running the task is killed.
    time_limit: float | None = None
    #: Soft time limit (seconds): ``SoftTimeLimitExceeded`` is raised in the task.
    soft_time_limit: float | None = None
    acks_late: bool | None = None
    reject_on_worker_lost: bool | None = None
    track_started: bool | None = None
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}  # noqa: RUF012
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    queue: str | None = None
    priority: int | None = None
    expires: float | datetime | None = None
    #: Expected exceptions: logged at INFO without a traceback.
    throws: tuple[type[BaseException], ...] = ()
    #: Record the tasks sent while this one runs as its result's ``children``.
    trail: bool = True
    #: The function, set by the decorator.
    _bound: bool = False
    __wrapped__: Callable[..., Any] | None = None

    # -- binding -----------------------------------------------------------------------
    @property
    def app(self) -> Liteq:
        """The app this task is registered with."""
        app = type(self)._app
        if app is None:
            from .registry import current_app

            app = current_app()
        return app

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task body; the decorator replaces it with the user's function."""
        raise NotImplementedError("Tasks must define the run method.")

    @property
    def request(self) -> Context:
        """The request being executed in this thread (a default one outside a worker)."""
        stack: list[Context] | None = getattr(_request_local(self), "stack", None)
        if stack:
            return stack[-1]
        return Context()

    def push_request(self, request: Context | None = None, **kwargs: Any) -> None:
        """Make ``request`` the current request for this thread."""
        local = _request_local(self)
        stack: list[Context] | None = getattr(local, "stack", None)
        if stack is None:
            stack = local.stack = []
        stack.append(request if request is not None else Context(**kwargs))
        _stack().append(self)

    def pop_request(self) -> None:
        """Undo :meth:`push_request`."""
        stack: list[Context] | None = getattr(_request_local(self), "stack", None)
        if stack:
            stack.pop()
        tasks = _stack()
        if tasks:
            tasks.pop()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task in this process, like calling the function."""
        if current_task() is self and not self.request.called_directly:
            # Already inside this task's own execution: just run the body.
            return self.run(*args, **kwargs)
        self.push_request(
            Context(args=args, kwargs=kwargs, called_directly=True, task=self.name)
        )
        try:
            return self.run(*args, **kwargs)
        finally:
            self.pop_request()

    # -- effective options ---------------------------------------------------------------
    def effective_options(self) -> tuple[bool, bool, bool, bool, bool]:
        """The task's delivery and result options, with the app's settings filled in.

        Returns:
            ``(acks_late, reject_on_worker_lost, ignore_result, track_started,
            store_errors_even_if_ignored)``: each the task's attribute, or the
            app's setting when the attribute is None. Remembered until a
            setting or one of these attributes changes (a worker reads them
            for every task).
        """
        conf = self.app.conf
        own = _OWN_OPTIONS(self)
        cached: tuple[Any, ...] | None = self.__dict__.get("_effective")
        if (
            cached is not None
            and cached[0] is conf
            and cached[1] == conf._revision
            and cached[2] == own
        ):
            return cached[3]  # type: ignore[no-any-return]
        revision = conf._revision
        values = tuple(
            bool(conf[setting] if value is None else value)
            for value, setting in zip(own, _OPTION_SETTINGS, strict=True)
        )
        self.__dict__["_effective"] = (conf, revision, own, values)
        return values  # type: ignore[return-value]

    @property
    def effective_acks_late(self) -> bool:
        """``acks_late``, or the app's ``task_acks_late``."""
        return self.effective_options()[0]

    @property
    def effective_reject_on_worker_lost(self) -> bool:
        """``reject_on_worker_lost``, or the app's setting."""
        return self.effective_options()[1]

    @property
    def effective_ignore_result(self) -> bool:
        """``ignore_result``, or the app's ``task_ignore_result``."""
        return self.effective_options()[2]

    @property
    def effective_track_started(self) -> bool:
        """``track_started``, or the app's ``task_track_started``."""
        return self.effective_options()[3]

    @property
    def effective_store_errors(self) -> bool:
        """``store_errors_even_if_ignored``, or the app's setting."""
        return self.effective_options()[4]

    # -- calling ------------------------------------------------------------------------
    def check_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise TypeError if the arguments do not fit the task's signature."""
        if not self.typing or self.__wrapped__ is None:
            return
        arity: tuple[int, float] | None = self.__dict__.get("_arity")
        if arity is None:
            arity = self._positional_arity()
        if not kwargs and arity[0] <= len(args) <= arity[1]:
            # Positional arguments only, and their number fits: binding
            # cannot fail, so skip the costly bind.
            return
        try:
            self._call_signature().bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.name}: {exc}") from None

    def _call_signature(self) -> inspect.Signature:
        """The signature calls are checked against (without ``self`` when bound)."""
        sig: inspect.Signature | None = self.__dict__.get("_signature")
        if sig is None:
            assert self.__wrapped__ is not None
            sig = inspect.signature(self.__wrapped__)
            if self._bound:
                params = list(sig.parameters.values())[1:]
                sig = sig.replace(parameters=params)
            self.__dict__["_signature"] = sig
        return sig

    def _positional_arity(self) -> tuple[int, float]:
        """``(fewest, most)`` positional arguments a call without keywords may pass.

        ``(1, 0)`` (nothing fits) when a keyword-only parameter is required.
        """
        low, high = 0, 0.0
        for param in self._call_signature().parameters.values():
            if param.kind is param.VAR_POSITIONAL:
                high = float("inf")
            elif param.kind is param.KEYWORD_ONLY:
                if param.default is param.empty:
                    low, high = 1, 0.0
                    break
            elif param.kind is not param.VAR_KEYWORD:
                high += 1
                if param.default is param.empty:
                    low += 1
        arity = (low, high)
        self.__dict__["_arity"] = arity
        return arity

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Enqueue the task with these arguments; shortcut for ``apply_async``.

        Returns:
            The :class:`AsyncResult` of the new task.
        """
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Enqueue the task.

        Options as Celery: ``countdown``, ``eta``, ``expires``, ``queue``,
        ``priority``, ``serializer``, ``headers``, ``ignore_result``,
        ``time_limit``, ``soft_time_limit``, ``link``, ``link_error``,
        ``retry``/``retry_policy`` (retry publishing when the database is
        locked), and liteq's ``unique_key`` (skip if a task with that key is
        still queued or running).

        Returns:
            The :class:`AsyncResult` of the task (an EagerResult when
            ``task_always_eager`` is on).

        Raises:
            TypeError: the arguments do not fit the task (with ``typing``).
            EncodeError: an argument cannot be serialized.
            StorageError: the database could not be written.
        """
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        if self.typing:
            self.check_arguments(args, kwargs)
        app = self.app
        # An item, not an attribute: Settings attributes are looked up only
        # after a failed normal lookup, which costs a microsecond.
        if app.conf["task_always_eager"]:
            return self.apply(
                args,
                kwargs,
                task_id=task_id,
                link=link,
                link_error=link_error,
                **options,
            )
        if not options:
            bare = task_id is None and link is None and link_error is None
            if bare and shadow is None:
                # Every .delay(): the fewer keywords, the cheaper the call.
                return app.send_task(self.name, args, kwargs, task_type=self)
            # Without ``**{}`` the call takes CPython's fast path.
            return app.send_task(
                self.name,
                args,
                kwargs,
                task_id=task_id,
                link=link,
                link_error=link_error,
                shadow=shadow,
                task_type=self,
            )
        return app.send_task(
            self.name,
            args,
            kwargs,
            task_id=task_id,
            link=link,
            link_error=link_error,
            shadow=shadow,
            task_type=self,
            **options,
        )

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        task_id: str | None = None,
        retries: int | None = None,
        throw: bool | None = None,
        **options: Any,
    ) -> EagerResult:
        """Run the task here and now, through the same code a worker runs.

        The arguments still round-trip through the task's serializer, so an
        argument that could not be sent to a worker fails here too.

        Returns:
            An :class:`EagerResult` holding the outcome.

        Raises:
            Exception: the task's exception, when ``throw`` (default: the
                app's ``task_eager_propagates``) is true.
        """
        from .execution import apply_eagerly

        return apply_eagerly(
            self,
            tuple(args or ()),
            dict(kwargs or {}),
            task_id=task_id,
            link=link,
            link_error=link_error,
            retries=retries or 0,
            throw=throw,
            options=options,
        )

    def replace(self, sig: Signature | dict[str, Any]) -> Any:
        """End this running task and put ``sig`` in its place, as Celery's ``replace``.

        ``sig`` takes over the task's id (its result, or a workflow's last
        one, is this task's), its callbacks and errbacks, the rest of its
        chain, and its place in a group or chord. A group becomes a chord
        whose body returns the list of the members' results. ``sig`` is
        queued when the worker acks this task, in the same transaction:
        nothing is queued if the task's lease was lost meanwhile.

        Returns:
            Under eager execution (``apply``, ``task_always_eager``), the
            value ``sig`` returns, to return from the task in turn.

        Raises:
            Replaced: always, in a worker (an :class:`~liteq.exceptions.Ignore`:
                no result is recorded for this task itself).
            ConfigurationError: ``sig`` is part of a chord already.
            RuntimeError: called outside a running task.
        """
        from .canvas import chord, group, maybe_signature
        from .exceptions import ConfigurationError, Replaced

        request = self.request
        if request.called_directly:
            raise RuntimeError("replace() only works inside a running task")
        new = maybe_signature(sig, app=self.app)
        if new.options.get("chord") is not None:
            raise ConfigurationError(
                "a signature that replaces a task must not be part of a chord"
            )
        if isinstance(new, group):
            new = chord(new, self.app.tasks["liteq.accumulate"].s(index=0))
        if request.is_eager:
            return new.apply().get()
        raise Replaced(new)

    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Ask for the task to be run again later (call from inside the task).

        The next attempt is a row in the database due at ``eta`` (or after
        ``countdown`` seconds, default ``default_retry_delay``), never held in a
        worker's memory.

        Returns:
            The :class:`Retry` exception (raised unless ``throw=False``).

        Raises:
            Retry: always, unless ``throw=False``.
            MaxRetriesExceededError: past ``max_retries`` and no ``exc`` given.
            Exception: ``exc`` itself, when past ``max_retries``.
        """
        request = self.request
        retries = request.retries + 1
        limit = self.max_retries if max_retries is None else max_retries
        if request.called_directly:
            if exc is not None:
                raise exc
            raise RuntimeError(
                f"{self.name}.retry() called outside a worker or apply()"
            )
        if limit is not None and retries > limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{request.id}] args:{request.args} "
                f"kwargs:{request.kwargs}",
                task_args=request.args,
                task_kwargs=request.kwargs,
            )
        when: float | datetime
        if eta is not None:
            when = to_utc(eta)
        else:
            when = float(
                countdown if countdown is not None else self.default_retry_delay
            )
        sig = {
            "args": tuple(request.args if args is None else args),
            "kwargs": dict(request.kwargs if kwargs is None else kwargs),
            "options": options,
            "max_retries": max_retries,
        }
        ret = Retry(exc=exc, when=when, is_eager=request.is_eager, sig=sig)
        if not throw:
            request.retry_requested = ret
            return ret
        raise ret

    def backoff_countdown(self, retries: int) -> float:
        """Seconds before retry number ``retries + 1`` under ``retry_backoff``.

        Exponential (``retry_backoff * 2**retries``) capped at
        ``retry_backoff_max``; with ``retry_jitter`` a random value in [0, that].
        """
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        countdown = min(self.retry_backoff_max, factor * (2**retries))
        if self.retry_jitter:
            countdown = (
                random.randrange(int(countdown) + 1) if countdown >= 1 else countdown
            )
        return float(countdown)

    def update_state(
        self,
        task_id: str | None = None,
        state: str | None = None,
        meta: Any = None,
        **kwargs: Any,
    ) -> None:
        """Store a state (e.g. ``"PROGRESS"`` with ``meta={"current": 3}``) for a task.

        Every call is delivered, in order, to ``AsyncResult.get(on_message=...)``.

        Raises:
            StorageError: the database could not be written.
        """
        task_id = task_id or self.request.id
        if task_id is None:
            return
        self.app.store_state(task_id, state or states.PENDING, meta, task=self)

    def send_event(self, type_: str, **fields: Any) -> None:
        """Accepted for Celery compatibility; liteq has no event stream (no-op)."""

    # -- hooks (override in a base class) ---------------------------------------------------
    def before_start(
        self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Called in the worker before the task runs."""

    def on_success(
        self, retval: Any, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        """Called in the worker when the task returned ``retval``."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Called in the worker when the task failed with ``exc``."""

    def on_retry(
        self,
        exc: BaseException,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Called in the worker when the task is to be retried."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        """Called in the worker after the task returned, whatever the outcome."""

    # -- results and canvas ------------------------------------------------------------------
    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:  # noqa: N802 - Celery's name
        """Return the result of ``task_id`` for this task."""
        return self.app.AsyncResult(task_id, task_name=self.name, **kwargs)

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """Return a signature of this task (``add.signature((2, 2), countdown=10)``)."""
        from .canvas import Signature

        return Signature(
            self.name,
            args,
            kwargs,
            options,
            app=self.app,
            immutable=options.pop("immutable", False),
        )

    subtask = signature

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """Return a partial signature: ``add.s(2)``."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """Return an immutable signature: it ignores its parent's result."""
        return self.signature(args, kwargs, immutable=True)

    def map(self, it: Iterable[Any]) -> Signature:
        """Return a ``xmap`` signature: one task calling this task for each item."""
        from .canvas import xmap

        return xmap(self.s(), it, app=self.app)

    def starmap(self, it: Iterable[Sequence[Any]]) -> Signature:
        """Return a ``xstarmap`` signature: one task calling ``task(*args)`` per item."""
        from .canvas import xstarmap

        return xstarmap(self.s(), it, app=self.app)

    def chunks(self, it: Iterable[Sequence[Any]], n: int) -> Signature:
        """Split ``it`` into chunks of ``n`` argument tuples, each one task."""
        from .canvas import chunks

        return chunks(self.s(), it, n, app=self.app)

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # Tasks travel (e.g. inside signatures) by name.
        return (_resolve_task, (self.app.main, self.name))


#: The task attributes behind :meth:`Task.effective_options`, and their settings.
_OWN_OPTIONS = operator.attrgetter(
    "acks_late",
    "reject_on_worker_lost",
    "ignore_result",
    "track_started",
    "store_errors_even_if_ignored",
)
_OPTION_SETTINGS = (
    "task_acks_late",
    "task_reject_on_worker_lost",
    "task_ignore_result",
    "task_track_started",
    "task_store_errors_even_if_ignored",
)


def _resolve_task(app_main: str | None, name: str) -> Task:
    from .registry import current_app

    return current_app().tasks[name]


def retry_eta(task: Task, retry: Retry, now: float) -> float:
    """Return the epoch time of the attempt ``retry`` asks for."""
    when = retry.when
    if isinstance(when, datetime):
        return to_utc(when).timestamp()
    delay = seconds(when)
    return now + (delay if delay is not None else float(task.default_retry_delay))
