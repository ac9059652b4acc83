"""Settings: Celery's lower-case names, the old upper-case names, and URLs.

``app.conf`` is a :class:`Settings`: read and write it as attributes or items,
with new (``task_serializer``) or old (``CELERY_TASK_SERIALIZER``) names; old
names are translated on the way in and out. Unknown setting-like names warn,
naming the closest valid key.
"""

from __future__ import annotations

import difflib
import importlib
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .exceptions import ConfigurationError


class LiteqWarning(UserWarning):
    """Base class of liteq's warnings."""


class UnknownSettingWarning(LiteqWarning):
    """A configuration key that looks like a setting is not one liteq knows."""


#: Every setting liteq knows, with its default. Settings that only make sense
#: for a network broker are accepted (so configuration ports unchanged) and
#: documented as having no effect.
DEFAULTS: dict[str, Any] = {
    # where the data lives
    "broker_url": None,
    "result_backend": None,
    "database_durable": False,
    "database_busy_timeout": 5.0,
    # serialization
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": None,
    # results
    "result_expires": timedelta(days=1),
    "result_extended": False,
    "result_persistent": None,
    "result_chord_join_timeout": 3.0,
    # tasks
    "task_default_queue": "celery",
    "task_default_priority": None,
    "task_default_rate_limit": None,
    "task_default_retry_delay": 180,
    "task_acks_late": False,
    "task_reject_on_worker_lost": None,
    "task_acks_on_failure_or_timeout": True,
    "task_always_eager": False,
    "task_eager_propagates": False,
    "task_store_eager_result": False,
    "task_ignore_result": False,
    "task_store_errors_even_if_ignored": False,
    "task_track_started": False,
    "task_time_limit": None,
    "task_soft_time_limit": None,
    "task_annotations": None,
    "task_routes": None,
    "task_queues": None,
    "task_create_missing_queues": True,
    "task_publish_retry": True,
    "task_publish_retry_policy": None,
    "task_protocol": 2,
    "task_compression": None,
    "task_max_deliveries": 10,
    "task_lease": 60.0,
    # time
    "timezone": None,
    "enable_utc": True,
    # modules
    "imports": (),
    "include": (),
    # beat
    "beat_schedule": {},
    "beat_max_loop_interval": 300,
    "beat_scheduler": None,
    "beat_schedule_filename": None,
    "beat_sync_every": 0,
    "beat_catch_up": "once",
    "beat_lease_ttl": 10.0,
    # worker
    "worker_concurrency": None,
    "worker_prefetch_multiplier": 1,
    "worker_max_tasks_per_child": None,
    "worker_max_memory_per_child": None,
    "worker_hijack_root_logger": True,
    "worker_log_format": "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s",
    "worker_task_log_format": (
        "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]: %(message)s"
    ),
    "worker_redirect_stdouts": True,
    "worker_redirect_stdouts_level": "WARNING",
    "worker_send_task_events": False,
    "worker_pool": "prefork",
    "worker_fallback_poll": 1.0,
    "worker_claim_linger": 0.0,
    "worker_shutdown_grace": 30.0,
    "worker_start_method": None,
    "worker_autoimport": True,
    # accepted for compatibility; no effect on one SQLite file
    "broker_transport_options": {},
    "broker_connection_retry": True,
    "broker_connection_retry_on_startup": True,
    "broker_connection_max_retries": 100,
    "broker_pool_limit": 10,
    "broker_heartbeat": None,
    "result_backend_transport_options": {},
    "task_send_sent_event": False,
    "worker_disable_rate_limits": False,
    "event_queue_expires": 60.0,
    "security_key": None,
}

#: Celery's pre-4.0 upper-case names, and the few liteq-only ones.
OLD_NAMES: dict[str, str] = {
    "BROKER_URL": "broker_url",
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options",
    "BROKER_CONNECTION_RETRY": "broker_connection_retry",
    "BROKER_CONNECTION_MAX_RETRIES": "broker_connection_max_retries",
    "BROKER_POOL_LIMIT": "broker_pool_limit",
    "BROKER_HEARTBEAT": "broker_heartbeat",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_RESULT_ACCEPT_CONTENT": "result_accept_content",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_RESULT_EXPIRES": "result_expires",
    "CELERY_RESULT_PERSISTENT": "result_persistent",
    "CELERY_RESULT_EXTENDED": "result_extended",
    "CELERY_TIMEZONE": "timezone",
    "CELERY_ENABLE_UTC": "enable_utc",
    "CELERY_IMPORTS": "imports",
    "CELERY_INCLUDE": "include",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERYBEAT_MAX_LOOP_INTERVAL": "beat_max_loop_interval",
    "CELERYBEAT_SCHEDULER": "beat_scheduler",
    "CELERYBEAT_SCHEDULE_FILENAME": "beat_schedule_filename",
    "CELERYBEAT_SYNC_EVERY": "beat_sync_every",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_DEFAULT_PRIORITY": "task_default_priority",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_REJECT_ON_WORKER_LOST": "task_reject_on_worker_lost",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_STORE_ERRORS_EVEN_IF_IGNORED": "task_store_errors_even_if_ignored",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERY_ANNOTATIONS": "task_annotations",
    "CELERY_ROUTES": "task_routes",
    "CELERY_QUEUES": "task_queues",
    "CELERY_CREATE_MISSING_QUEUES": "task_create_missing_queues",
    "CELERY_TASK_PUBLISH_RETRY": "task_publish_retry",
    "CELERY_TASK_PUBLISH_RETRY_POLICY": "task_publish_retry_policy",
    "CELERY_TASK_PROTOCOL": "task_protocol",
    "CELERY_MESSAGE_COMPRESSION": "task_compression",
    "CELERY_SEND_TASK_SENT_EVENT": "task_send_sent_event",
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_MAX_MEMORY_PER_CHILD": "worker_max_memory_per_child",
    "CELERYD_HIJACK_ROOT_LOGGER": "worker_hijack_root_logger",
    "CELERYD_LOG_FORMAT": "worker_log_format",
    "CELERYD_TASK_LOG_FORMAT": "worker_task_log_format",
    "CELERYD_POOL": "worker_pool",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERY_DISABLE_RATE_LIMITS": "worker_disable_rate_limits",
    "CELERY_REDIRECT_STDOUTS": "worker_redirect_stdouts",
    "CELERY_REDIRECT_STDOUTS_LEVEL": "worker_redirect_stdouts_level",
    "CELERY_SECURITY_KEY": "security_key",
}

_MISSING = object()

#: Settings holding a database location, checked when they are set.
_URL_KEYS = frozenset({"broker_url", "result_backend"})

#: Prefixes that mark a name as meant to be a setting (so a typo warns).
_SETTING_PREFIXES_NEW = ("task_", "result_", "worker_", "beat_", "broker_", "database_")
_SETTING_PREFIXES_OLD = ("CELERY_", "CELERYD_", "CELERYBEAT_", "BROKER_")
#: Lower-case names that are settings without a prefix.
_BARE_NEW = frozenset(
    {"timezone", "enable_utc", "imports", "include", "accept_content"}
)


def _looks_like_setting(key: str) -> bool:
    if key.startswith("_"):
        return False
    if key.isupper():
        return key.startswith(_SETTING_PREFIXES_OLD)
    return key.startswith(_SETTING_PREFIXES_NEW) or key in _BARE_NEW


def canonical_key(key: str, namespace: str | None = None) -> str | None:
    """Return liteq's name for ``key``, or None if it is not a known setting.

    ``namespace`` strips a Django-style prefix: with ``"CELERY"``,
    ``CELERY_BROKER_URL`` means ``broker_url``.
    """
    if key in DEFAULTS:
        return key
    if key in OLD_NAMES:
        return OLD_NAMES[key]
    if namespace:
        prefix = namespace.rstrip("_") + "_"
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            lowered = rest.lower()
            if lowered in DEFAULTS:
                return lowered
            if rest in OLD_NAMES:
                return OLD_NAMES[rest]
    lowered = key.lower()
    if key.isupper() and lowered in DEFAULTS:
        return lowered
    return None


def closest_key(key: str) -> str | None:
    """Return the known setting name closest to ``key`` (for error messages)."""
    pool = list(DEFAULTS) if not key.isupper() else list(OLD_NAMES) + list(DEFAULTS)
    found = difflib.get_close_matches(
        key if not key.isupper() else key, pool, n=1, cutoff=0.6
    )
    if not found and key.isupper():
        found = difflib.get_close_matches(key.lower(), list(DEFAULTS), n=1, cutoff=0.6)
    if not found:
        return None
    return OLD_NAMES.get(found[0], found[0])


class Settings:
    """The app's configuration: Celery's keys as attributes and items.

    Reading an unset known key returns its default. Keys that are not liteq
    settings are stored as given (a config module may carry the user's own
    values); those that look like a setting but are not one warn with
    :class:`UnknownSettingWarning`, naming the closest known key.
    """

    #: Bumped on every set or delete, so a cache of values derived from the
    #: settings (the publish path's per-task defaults) knows when to refresh.
    _revision: int

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", {})
        object.__setattr__(self, "_changed", set())
        object.__setattr__(self, "_own_defaults", {})
        object.__setattr__(self, "_revision", 0)
        if initial:
            self.update(initial)

    # -- mapping protocol ----------------------------------------------------------
    def _key(
        self,
        key: str,
        namespace: str | None = None,
        warn: bool = True,
        stacklevel: int = 4,
    ) -> str:
        canon = canonical_key(key, namespace)
        if canon is not None:
            return canon
        if warn and _looks_like_setting(key):
            near = closest_key(key)
            hint = f"; did you mean {near!r}?" if near else ""
            warnings.warn(
                f"unknown setting {key!r}{hint}",
                UnknownSettingWarning,
                stacklevel=stacklevel,
            )
        return key

    def __getitem__(self, key: str) -> Any:
        data: dict[str, Any] = self._data
        # Fast path first: the publish path reads a dozen settings per call.
        if key in data:
            return data[key]
        canon = key if key in DEFAULTS else (canonical_key(key) or key)
        if canon in data:
            return data[canon]
        if canon in DEFAULTS:
            return self._default(canon)
        raise KeyError(key)

    def _default(self, canon: str) -> Any:
        value = DEFAULTS[canon]
        if isinstance(value, (dict, list)):
            # Each app gets its own copy, so ``conf.beat_schedule["x"] = ...``
            # cannot change another app's defaults.
            own: dict[str, Any] = self._own_defaults
            if canon not in own:
                own[canon] = value.copy()
            return own[canon]
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        canon = self._key(key)
        self._store(canon, value)

    def _store(self, canon: str, value: Any) -> None:
        if canon in _URL_KEYS and value is not None:
            # A redis:// or amqp:// URL fails here, at the line that set it.
            parse_database_url(value)
        self._data[canon] = value
        self._changed.add(canon)
        object.__setattr__(self, "_revision", self._revision + 1)

    def __delitem__(self, key: str) -> None:
        del self._data[canonical_key(key) or key]
        object.__setattr__(self, "_revision", self._revision + 1)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        canon = canonical_key(key) or key
        return canon in self._data or canon in DEFAULTS

    def __iter__(self) -> Iterator[str]:
        return iter({**DEFAULTS, **self._data})

    def __len__(self) -> int:
        return len({**DEFAULTS, **self._data})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        # Inlined fast paths of __getitem__: a set key, or an immutable default.
        data: dict[str, Any] = self._data
        if name in data:
            return data[name]
        value = DEFAULTS.get(name, _MISSING)
        if value is not _MISSING and not isinstance(value, (dict, list)):
            return value
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def get(self, key: str, default: Any = None) -> Any:
        """Return the setting ``key`` (new or old name), or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: str, default: Any) -> Any:
        """Set ``key`` to ``default`` unless the user set it; return the value."""
        canon = self._key(key)
        if canon not in self._data:
            self._store(canon, default)
        return self._data[canon]

    def update(self, other: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Set many settings at once (old or new names).

        Raises:
            ConfigurationError: one setting is given under two names (say
                ``CELERY_TASK_SERIALIZER`` and ``task_serializer``) with
                different values.
        """
        items = dict(other or {})
        items.update(kwargs)
        entries = []
        for key, value in items.items():
            # The warning of an unknown name points at the caller's line.
            entries.append((self._key(key, stacklevel=3), key, value))
        for canon, value in _one_name_each(entries):
            self._store(canon, value)

    def load(self, obj: Any, namespace: str | None = None) -> None:
        """Load settings from a module, class, object or mapping.

        With ``namespace="CELERY"`` only keys with that prefix are read.
        Private names, modules, classes and functions are skipped.
        """
        import inspect

        if isinstance(obj, Mapping):
            items = dict(obj)
        else:
            items = {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_")}
        prefix = namespace.rstrip("_") + "_" if namespace else None
        found = []
        for key, value in items.items():
            if (
                inspect.ismodule(value)
                or inspect.isclass(value)
                or inspect.isroutine(value)
            ):
                continue
            if prefix is not None and not key.startswith(prefix):
                continue
            found.append((self._key(key, namespace), key, value))
        for canon, value in _one_name_each(found):
            self._store(canon, value)

    def is_set(self, key: str) -> bool:
        """Return True if the user gave ``key`` a value."""
        return (canonical_key(key) or key) in self._data

    def changes(self) -> dict[str, Any]:
        """Return the settings that differ from the defaults."""
        return {k: self._data[k] for k in self._changed if k in self._data}

    def table(self) -> dict[str, Any]:
        """Return every known setting with its effective value."""
        return {k: self[k] for k in DEFAULTS}

    def __repr__(self) -> str:
        return f"<Settings: {self.changes()!r}>"


def _one_name_each(
    entries: Iterable[tuple[str, str, Any]],
) -> list[tuple[str, Any]]:
    """``(canonical key, value)`` of ``(canonical key, given key, value)`` entries.

    Celery refuses a configuration that mixes old and new names; liteq takes
    it, unless one setting comes under two names with different values,
    where one of them would be dropped without a word.

    Raises:
        ConfigurationError: such a conflict.
    """
    seen: dict[str, tuple[str, Any]] = {}
    for canon, key, value in entries:
        if canon in seen:
            other, before = seen[canon]
            if before is not value and before != value:
                raise ConfigurationError(
                    f"setting {canon!r} is given twice with different values, "
                    f"as {other!r} and {key!r}: keep one"
                )
        seen[canon] = (key, value)
    return [(canon, value) for canon, (_key, value) in seen.items()]


def import_object(path: str) -> Any:
    """Import ``"pkg.module"`` or ``"pkg.module:attr"`` (or ``"pkg.module.attr"``).

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the attribute does not exist.
    """
    if ":" in path:
        module_name, attr = path.split(":", 1)
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    try:
        return importlib.import_module(path)
    except ImportError:
        module_name, _, attr = path.rpartition(".")
        if not module_name:
            raise
        return getattr(importlib.import_module(module_name), attr)


# -- database URLs -----------------------------------------------------------------

_NETWORK_SCHEMES = (
    "redis",
    "rediss",
    "amqp",
    "amqps",
    "pyamqp",
    "librabbitmq",
    "rpc",
    "sqs",
    "memcache",
    "cache",
    "mongodb",
    "couchbase",
    "django",
    "db+postgresql",
    "db+mysql",
    "postgresql",
    "postgres",
    "mysql",
    "elasticsearch",
    "cassandra",
    "azureblockblob",
    "s3",
    "gs",
    "consul",
    "dynamodb",
    "filesystem",
    "file",
    "memory",
)


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed database location."""

    path: str
    #: The original setting, for messages.
    raw: str


def _fix_hint(raw: str) -> str:
    return (
        f"liteq keeps the queue and the results in one SQLite file, so {raw!r} cannot "
        "be used. Point the broker at a file instead, for example "
        "broker='sqlite:///tasks.db' (relative to the working directory), "
        "broker='sqlite:////var/lib/app/tasks.db' (absolute) or just broker='tasks.db', "
        "and leave the result backend unset (it defaults to the same file)."
    )


def parse_database_url(value: Any) -> DatabaseURL:
    """Parse a broker/backend setting into a file path.

    Accepted: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``db+sqlite:///x.db`` (Celery's database-backend spelling), ``liteq://``
    with the same forms, or a bare filesystem path (``str`` or ``os.PathLike``).

    Raises:
        ConfigurationError: a network URL (``redis://``, ``amqp://``, ...), a
            backend alias such as ``"rpc"``, or an in-memory database.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"invalid database location {value!r}")
    raw = value.strip()
    scheme, sep, rest = raw.partition("://")
    if not sep:
        if raw in (
            "rpc",
            "amqp",
            "redis",
            "memory",
            "cache",
            "disabled",
        ) or raw.startswith(("amqp:", "redis:")):
            raise ConfigurationError(_fix_hint(raw))
        if raw == ":memory:":
            raise ConfigurationError(
                "an in-memory database cannot be shared with a worker process; use a file"
            )
        return DatabaseURL(path=os.path.expanduser(raw), raw=raw)
    scheme = scheme.lower()
    if scheme in ("sqlite", "db+sqlite", "sqlite3", "liteq"):
        path = rest.split("?", 1)[0]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel.db -> rel.db; sqlite:////abs -> /abs
        if not path or path == ":memory:":
            raise ConfigurationError(
                f"{raw!r} names an in-memory database, which a worker process cannot "
                "share; use a file such as sqlite:///tasks.db"
            )
        return DatabaseURL(path=os.path.expanduser(path), raw=raw)
    if scheme in _NETWORK_SCHEMES or scheme.startswith("db+"):
        raise ConfigurationError(_fix_hint(raw))
    raise ConfigurationError(
        f"unsupported database URL scheme {scheme!r} in {raw!r}. " + _fix_hint(raw)
    )


def resolve_database(broker: Any, backend: Any) -> DatabaseURL:
    """Return the one database file named by the broker and backend settings.

    Raises:
        ConfigurationError: neither is set, either is not a SQLite file, or
            they name two different files (liteq keeps both in one file so an
            ack and its result commit together).
    """
    if broker is None and backend is None:
        raise ConfigurationError(
            "no database configured: pass broker='sqlite:///tasks.db' to Liteq(), or set "
            "broker_url (BROKER_URL) in the configuration"
        )
    broker_url = parse_database_url(broker) if broker is not None else None
    backend_url = parse_database_url(backend) if backend is not None else None
    if broker_url is None:
        assert backend_url is not None
        return backend_url
    if backend_url is not None:
        a, b = os.path.abspath(broker_url.path), os.path.abspath(backend_url.path)
        if a != b:
            raise ConfigurationError(
                f"the result backend ({backend_url.raw!r}) is a different file from the "
                f"broker ({broker_url.raw!r}); liteq keeps tasks and results in one file so "
                "that finishing a task and storing its result are one transaction. Remove "
                "the backend setting (it defaults to the broker's file) or point both at "
                "the same file."
            )
    return broker_url
