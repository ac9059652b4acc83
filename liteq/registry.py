"""The registry of apps and tasks: ``current_app``, ``shared_task``, task names.

liteq never creates an app implicitly: ``current_app()`` is the last app
created (or the one made current with ``app.set_current()``), and
``shared_task`` defines a task on every app, present and future.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError, NotRegistered
from .task import Task

if TYPE_CHECKING:
    from .app import Liteq

#: Every app created in this process, in creation order.
_apps: list[Liteq] = []
#: Apps made current; the last one is ``current_app()``.
_current: list[Liteq] = []
#: Task factories from ``shared_task``, applied to every new app.
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
