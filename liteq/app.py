"""The application: configuration, the task registry, publishing, results.

``Liteq`` (alias ``Celery``) never imports the worker, beat or the CLI at
module level, so a web process that only calls ``.delay()`` stays light.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

import peewee

from . import serialization, signals, states
from .clock import SYSTEM_CLOCK, Clock
from .config import Settings, import_object, resolve_database
from .exceptions import ConfigurationError, NotRegistered
from .messages import Message, new_id
from .result import AsyncResult, GroupResult, ResultWatcher
from .serialization import (
    accepted_content_types,
    dict_to_exception,
    exception_to_dict,
    is_exception_dict,
)
from .storage import NewTask, ResultRow, Storage
from .storage.results import EventRow
from .task import Task, current_task
from .timeutils import get_timezone, seconds, to_utc
from .wakeup import Waker, get_waker

if TYPE_CHECKING:
    from .canvas import Signature

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_state = threading.local()
_apps: list[Liteq] = []
_current: list[Liteq] = []
_shared_tasks: list[Callable[[Liteq], Task]] = []


def current_app() -> Liteq:
    """Return the current app (the last one created, unless another was set).

    Raises:
        ConfigurationError: no app exists yet.
    """
    if _current:
        return _current[-1]
    raise ConfigurationError(
        "no liteq app exists yet: create one with Liteq('name', broker=...)"
    )


def gen_task_name(app: Liteq, name: str, module: str) -> str:
    """Return Celery's default task name: ``module.name`` (``app.main`` for ``__main__``)."""
    if module == "__main__" and app.main:
        module = app.main
    return f"{module}.{name}"


class TaskRegistry(dict[str, Task]):
    """``name -> Task``; a missing name raises :class:`NotRegistered`."""

    def __missing__(self, key: str) -> Task:
        raise NotRegistered(key)

    def register(self, task: Task) -> Task:
        """Add ``task`` under its name and return it."""
        self[task.name] = task
        return task

    def unregister(self, name: str) -> None:
        """Remove a task.

        Raises:
            NotRegistered: no task has that name.
        """
        try:
            del self[name]
        except KeyError:
            raise NotRegistered(name) from None


class Control:
    """Celery's ``app.control``, over the database (no broadcast needed)."""

    def __init__(self, app: Liteq) -> None:
        self.app = app

    def revoke(
        self,
        task_id: str | Sequence[str],
        destination: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> dict[str, str]:
        """Revoke one or many tasks (see :meth:`AsyncResult.revoke`).

        Returns:
            ``{task_id: "revoked" | "terminating" | "running" | "remembered"}``.
        """
        ids = [task_id] if isinstance(task_id, str) else [str(t) for t in task_id]
        app = self.app
        now = app.clock.time()

        def revoked_row(tid: str, name: str | None) -> ResultRow:
            return app.make_result_row(
                tid, states.REVOKED, exception_to_dict(_revoked_error(tid)), name=name
            )

        outcome = app.storage.revoke(
            ids,
            now,
            terminate=terminate,
            signal=signal or ("SIGTERM" if terminate else None),
            keep_for=max(app.result_expires_seconds() or 0.0, 86400.0),
            revoked_result=revoked_row,
        )
        for tid, what in outcome.items():
            if what == "revoked":
                signals.task_revoked.send(
                    sender=None,
                    request=None,
                    terminated=False,
                    signum=None,
                    expired=False,
                    task_id=tid,
                )
        return outcome

    def terminate(self, task_id: str, signal: str = "SIGTERM") -> dict[str, str]:
        """Revoke and kill a running task."""
        return self.revoke(task_id, terminate=True, signal=signal)

    def purge(self) -> int:
        """Delete every waiting task; return how many were deleted."""
        return self.app.storage.broker.purge()

    discard_all = purge


def _revoked_error(task_id: str) -> BaseException:
    from .exceptions import TaskRevokedError

    return TaskRevokedError(f"task {task_id} was revoked")


class Liteq:
    """A liteq application: one SQLite file as broker, result backend and schedule store.

    Args:
        main: Name of the main module (used to name tasks defined in ``__main__``).
        broker: ``sqlite:///tasks.db``, ``sqlite:////abs/path.db`` or a path.
        backend: Defaults to the broker's file; another file is an error.
        include: Modules the worker imports at start.
        clock: The time source (inject a FakeClock in tests).
        durable: ``synchronous=FULL``: survive power loss at some speed cost.
        set_as_current: Make this the app ``shared_task`` and ``current_app`` use.
        **settings: Any setting, new or old name (``task_serializer="pickle"``).

    Raises:
        ConfigurationError: a network broker URL, or two different files.
    """

    def __init__(
        self,
        main: str | None = None,
        broker: Any = None,
        backend: Any = None,
        include: Sequence[str] | None = None,
        clock: Clock | None = None,
        durable: bool | None = None,
        set_as_current: bool = True,
        config_source: Any = None,
        task_cls: type[Task] | str | None = None,
        **settings: Any,
    ) -> None:
        self.main = main
        self.conf = Settings()
        self.clock: Clock = clock or SYSTEM_CLOCK
        if config_source is not None:
            self.config_from_object(config_source)
        if broker is not None:
            self.conf.broker_url = broker
        if backend is not None:
            self.conf.result_backend = backend
        if include:
            self.conf.include = list(include)
        if durable is not None:
            self.conf.database_durable = durable
        for key in (
            "loader",
            "log",
            "events",
            "amqp",
            "fixups",
            "autofinalize",
            "namespace",
            "strict_typing",
        ):
            settings.pop(key, None)
        self.conf.update(settings)
        if isinstance(task_cls, str):
            task_cls = import_object(task_cls)
        self.task_cls: type[Task] = task_cls or Task  # type: ignore[assignment]
        self.tasks = TaskRegistry()
        self.control = Control(self)
        self._storage: Storage | None = None
        self._storage_lock = threading.Lock()
        self._result_watcher: ResultWatcher | None = None
        self._autodiscover: list[tuple[Sequence[str], str]] = []
        self._imported = False
        _apps.append(self)
        if set_as_current:
            _current.append(self)
        for make in _shared_tasks:
            make(self)
        if broker is not None or backend is not None:
            # Fail early on a redis:// URL or two files.
            resolve_database(self.conf.broker_url, self.conf.result_backend)

    # -- configuration ---------------------------------------------------------------
    def config_from_object(
        self,
        obj: Any,
        silent: bool = False,
        force: bool = False,
        namespace: str | None = None,
    ) -> None:
        """Load settings from a module path (``"proj.config"``), module, class or dict.

        Old upper-case names (``BROKER_URL``, ``CELERYBEAT_SCHEDULE``) and new
        lower-case ones both work; ``namespace="CELERY"`` reads only
        ``CELERY_``-prefixed keys (Django style).

        Raises:
            ImportError: the module cannot be imported (unless ``silent``).
        """
        if isinstance(obj, str):
            try:
                obj = import_object(obj)
            except (ImportError, AttributeError):
                if silent:
                    return
                raise
        self.conf.load(obj, namespace=namespace)
        self._reset_storage_if_moved()

    def config_from_envvar(
        self, variable_name: str, silent: bool = False, force: bool = False
    ) -> None:
        """Load settings from the module named by an environment variable."""
        module = os.environ.get(variable_name)
        if not module:
            if silent:
                return
            raise ConfigurationError(
                f"environment variable {variable_name!r} is not set"
            )
        self.config_from_object(module, silent=silent)

    def _reset_storage_if_moved(self) -> None:
        if self._storage is None:
            return
        try:
            url = resolve_database(self.conf.broker_url, self.conf.result_backend)
        except ConfigurationError:
            return
        if os.path.abspath(url.path) != self._storage.path:
            self._storage = None

    @property
    def timezone(self) -> Any:
        """The app's time zone (``timezone`` setting; UTC when unset)."""
        return get_timezone(self.conf.timezone)

    def now(self) -> datetime:
        """Return the current time (aware UTC) from the app's clock."""
        return self.clock.now()

    def result_expires_seconds(self) -> float | None:
        """``result_expires`` in seconds (None: results never expire)."""
        value = self.conf.result_expires
        if value is None:
            return None
        secs = seconds(value)
        return secs if secs else None

    # -- storage ------------------------------------------------------------------------
    @property
    def storage(self) -> Storage:
        """The database of this app, opened on first use.

        Raises:
            ConfigurationError: no database is configured, or it is not a SQLite file.
        """
        storage = self._storage
        if storage is not None:
            return storage
        with self._storage_lock:
            if self._storage is None:
                url = resolve_database(self.conf.broker_url, self.conf.result_backend)
                storage = Storage(
                    url.path,
                    durable=bool(self.conf.database_durable),
                    busy_timeout=float(self.conf.database_busy_timeout),
                )
                self._install_hooks(storage)
                self._storage = storage
            return self._storage

    def _install_hooks(self, storage: Storage) -> None:
        waker = get_waker(storage.path)
        storage.db.add_commit_hook(waker.notify)
        from .canvas import chord_hook

        storage.chord_hook = lambda conn, gid, failed, now: chord_hook(
            self, conn, gid, failed, now
        )

    @property
    def waker(self) -> Waker:
        """Wakes waiters when the database changes."""
        return get_waker(self.storage.path)

    @property
    def database(self) -> peewee.SqliteDatabase:
        """The peewee database of the file: bind your models to it."""
        return self.storage.db.pw

    def transaction(self) -> contextlib.AbstractContextManager[peewee.SqliteDatabase]:
        """A transaction on the database (``BEGIN IMMEDIATE``; nests as savepoints).

        Your own writes (models bound to ``app.database``, or SQL) and every
        ``.delay()`` inside commit or roll back together.
        """
        return self.storage.db.transaction()

    @property
    def result_watcher(self) -> ResultWatcher:
        """Runs ``AsyncResult.then`` callbacks."""
        if self._result_watcher is None:
            self._result_watcher = ResultWatcher(self)
        return self._result_watcher

    def close(self) -> None:
        """Close this thread's database connection."""
        if self._storage is not None:
            self._storage.close()

    # -- tasks ----------------------------------------------------------------------------
    @overload
    def task(self, fun: F) -> Task: ...

    @overload
    def task(
        self,
        *,
        name: str | None = ...,
        bind: bool = ...,
        base: type[Task] | None = ...,
        **options: Any,
    ) -> Callable[[F], Task]: ...

    def task(self, *args: Any, **options: Any) -> Any:
        """Decorate a function as a task: ``@app.task`` or ``@app.task(bind=True, ...)``.

        Options: ``name``, ``bind``, ``base`` (a Task subclass), and any Task
        attribute (``max_retries``, ``acks_late``, ``queue``, ``rate_limit``, ...).

        Returns:
            The Task instance (or a decorator making one).
        """
        if len(args) == 1 and callable(args[0]) and not options:
            return self._create_task(args[0])
        if args:
            raise TypeError("@app.task takes keyword arguments only")

        def decorator(fun: F) -> Task:
            return self._create_task(fun, **options)

        return decorator

    def _create_task(
        self,
        fun: Callable[..., Any],
        name: str | None = None,
        bind: bool = False,
        base: type[Task] | None = None,
        **options: Any,
    ) -> Task:
        task_name = name or gen_task_name(self, fun.__name__, fun.__module__)
        existing = self.tasks.get(task_name)
        if existing is not None and existing.__wrapped__ is fun:
            return existing
        base = base or self.task_cls
        attrs: dict[str, Any] = {
            "name": task_name,
            "_app": self,
            "run": fun if bind else staticmethod(fun),
            "_bound": bind,
            "__wrapped__": staticmethod(fun),
            "__doc__": fun.__doc__,
            "__module__": fun.__module__,
            "__qualname__": getattr(fun, "__qualname__", fun.__name__),
        }
        for key, value in options.items():
            if (
                key in ("autoretry_for", "dont_autoretry_for", "throws")
                and value is not None
            ):
                value = tuple(value)
            attrs[key] = value
        annotations = self._annotations_for(task_name)
        attrs.update(annotations)
        cls = type(fun.__name__, (base,), attrs)
        task: Task = cls()
        # Keep the plain function reachable for signature checks.
        task.__dict__["__wrapped__"] = fun
        self.tasks.register(task)
        return task

    def _annotations_for(self, name: str) -> dict[str, Any]:
        annotations = self.conf.task_annotations
        if not annotations:
            return {}
        found: dict[str, Any] = {}
        for entry in (
            annotations if isinstance(annotations, (list, tuple)) else [annotations]
        ):
            if isinstance(entry, Mapping):
                found.update(entry.get("*", {}))
                found.update(entry.get(name, {}))
        return found

    def register_task(self, task: Task | type[Task]) -> Task:
        """Register a class-based task (a Task subclass or instance)."""
        instance = task() if isinstance(task, type) else task
        if not instance.name:
            cls = type(instance)
            type.__setattr__(
                cls, "name", gen_task_name(self, cls.__name__, cls.__module__)
            )
        type.__setattr__(type(instance), "_app", self)
        return self.tasks.register(instance)

    def autodiscover_tasks(
        self,
        packages: Sequence[str] | Callable[[], Sequence[str]] = (),
        related_name: str = "tasks",
        force: bool = False,
    ) -> None:
        """Import ``<package>.<related_name>`` for each package when the worker starts."""
        pkgs = packages() if callable(packages) else packages
        self._autodiscover.append((list(pkgs), related_name))
        if force:
            self.import_modules()

    def import_modules(self) -> list[str]:
        """Import ``include``, ``imports`` and autodiscovered modules (what a worker does at start).

        Returns:
            The module names imported.

        Raises:
            ImportError: a listed module cannot be imported.
        """
        names = [*(self.conf.imports or ()), *(self.conf.include or ())]
        if isinstance(self.conf.imports, str):
            names = [self.conf.imports, *(self.conf.include or ())]
        for packages, related in self._autodiscover:
            for pkg in packages:
                candidate = f"{pkg}.{related}"
                try:
                    importlib.import_module(candidate)
                    names.append(candidate)
                except ModuleNotFoundError as exc:
                    if exc.name != candidate:
                        raise
        for name in names:
            importlib.import_module(name)
        self._imported = True
        return names

    def resolve_task(self, name: str, autoimport: bool = False) -> Task:
        """Return the task registered as ``name``.

        With ``autoimport``, a task named ``module.function`` that is not
        registered yet makes the module ``module`` be imported first (only a
        *registered* task is ever run: importing never calls arbitrary code
        by name).

        Raises:
            NotRegistered: no such task (after the import, if allowed).
        """
        task = self.tasks.get(name)
        if task is not None:
            return task
        if autoimport and "." in name:
            module = name.rsplit(".", 1)[0]
            try:
                importlib.import_module(module)
            except Exception as exc:
                raise NotRegistered(
                    f"{name} (importing module {module!r} failed: {exc!r})"
                ) from exc
            task = self.tasks.get(name)
            if task is None:
                for other in _apps:
                    if other is not self and name in other.tasks:
                        # The module made its own app; adopt the task.
                        task = other.tasks[name]
                        self.tasks[name] = task
                        break
            if task is not None:
                return task
        raise NotRegistered(name)

    # -- publishing --------------------------------------------------------------------
    def _route(
        self,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: dict[str, Any],
        task: Task | None,
    ) -> dict[str, Any]:
        routes = self.conf.task_routes
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
        self,
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
        for ignored in (
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
        ):
            extra.pop(ignored, None)
        if extra.get("group") and group_id is None:
            group_id = extra.pop("group")
        extra.pop("group", None)
        if extra:
            raise TypeError(f"unexpected options for {name}: {sorted(extra)}")
        conf = self.conf
        task = task_type if task_type is not None else self.tasks.get(name)
        if task is not None:
            routed = self._route(name, args or (), kwargs or {}, {}, task)
            queue = queue or routed.get("queue") or task.queue
            priority = (
                priority
                if priority is not None
                else routed.get("priority", task.priority)
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
            routed = self._route(name, args or (), kwargs or {}, {}, None)
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
        now_ts = self.clock.time() if now is None else now
        eta_ts: float | None = None
        if countdown is not None:
            eta_ts = now_ts + float(countdown)
        elif eta is not None:
            eta_ts = to_utc(
                eta, self.timezone if not conf.enable_utc else None
            ).timestamp()
        expires_ts: float | None = None
        if isinstance(expires, datetime):
            expires_ts = to_utc(expires).timestamp()
        elif isinstance(expires, timedelta):
            expires_ts = now_ts + expires.total_seconds()
        elif expires is not None:
            expires_ts = now_ts + float(expires)
        parent = current_task()
        if parent is not None and not parent.request.called_directly:
            request = parent.request
            parent_id = parent_id or request.id
            root_id = root_id or request.root_id or request.id
        from .timeutils import from_ts

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
            callbacks=_signatures(self, link),
            errbacks=_signatures(self, link_error),
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

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        task_id: str | None = None,
        producer: Any = None,
        connection: Any = None,
        router: Any = None,
        result_cls: Any = None,
        expires: float | datetime | None = None,
        link: Any = None,
        link_error: Any = None,
        add_to_parent: bool = True,
        group_id: str | None = None,
        group_index: int | None = None,
        retries: int = 0,
        chord: Any = None,
        reply_to: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        route_name: str | None = None,
        shadow: str | None = None,
        chain: Any = None,
        task_type: Task | None = None,
        retry: bool | None = None,
        retry_policy: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Enqueue a task by name; the task's code need not be importable here.

        Options as :meth:`Task.apply_async`. With ``retry`` (default
        ``task_publish_retry``) a locked database is retried following
        ``retry_policy`` (``max_retries``, ``interval_start``,
        ``interval_step``, ``interval_max``) on top of busy_timeout.

        Returns:
            The task's :class:`AsyncResult`.

        Raises:
            EncodeError: an argument cannot be serialized.
            StorageError: the database could not be written.
        """
        message, row = self.build_message(
            name,
            args,
            kwargs,
            task_id=task_id,
            countdown=countdown,
            eta=eta,
            expires=expires,
            link=link,
            link_error=link_error,
            group_id=group_id,
            group_index=group_index,
            retries=retries,
            chord=chord,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
            root_id=root_id,
            parent_id=parent_id,
            shadow=shadow,
            chain=chain,
            task_type=task_type,
            **options,
        )
        self.publish(message, row, retry=retry, retry_policy=retry_policy)
        return AsyncResult(row.task_id, task_name=name, app=self)

    def publish(
        self,
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
        do_retry = self.conf.task_publish_retry if retry is None else retry
        inserted = self._with_publish_retry(
            lambda: self.storage.broker.enqueue(row, self.clock.time()),
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
        self, fn: Callable[[], bool], retry: bool, policy: Mapping[str, Any] | None
    ) -> bool:
        from .exceptions import DatabaseLocked

        policy = dict(self.conf.task_publish_retry_policy or {}, **(policy or {}))
        max_retries = int(policy.get("max_retries", 3)) if retry else 0
        interval = float(policy.get("interval_start", 0.0))
        step = float(policy.get("interval_step", 0.2))
        interval_max = float(policy.get("interval_max", 0.2))
        attempt = 0
        while True:
            try:
                return fn()
            except DatabaseLocked:
                if attempt >= max_retries or self.storage.db.in_transaction():
                    raise
                attempt += 1
                logger.warning(
                    "database locked while publishing; retry %d/%d",
                    attempt,
                    max_retries,
                )
                self.clock.wait(threading.Event(), interval)
                interval = min(interval + step, interval_max)

    def enqueue_many(
        self,
        task: Task | str,
        arguments: Iterable[Sequence[Any] | tuple[Sequence[Any], Mapping[str, Any]]],
        **options: Any,
    ) -> list[AsyncResult]:
        """Enqueue many calls of one task in a single transaction (the fast bulk path).

        Args:
            task: The task or its name.
            arguments: An iterable of argument tuples, or ``(args, kwargs)`` pairs
                when ``kwargs=True`` is passed.
            **options: Calling options applied to every task (``queue``, ``countdown``...).

        Returns:
            The results, in the order of ``arguments``.
        """
        name = task if isinstance(task, str) else task.name
        task_type = None if isinstance(task, str) else task
        with_kwargs = options.pop("kwargs", False)
        now = self.clock.time()
        rows: list[NewTask] = []
        for item in arguments:
            if with_kwargs:
                args, kwargs = item  # type: ignore[misc]
            else:
                args, kwargs = item, {}
            if task_type is not None and task_type.typing:
                task_type.check_arguments(tuple(args), dict(kwargs))
            _, row = self.build_message(
                name, args, kwargs, task_type=task_type, now=now, **options
            )
            rows.append(row)
        self.storage.broker.enqueue_many(rows, now)
        return [AsyncResult(r.task_id, task_name=name, app=self) for r in rows]

    # -- results -------------------------------------------------------------------------
    def AsyncResult(self, id: str, **kwargs: Any) -> AsyncResult:  # noqa: N802,A002 - Celery's names
        """Return the result of task ``id`` on this app."""
        return AsyncResult(id, app=self, **kwargs)

    def GroupResult(
        self,
        id: str | None = None,
        results: Sequence[AsyncResult] | None = None,
        **kwargs: Any,
    ) -> GroupResult:  # noqa: N802,A002
        """Return a group result on this app."""
        return GroupResult(id, results, app=self, **kwargs)

    def signature(self, varies: Any, *args: Any, **kwargs: Any) -> Signature:
        """Return a signature by task name or from a dict (``app.signature("tasks.add", (2, 2))``)."""
        from .canvas import signature

        return signature(varies, *args, app=self, **kwargs)

    @property
    def accept(self) -> frozenset[str]:
        """Content types accepted for task messages (``accept_content``)."""
        return accepted_content_types(self.conf.accept_content or ["json"])

    @property
    def result_accept(self) -> frozenset[str]:
        """Content types accepted for results (``result_accept_content`` or ``accept_content``)."""
        return accepted_content_types(
            self.conf.result_accept_content or self.conf.accept_content or ["json"]
        )

    def encode_result(
        self, value: Any, serializer: str | None = None
    ) -> tuple[bytes, str]:
        """Serialize a result value (exceptions in Celery's dict form).

        Raises:
            EncodeError: the value cannot be serialized.
        """
        if isinstance(value, BaseException):
            value = exception_to_dict(value)
        return serialization.dumps(value, serializer or self.conf.result_serializer)

    def make_result_row(
        self,
        task_id: str,
        status: str,
        value: Any,
        *,
        traceback: str | None = None,
        name: str | None = None,
        args: Any = None,
        kwargs: Any = None,
        queue: str | None = None,
        worker: str | None = None,
        retries: int | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
        group_id: str | None = None,
        children: list[Any] | None = None,
        raw_message: bytes | None = None,
        serializer: str | None = None,
        now: float | None = None,
    ) -> ResultRow:
        """Build a result row: the value is serialized, times come from the clock."""
        try:
            data, content_type = self.encode_result(value, serializer)
        except Exception as exc:
            # The return value cannot be stored: record that, visibly.
            status = states.FAILURE
            data, content_type = self.encode_result(exc, serializer)
        now = self.clock.time() if now is None else now
        expires = self.result_expires_seconds()
        extended = bool(self.conf.result_extended)
        enc_args = enc_kwargs = None
        if extended and args is not None:
            with contextlib.suppress(Exception):
                enc_args = serialization.dumps(list(args), "json")[0]
                enc_kwargs = serialization.dumps(dict(kwargs or {}), "json")[0]
        return ResultRow(
            task_id=task_id,
            status=status,
            result=data,
            content_type=content_type,
            traceback=traceback,
            name=name,
            args=enc_args,
            kwargs=enc_kwargs,
            queue=queue if extended else None,
            worker=worker,
            retries=retries,
            parent_id=parent_id,
            root_id=root_id,
            group_id=group_id,
            children=children,
            raw_message=raw_message,
            date_done=now,
            expires_at=now + expires
            if expires and status in states.READY_STATES
            else None,
        )

    def decode_result_row(self, row: ResultRow) -> dict[str, Any]:
        """Turn a stored row into Celery's meta dict (exceptions rebuilt)."""
        value: Any = None
        if row.result is not None and row.content_type:
            try:
                value = serialization.loads(
                    row.result, row.content_type, self.result_accept
                )
            except Exception as exc:
                value = exc
        if row.status in states.EXCEPTION_STATES and is_exception_dict(value):
            value = dict_to_exception(value)
        meta: dict[str, Any] = {
            "task_id": row.task_id,
            "status": row.status,
            "result": value,
            "traceback": row.traceback,
            "children": row.children or [],
            "date_done": row.date_done,
            "name": row.name,
            "worker": row.worker,
            "retries": row.retries,
            "queue": row.queue,
            "parent_id": row.parent_id,
            "root_id": row.root_id,
            "group_id": row.group_id,
        }
        if row.args is not None:
            meta["args"] = serialization.json_loads(row.args)
            meta["kwargs"] = serialization.json_loads(row.kwargs or b"{}")
        return meta

    def decode_event(self, event: EventRow) -> dict[str, Any]:
        """Turn a stored state change into Celery's meta dict."""
        value: Any = None
        if event.result is not None and event.content_type:
            try:
                value = serialization.loads(
                    event.result, event.content_type, self.result_accept
                )
            except Exception as exc:
                value = exc
        if event.status in states.EXCEPTION_STATES and is_exception_dict(value):
            value = dict_to_exception(value)
        return {
            "task_id": event.task_id,
            "status": event.status,
            "result": value,
            "traceback": None,
            "children": [],
            "date_done": event.created_at,
        }

    def store_state(
        self,
        task_id: str,
        state: str,
        meta: Any,
        task: Task | None = None,
        traceback: str | None = None,
    ) -> None:
        """Store a (usually custom) state for ``task_id``; it reaches ``get(on_message=...)``."""
        request = task.request if task is not None else None
        row = self.make_result_row(
            task_id,
            state,
            meta,
            traceback=traceback,
            name=task.name if task is not None else None,
            worker=request.hostname if request is not None else None,
            retries=request.retries if request is not None else None,
            parent_id=request.parent_id if request is not None else None,
            root_id=request.root_id if request is not None else None,
        )
        self.storage.store_state(row, event=state not in states.READY_STATES)

    # -- running ----------------------------------------------------------------------------
    def start(self, argv: Sequence[str] | None = None) -> None:
        """Run the liteq command line for this app (``if __name__ == "__main__": app.start()``)."""
        from .cli import main as cli_main

        cli_main(argv, app=self)

    def worker_main(self, argv: Sequence[str] | None = None) -> None:
        """Run ``liteq worker`` for this app with ``argv``."""
        argv = list(argv or [])
        if not argv or argv[0] != "worker":
            argv = ["worker", *argv]
        self.start(argv)

    def set_current(self) -> None:
        """Make this the app ``current_app()`` and ``shared_task`` use."""
        _current.append(self)

    def set_default(self) -> None:
        """Alias of :meth:`set_current`."""
        self.set_current()

    def __repr__(self) -> str:
        return f"<Liteq {self.main or '__main__'}>"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            "a Liteq app cannot be pickled; children re-import it by its module path"
        )


def _origin() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _signatures(app: Liteq, value: Any) -> list[dict[str, Any]] | None:
    if not value:
        return None
    from .canvas import maybe_signature

    items = value if isinstance(value, (list, tuple)) else [value]
    return [dict(maybe_signature(s, app=app)) for s in items]


def shared_task(*args: Any, **options: Any) -> Any:
    """Define a task for every app (the current one and any created later).

    Returns:
        A proxy that resolves to the task on the current app.
    """

    def create(fun: Callable[..., Any]) -> _SharedTaskProxy:
        name = options.get("name")

        def make(app: Liteq) -> Task:
            return app._create_task(fun, **options)

        _shared_tasks.append(make)
        for app in _apps:
            make(app)
        return _SharedTaskProxy(fun, name)

    if len(args) == 1 and callable(args[0]) and not options:
        return create(args[0])
    return create


class _SharedTaskProxy:
    """Looks like the task of the current app with this function."""

    def __init__(self, fun: Callable[..., Any], name: str | None) -> None:
        self._fun = fun
        self._name = name

    def _task(self) -> Task:
        app = current_app()
        name = self._name or gen_task_name(
            app, self._fun.__name__, self._fun.__module__
        )
        task = app.tasks.get(name)
        if task is None:
            task = app._create_task(self._fun, name=self._name)
        return task

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._task(), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<shared task proxy: {self._fun.__module__}.{self._fun.__name__}>"


@contextlib.contextmanager
def using_app(app: Liteq) -> Iterator[Liteq]:
    """Make ``app`` current inside the ``with`` block."""
    _current.append(app)
    try:
        yield app
    finally:
        with contextlib.suppress(ValueError):
            _current.remove(app)


#: Celery's name for the app class.
Celery = Liteq
