"""The application: configuration, the task registry, publishing, results.

``Liteq`` (alias ``Celery``) never imports the worker, beat or the CLI at
module level, so a web process that only calls ``.delay()`` stays light.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar, overload

import peewee

from . import publishing, resultrows, states
from .clock import SYSTEM_CLOCK, Clock
from .config import Settings, import_object, resolve_database
from .control import Control
from .exceptions import ConfigurationError, NotRegistered
from .messages import new_id
from .registry import (
    TaskRegistry,
    _apps,
    _current,
    _shared_tasks,
    current_app,
    gen_task_name,
    shared_task,
    using_app,
)
from .result import AsyncResult, GroupResult, ResultWatcher
from .serialization import accepted_content_types
from .signals import Signal
from .storage import FollowupRow, ResultRow, Storage
from .task import Task, current_task
from .timeutils import get_timezone, local_timezone
from .wakeup import Waker, get_waker

if TYPE_CHECKING:
    from .beat import Schedules
    from .canvas import Signature

logger = logging.getLogger(__name__)

#: Forks this process has been through (as a child).
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_count_fork)

F = TypeVar("F", bound=Callable[..., Any])
_T = TypeVar("_T")


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
        #: Per task name: calling defaults resolved for publishing.
        self._publish_defaults: dict[str, Any] = {}
        #: Values derived from settings: key -> (conf, conf._revision, value).
        self._derived: dict[str, tuple[Settings, int, Any]] = {}
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
        self._autodiscover: list[
            tuple[Sequence[str] | Callable[[], Sequence[str]], str]
        ] = []
        self._imported = False
        #: Set by the command line for an app built from a database file
        #: alone (no ``-A``, no ``--config``): beat then leaves stored
        #: configuration entries alone.
        self._without_configuration = False
        #: Celery's app signals, sent with ``sender=app`` by :meth:`finalize`.
        self.on_configure = Signal("on_configure")
        self.on_after_configure = Signal("on_after_configure", ("source",))
        self.on_after_finalize = Signal("on_after_finalize")
        self._finalized = False
        _apps.append(self)
        if set_as_current:
            _current.append(self)
        from .followups import register_builtin_tasks

        register_builtin_tasks(self)
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
            ConfigurationError: the broker or backend is not a SQLite file, or
                they name two different files.
        """
        if isinstance(obj, str):
            try:
                obj = import_object(obj)
            except (ImportError, AttributeError):
                if silent:
                    return
                raise
        self.conf.load(obj, namespace=namespace)
        if self.conf.broker_url is not None or self.conf.result_backend is not None:
            # Two different files fail here rather than at the first .delay().
            resolve_database(self.conf.broker_url, self.conf.result_backend)
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
        """The app's time zone: the ``timezone`` setting, else UTC.

        With ``enable_utc = False`` and no ``timezone``, this machine's zone,
        as in Celery (see :func:`liteq.timeutils.local_timezone`).
        """
        conf = self.conf
        if not conf.timezone and not conf.enable_utc:
            return local_timezone()
        return get_timezone(conf.timezone)

    def now(self) -> datetime:
        """Return the current time (aware UTC) from the app's clock."""
        return self.clock.now()

    def derived(self, key: str, compute: Callable[[Settings], _T]) -> _T:
        """Return ``compute(self.conf)``, computed again only after a setting changes.

        For values the worker needs per task (accepted content types, result
        expiry...): the cache is keyed on ``conf._revision``, which every
        set or delete of a setting bumps.
        """
        conf = self.conf
        found = self._derived.get(key)
        if found is not None and found[0] is conf and found[1] == conf._revision:
            return found[2]  # type: ignore[no-any-return]
        revision = conf._revision
        value = compute(conf)
        self._derived[key] = (conf, revision, value)
        return value

    def result_expires_seconds(self) -> float | None:
        """``result_expires`` in seconds (None: results never expire)."""
        return self.derived("result_expires", resultrows.expires_seconds)

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
        path = storage.path
        found: list[Waker] = []
        forks_seen = [_forks]

        def notify() -> None:
            # Cached per process: a forked child gets its own Waker. (Counting
            # forks spares every commit a getpid() system call.)
            if not found or forks_seen[0] != _forks:
                found[:] = [get_waker(path)]
                forks_seen[0] = _forks
            found[0].notify()

        storage.db.add_commit_hook(notify)
        storage.chord_hook = self._chord_hook
        storage.chord_of = self._chord_of

    def _chord_hook(
        self, conn: Any, group_id: str, failed: ResultRow | None, now: float
    ) -> tuple[list[FollowupRow], list[ResultRow]]:
        # Imported when a chord completes, not when the file is opened.
        from .followups import chord_hook

        return chord_hook(self, conn, group_id, failed, now)

    def _chord_of(self, message: bytes, content_type: str) -> str | None:
        from .followups import chord_of_message

        return chord_of_message(self, message, content_type)

    @property
    def waker(self) -> Waker:
        """Wakes waiters when the database changes."""
        return get_waker(self.storage.path)

    def finalize(self, strict: bool = True) -> None:
        """Send ``on_configure``, ``on_after_configure`` and ``on_after_finalize``, once.

        Celery sends the first two when the configuration is first read. Here
        settings are read as they are set, so workers and beat call this when
        they start, after importing the app's modules: receivers connected at
        import time, such as one calling :meth:`add_periodic_task`, run before
        beat reads ``beat_schedule``. The app's modules (``include``,
        ``imports``, autodiscovered) are imported first, as a worker does;
        with ``strict=False`` a module that fails to import is logged and
        skipped (beat sends tasks by name and needs none of them).

        Raises:
            ImportError: with ``strict``, one of those modules cannot be imported.
        """
        if self._finalized:
            return
        if not self._imported:
            try:
                self.import_modules()
            except ImportError as exc:
                if strict:
                    raise
                logger.warning(
                    "cannot import the app's modules (%s): signal receivers "
                    "connected there did not run",
                    exc,
                )
        self._finalized = True
        self.on_configure.send(sender=self)
        self.on_after_configure.send(sender=self, source=self.conf)
        self.on_after_finalize.send(sender=self)

    def add_periodic_task(
        self,
        schedule: Any,
        sig: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        **opts: Any,
    ) -> str:
        """Add an entry to ``beat_schedule`` that sends ``sig`` on ``schedule`` (Celery's API).

        Usually called from an ``on_after_configure`` receiver::

            @app.on_after_configure.connect
            def setup_periodic_tasks(sender, **kwargs):
                sender.add_periodic_task(10.0, say.s("hello"), name="every 10")

        ``schedule`` is anything ``beat_schedule`` takes (seconds, a
        ``timedelta``, ``crontab``...); ``args``/``kwargs`` are merged into the
        signature; ``opts`` are calling options (``queue``, ``expires``...).
        Like any ``beat_schedule`` entry, it is read when beat starts.

        Returns:
            The entry's name: ``name``, or the signature's ``repr``.

        Raises:
            TypeError: ``sig`` is a workflow or not a signature.
        """
        from .beat.entries import periodic_entry

        key, entry = periodic_entry(self, schedule, sig, args, kwargs, name, opts)
        current = self.conf.beat_schedule or {}
        if name is None and key in current and current[key] != entry:
            # As Celery 5.3+: two unnamed entries of one signature share a key.
            logger.warning(
                "Periodic task key=%r shadowed a previous unnamed periodic task; "
                "pass name= to add_periodic_task to keep both",
                key,
            )
        # A new dict, so that the change counts as a settings change.
        self.conf.beat_schedule = {**current, key: entry}
        return key

    @property
    def schedules(self) -> Schedules:
        """The beat schedule entries in the database, changeable at runtime.

        ``app.schedules.add(name, task, schedule, ...)``, ``remove``,
        ``enable``, ``disable``, ``run_now``, ``get``, ``list``: see
        :class:`liteq.beat.Schedules`.
        """
        from .beat import Schedules

        return Schedules(self)

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
        """Close this thread's database connection and stop watching the file.

        Also stops the thread that checkpoints the WAL of a process that
        writes a lot (see :mod:`liteq.storage.wal`). The app stays usable:
        all of them start again on use.
        """
        if self._storage is not None:
            get_waker(self._storage.path).stop()
            self._storage.db.stop_wal_checkpointer()
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
        cls = type(fun.__name__, (base,), attrs)
        for key, value in self._annotations_for(cls).items():
            type.__setattr__(cls, key, value)
        task: Task = cls()
        # Keep the plain function reachable for signature checks.
        task.__dict__["__wrapped__"] = fun
        self.tasks.register(task)
        return task

    def _annotations_for(self, task: type[Task]) -> dict[str, Any]:
        """The attributes ``task_annotations`` gives ``task`` (Celery's forms).

        Each entry (one, or a list) is a dict by task name (``"*"``: every
        task), an object whose ``annotate(task)`` returns a dict or None,
        or the import path of such an object (of its class, then made).
        For a key given more than once, a later entry wins, and in a dict
        the task's own name wins over ``"*"``.

        Raises:
            ConfigurationError: an entry is of another kind or cannot be imported.
        """
        annotations = self.conf.task_annotations
        if not annotations:
            return {}
        found: dict[str, Any] = {}
        entries = (
            annotations if isinstance(annotations, (list, tuple)) else [annotations]
        )
        for entry in entries:
            if isinstance(entry, str):
                entry = _load_annotation(entry)
            if isinstance(entry, Mapping):
                found.update(entry.get("*", {}))
                found.update(entry.get(task.name, {}))
            elif callable(getattr(entry, "annotate", None)):
                found.update(entry.annotate(task) or {})
            else:
                raise ConfigurationError(
                    f"task_annotations: {entry!r} is neither a dict nor an object "
                    "with annotate(task)"
                )
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
        """Import ``<package>.<related_name>`` for each package when the worker starts.

        ``packages`` may be a callable (Django's ``lambda:
        settings.INSTALLED_APPS``): as in Celery it is called only then, so
        that it sees the packages configured after this call.
        """
        self._autodiscover.append(
            (packages if callable(packages) else list(packages), related_name)
        )
        if force:
            self.import_modules()

    def import_modules(self) -> list[str]:
        """Import ``include``, ``imports`` and autodiscovered modules (what a worker does at start).

        Returns:
            The module names imported.

        Raises:
            ImportError: a listed module cannot be imported.
        """
        names = self._listed_modules()
        for packages, related in self._autodiscover:
            for pkg in packages() if callable(packages) else packages:
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

    def _listed_modules(self) -> list[str]:
        """The module names in ``imports`` then ``include`` (each a list or one name)."""
        names: list[str] = []
        for listed in (self.conf.imports, self.conf.include):
            if isinstance(listed, str):
                names.append(listed)
            elif listed:
                names.extend(listed)
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
    #: Build the message and queue row of one call (see :mod:`liteq.publishing`).
    build_message = publishing.build_message
    #: Build only the queue row of one call (cheaper when the message is not needed).
    build_row = publishing.build_row
    #: Write a built task to the queue, firing the publish signals.
    publish = publishing.publish

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
        prepared = None
        if (
            countdown is None
            and eta is None
            and expires is None
            and link is None
            and link_error is None
            and group_id is None
            and group_index is None
            and retries == 0
            and chord is None
            and time_limit is None
            and soft_time_limit is None
            and root_id is None
            and parent_id is None
            and shadow is None
            and chain is None
            and not options
        ):
            # The common .delay(): options resolved once per task, not per call.
            prepared = publishing.plain(self, name, task_type)
        if prepared is None:
            prepared = publishing.prepare(
                self,
                name,
                args,
                kwargs,
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
        tid = task_id or new_id()
        inserted = publishing.send(
            self,
            prepared,
            tid,
            tuple(args or ()),
            dict(kwargs or {}),
            retry,
            retry_policy,
            task_id is None,
        )
        if not inserted and options.get("unique_key") is not None:
            # A task with that key is still waiting or running: hand back its
            # result rather than one for an id that was never queued.
            tid = (
                self.storage.broker.task_id_for_unique_key(options["unique_key"]) or tid
            )
        # Positional: AsyncResult(id, backend, task_name, app).
        result = self.AsyncResult(tid, None, name, self)
        if add_to_parent and prepared.parent_id is not None:
            _add_to_parent(result)
        if prepared.chord is None and (
            prepared.ignore_result
            # ignore_result=False on a call cannot override the task's True:
            # the worker ignores its result all the same (as Celery's).
            or (
                "ignore_result" in options
                and task_type is not None
                and task_type.effective_ignore_result
            )
        ):
            result.ignored = True
        return result

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

        ``before_task_publish`` and ``after_task_publish`` are sent for each
        task when a receiver listens (the rows are written as the receivers
        left their headers and bodies); without receivers this costs nothing.

        Returns:
            The results, in the order of ``arguments``.

        Raises:
            TypeError: arguments that do not fit the task, or an unknown option.
            EncodeError: an argument (or what a receiver left) cannot be serialized.
            StorageError: the database could not be written; nothing was.
        """
        name = task if isinstance(task, str) else task.name
        task_type = None if isinstance(task, str) else task
        with_kwargs = bool(options.pop("kwargs", False))
        now = self.clock.time()
        rows = publishing.build_values(
            self, name, task_type, arguments, with_kwargs, now, options
        )
        announced = publishing.announce_rows(rows)
        rows.insert(self.storage.broker)
        publishing.announce_after(announced, self.storage.db)
        # Positional: AsyncResult(id, backend, task_name, app).
        bound = self.AsyncResult
        return [bound(tid, None, name, self) for tid in rows.ids]

    # -- results -------------------------------------------------------------------------
    @cached_property
    def AsyncResult(self) -> type[AsyncResult]:  # noqa: N802 - Celery's name
        """The result class of this app, as Celery's: a subclass bound to it.

        ``app.AsyncResult(task_id)`` reads the result from this app's
        database, and ``isinstance(result, app.AsyncResult)`` holds for the
        results its calls return.
        """
        return _bound(AsyncResult, self)

    @cached_property
    def GroupResult(self) -> type[GroupResult]:  # noqa: N802 - Celery's name
        """The group result class of this app, bound to it as :attr:`AsyncResult` is.

        ``app.GroupResult(group_id, results)`` and
        ``app.GroupResult.restore(group_id)`` read this app's database.
        """
        return _bound(GroupResult, self)

    def signature(self, varies: Any, *args: Any, **kwargs: Any) -> Signature:
        """Return a signature by task name or from a dict (``app.signature("tasks.add", (2, 2))``)."""
        from .canvas import signature

        return signature(varies, *args, app=self, **kwargs)

    @property
    def accept(self) -> frozenset[str]:
        """Content types accepted for task messages (``accept_content``)."""
        return self.derived("accept", _accept)

    @property
    def result_accept(self) -> frozenset[str]:
        """Content types accepted for results (``result_accept_content`` or ``accept_content``)."""
        return self.derived("result_accept", _result_accept)

    #: Serialize a result value (see :mod:`liteq.resultrows`).
    encode_result = resultrows.encode_result
    #: Build a result row: the value serialized, the time from the clock.
    make_result_row = resultrows.make_result_row
    #: Turn a stored row into Celery's meta dict.
    decode_result_row = resultrows.decode_result_row
    #: Turn a stored state change into Celery's meta dict.
    decode_event = resultrows.decode_event

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


def _add_to_parent(result: AsyncResult) -> None:
    """Record ``result`` among the running task's children (Celery's ``trail``)."""
    parent = current_task()
    if parent is None or not parent.trail:
        return
    request = parent.request
    if request.called_directly:
        return
    if request.children is None:
        request.children = []
    request.children.append(result)


_R = TypeVar("_R", AsyncResult, GroupResult)


def _bound(cls: type[_R], app: Liteq) -> type[_R]:
    """A subclass of ``cls`` whose instances default to ``app``."""
    return type(
        cls.__name__,
        (cls,),
        {
            "_bound_app": app,
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
        },
    )


def _load_annotation(path: str) -> Any:
    """Import a ``task_annotations`` entry named by path; a class is instantiated.

    Raises:
        ConfigurationError: it cannot be imported.
    """
    try:
        found = import_object(path)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"task_annotations: cannot import {path!r}: {exc}"
        ) from exc
    return found() if isinstance(found, type) else found


def _accept(conf: Settings) -> frozenset[str]:
    return accepted_content_types(conf.accept_content or ["json"])


def _result_accept(conf: Settings) -> frozenset[str]:
    return accepted_content_types(
        conf.result_accept_content or conf.accept_content or ["json"]
    )


#: Celery's name for the app class.
Celery = Liteq

__all__ = [
    "Celery",
    "Control",
    "Liteq",
    "TaskRegistry",
    "_apps",
    "_current",
    "_shared_tasks",
    "current_app",
    "gen_task_name",
    "shared_task",
    "using_app",
]
