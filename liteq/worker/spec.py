"""Describing the app to a spawned child: an import path, or settings to rebuild it.

A child started with ``spawn`` or ``forkserver`` shares no memory with the
worker. It re-imports the app from ``"module:attr"`` when the app lives in an
importable module; otherwise (the worker was started on a bare database file)
it builds an equivalent ``Liteq(broker=path, **settings)`` and imports the
modules that define the worker's tasks.
"""

from __future__ import annotations

import logging
import pickle
import sys
from typing import TYPE_CHECKING, Any

from .child import ChildSpec, capture_logging

if TYPE_CHECKING:
    from ..app import Liteq
    from .worker import Worker

#: Settings a child must not copy: the database is passed on its own.
_NOT_COPIED = frozenset({"broker_url", "result_backend"})


def derive_app_path(app: Liteq) -> str | None:
    """Return ``"module:attr"`` naming ``app`` in an imported module, or None.

    The app's ``main`` module is tried first; a module of liteq itself never
    counts; ``__main__`` only when nothing else holds the app (spawn children
    import the main script under another name, see ``child.load_app``).
    """
    modules: list[tuple[str, Any]] = []
    if app.main and app.main in sys.modules:
        modules.append((app.main, sys.modules[app.main]))
    modules.extend(
        (name, module)
        for name, module in list(sys.modules.items())
        if module is not None and name != app.main
    )
    fallback: str | None = None
    for name, module in modules:
        if name == "liteq" or name.startswith("liteq."):
            continue
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            if value is app and not attr.startswith("_"):
                if name in ("__main__", "__mp_main__"):
                    fallback = fallback or f"__main__:{attr}"
                    break
                return f"{name}:{attr}"
    return fallback


def picklable_settings(app: Liteq) -> dict[str, Any]:
    """Return the app's changed settings whose values can be sent to a child."""
    out: dict[str, Any] = {}
    for key, value in app.conf.changes().items():
        if key in _NOT_COPIED:
            continue
        try:
            pickle.dumps(value)
        except Exception:  # noqa: BLE001 - anything unpicklable stays behind
            continue
        out[key] = value
    return out


def start_modules(app: Liteq) -> tuple[str, ...]:
    """Return the modules a pool process imports at start.

    The modules defining the app's registered tasks (liteq's own excluded),
    then those listed in ``imports`` and ``include`` (``-I`` included):
    these may define no task and still connect handlers, such as
    ``worker_process_init``'s, that every pool process must run.
    """
    names = set()
    for task in list(app.tasks.values()):
        module = type(task).__module__
        if module and not module.startswith(("liteq.", "__main__", "__mp_main__")):
            if module != "liteq":
                names.add(module)
    listed = [name for name in app._listed_modules() if name not in names]
    return (*sorted(names), *dict.fromkeys(listed))


def child_spec(worker: Worker) -> ChildSpec:
    """Return what a prefork child of ``worker`` needs (all picklable)."""
    app = worker.app
    info = logging.getLogger("liteq.worker").isEnabledFor(logging.INFO)
    return ChildSpec(
        app_path=worker.app_path or derive_app_path(app),
        database=app.storage.path,
        settings=picklable_settings(app),
        modules=start_modules(app),
        hostname=worker.hostname,
        autoimport=worker.autoimport,
        time_limit=worker.limits.hard,
        soft_time_limit=worker.limits.soft,
        max_tasks=worker.max_tasks_per_child,
        max_memory=worker.max_memory_per_child,
        log=capture_logging(info),
        info=info,
    )
