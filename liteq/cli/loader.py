"""Finding the app and the database for a command.

A command gets its app in one of three ways: ``-A module`` / ``-A module:attr``
(found the way Celery finds it), the app that called :meth:`Liteq.start`, or
none at all, in which case a plain ``Liteq(broker=DATABASE)`` is made and the
worker imports task modules by name.

The database comes from the command line (a ``DATABASE`` argument or
``-b/--broker``) or from the app's configuration. A database named on the
command line wins over the app's configuration, as Celery's ``-b`` does.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import click

from ..app import Liteq
from ..config import resolve_database
from ..exceptions import ConfigurationError

#: File name endings taken as a database when an argument could also be a task id.
DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")
#: URL prefixes that always name a database.
DATABASE_SCHEMES = ("sqlite:", "db+sqlite:", "sqlite3:", "liteq:")


@dataclass
class Loaded:
    """The app a command works on.

    Attributes:
        app: The app.
        app_path: ``"module:attr"`` a child process can import it from, or None
            (no ``-A``: children build ``Liteq(broker=database)`` themselves).
        database: Absolute path of the database file.
    """

    app: Liteq
    app_path: str | None
    database: str


@dataclass
class CliState:
    """Options of the ``liteq`` group, shared by every command (``ctx.obj``)."""

    app_spec: str | None = None
    broker: str | None = None
    result_backend: str | None = None
    config: str | None = None
    workdir: str | None = None
    preset_app: Liteq | None = None
    quiet: bool = False
    no_color: bool = False
    loaded: list[Loaded] = field(default_factory=list)

    def has_database_source(self, app_spec: str | None = None) -> bool:
        """Return True if an app or a database was given other than positionally."""
        return bool(
            app_spec or self.app_spec or self.broker or self.preset_app is not None
        )

    def load(
        self,
        database: str | None = None,
        app_spec: str | None = None,
        create: bool = False,
    ) -> Loaded:
        """Find the app and its database.

        Args:
            database: A database given to the command (overrides the app's).
            app_spec: ``-A`` given to the command (overrides the group's).
            create: Allow a database file that does not exist yet (the worker
                and ``call`` create it); otherwise a missing file is an error
                and nothing is created.

        Raises:
            click.ClickException: the app cannot be found or imported, no
                database is configured, or the file is missing.
        """
        add_cwd_to_path()
        spec = app_spec or self.app_spec
        app_path: str | None
        if spec:
            app, app_path = find_app(spec)
        elif self.preset_app is not None:
            app, app_path = self.preset_app, app_path_of(self.preset_app)
        else:
            app, app_path = None, None
        database = database or self.broker
        if app is None:
            if not database and not self.config:
                raise click.UsageError(
                    "no database given: name the file (liteq worker tasks.db) "
                    "or an app with -A (liteq -A proj worker)"
                )
            app = Liteq()
            if not self.config:
                # Built from the file alone: it has no beat_schedule to sync,
                # and must not take another app's entries for dropped ones.
                app._without_configuration = True
        if self.config:
            try:
                app.config_from_object(self.config)
            except ImportError as exc:
                raise click.ClickException(
                    f"cannot import configuration module {self.config!r}: {exc}"
                ) from exc
        if database:
            # The command line wins over the configuration, as Celery's -b does.
            app.config_from_object({"broker_url": database, "result_backend": None})
        if self.result_backend:
            app.config_from_object({"result_backend": self.result_backend})
        try:
            url = resolve_database(app.conf.broker_url, app.conf.result_backend)
        except ConfigurationError as exc:
            raise click.ClickException(
                f"{exc}; or give the database file on the command line"
            ) from exc
        path = os.path.abspath(url.path)
        if not create:
            require_database(path)
        elif os.path.isdir(path):
            raise click.ClickException(f"{path} is a directory, not a database file")
        elif not os.path.isdir(os.path.dirname(path)):
            raise click.ClickException(
                f"directory {os.path.dirname(path)} for the database {path} does not exist"
            )
        refuse_foreign_file(path)
        loaded = Loaded(app=app, app_path=app_path, database=path)
        self.loaded.append(loaded)
        return loaded

    def close(self) -> None:
        """Close the database connections the commands opened."""
        for loaded in self.loaded:
            loaded.app.close()
        self.loaded.clear()


def app_option(func: Any) -> Any:
    """``-A/--app`` on a subcommand, as Celery 3 accepted it."""
    return click.option(
        "-A",
        "--app",
        "app_spec",
        envvar="LITEQ_APP",
        metavar="MODULE[:ATTR]",
        help="The app (same as the liteq -A option).",
    )(func)


def require_database(path: str) -> None:
    """Fail (without creating anything) unless ``path`` is an existing file.

    Raises:
        click.ClickException: the file is missing or is not a file.
    """
    if os.path.isdir(path):
        raise click.ClickException(f"{path} is a directory, not a database file")
    if not os.path.exists(path):
        raise click.ClickException(
            f"database file {path} does not exist (check the path; nothing was "
            "queued there yet and no worker has run on it)"
        )


#: The first bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def refuse_foreign_file(path: str) -> None:
    """Fail unless ``path`` is missing, empty, or starts as a SQLite database does.

    A worker on a file that is no database would otherwise retry for ever.

    Raises:
        click.ClickException: the file holds something else (or cannot be read).
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise click.ClickException(
            f"cannot read the database file {path}: {exc}"
        ) from exc
    if head and head != SQLITE_HEADER:
        raise click.ClickException(f"{path} is not a SQLite database file")


def looks_like_database(arg: str) -> bool:
    """Return True if ``arg`` names a database (a URL, an existing file, a db suffix)."""
    return (
        arg.lower().startswith(DATABASE_SCHEMES)
        or os.path.isfile(arg)
        or arg.lower().endswith(DATABASE_SUFFIXES)
    )


def split_database(
    args: tuple[str, ...] | list[str],
    state: CliState,
    required: int,
    app_spec: str | None = None,
) -> tuple[str | None, list[str]]:
    """Split a command's positional arguments into ``(database, rest)``.

    Without ``-A``/``-b`` the first argument is the database. With them it is
    taken as the database only if it looks like one and more arguments than
    the ``required`` ones were given, so ``liteq -A proj revoke ID`` works.
    """
    items = list(args)
    if not items:
        return None, items
    if not state.has_database_source(app_spec):
        return items[0], items[1:]
    if len(items) > required and looks_like_database(items[0]):
        return items[0], items[1:]
    return None, items


def add_cwd_to_path() -> None:
    """Put the working directory first on ``sys.path``, as Celery does.

    A console script's ``sys.path`` starts with the script's directory, so
    without this ``-A proj`` and task modules next to the user would not import.
    """
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _import(module_name: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise _import_error(module_name, spec, exc) from exc


def _import_error(module_name: str, spec: str, exc: Exception) -> click.ClickException:
    if isinstance(exc, ModuleNotFoundError) and exc.name is not None:
        if module_name == exc.name or module_name.startswith(exc.name + "."):
            return click.ClickException(
                f"cannot load app {spec!r}: module {module_name!r} was not found "
                f"(looked in {os.getcwd()} and sys.path)"
            )
    return _import_failed(spec, exc)


def _import_failed(spec: str, exc: BaseException) -> click.ClickException:
    # An error inside the user's module: show where it happened.
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return click.ClickException(
        f"cannot load app {spec!r}: importing it raised an error:\n{detail.rstrip()}"
    )


def find_app(spec: str) -> tuple[Liteq, str]:
    """Find the app named by ``-A``.

    ``module:attr`` names it exactly. For a bare ``module`` the attribute
    ``app`` is tried, then ``celery``, then (for a package) the submodule
    ``module.celery``, then the module's single Liteq instance. ``pkg.mod.attr``
    (a dotted path ending in an attribute) works too.

    Returns:
        ``(app, "module:attr")``; the path lets spawned children import it.

    Raises:
        click.ClickException: nothing found, or the module failed to import.
    """
    add_cwd_to_path()
    importlib.invalidate_caches()
    module_name, sep, attr = spec.partition(":")
    if sep:
        module = _import(module_name, spec)
        obj: Any = module
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise click.ClickException(
                f"cannot load app {spec!r}: module {module_name!r} has no attribute "
                f"{attr!r}"
            ) from None
        if not isinstance(obj, Liteq):
            raise click.ClickException(
                f"cannot load app {spec!r}: {attr!r} is a {type(obj).__name__}, "
                "not a Liteq (Celery) app"
            )
        return obj, spec
    try:
        module = importlib.import_module(spec)
    except Exception as exc:
        head, _, tail = spec.rpartition(".")
        if head and isinstance(exc, ModuleNotFoundError) and exc.name == spec:
            # "proj.tasks.app": the last part is an attribute.
            return find_app(f"{head}:{tail}")
        raise _import_error(spec, spec, exc) from exc
    found = _app_in_module(module, spec)
    if found is not None:
        return found
    raise click.ClickException(
        f"cannot load app {spec!r}: module {module.__name__!r} defines no Liteq app "
        f"(looked for 'app', 'celery', a '{spec}.celery' module and any Liteq "
        "instance); name it with -A module:attr"
    )


def _app_in_module(module: ModuleType, spec: str) -> tuple[Liteq, str] | None:
    for attr in ("app", "celery"):
        value = getattr(module, attr, None)
        if isinstance(value, Liteq):
            return value, f"{module.__name__}:{attr}"
    if getattr(module, "__path__", None) is not None:
        try:
            sub = importlib.import_module(f"{module.__name__}.celery")
        except ModuleNotFoundError as exc:
            if exc.name != f"{module.__name__}.celery":
                raise _import_failed(spec, exc) from exc
        except Exception as exc:
            raise _import_failed(spec, exc) from exc
        else:
            found = _app_in_module(sub, spec)
            if found is not None:
                return found
    apps = [(k, v) for k, v in vars(module).items() if isinstance(v, Liteq)]
    distinct = {id(v) for _, v in apps}
    if len(distinct) > 1:
        names = ", ".join(f"{module.__name__}:{k}" for k, _ in apps)
        raise click.ClickException(
            f"cannot load app {spec!r}: module {module.__name__!r} has several apps "
            f"({names}); pick one with -A module:attr"
        )
    if apps:
        name, app = apps[0]
        return app, f"{module.__name__}:{name}"
    return None


def app_path_of(app: Liteq) -> str | None:
    """Return a ``"module:attr"`` path that holds ``app``, or None if none does.

    Used for an app that called :meth:`Liteq.start` itself, so spawned pool
    children can import the same app. A module other than ``__main__`` is
    preferred; ``__main__`` works too, because spawn re-runs the main module.
    """
    fallback: str | None = None
    for name, module in list(sys.modules.items()):
        if module is None:
            continue
        try:
            members = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in members:
            if value is app:
                if name in ("__main__", "__mp_main__"):
                    fallback = fallback or f"__main__:{attr}"
                    break
                return f"{name}:{attr}"
    return fallback
