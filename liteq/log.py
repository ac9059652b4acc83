"""Loggers for tasks, as Celery's ``celery.utils.log``."""

from __future__ import annotations

import logging

#: Parent of every task logger.
task_logger = logging.getLogger("liteq.task")


class TaskFormatter(logging.Formatter):
    """A formatter that can show ``%(task_name)s`` and ``%(task_id)s``.

    Outside a task both render as ``???``.
    """

    def format(self, record: logging.LogRecord) -> str:
        from .task import current_task

        task = current_task()
        if task is not None and task.request.id:
            record.__dict__.setdefault("task_id", task.request.id)
            record.__dict__.setdefault("task_name", task.name)
        else:
            record.__dict__.setdefault("task_id", "???")
            record.__dict__.setdefault("task_name", "???")
        return super().format(record)


def get_task_logger(name: str) -> logging.Logger:
    """Return a logger for task code, a child of ``liteq.task``.

    Raises:
        RuntimeError: ``name`` is a reserved logger name.
    """
    if name in ("liteq", "liteq.task", "celery", "celery.task"):
        raise RuntimeError(f"logger name {name!r} is reserved")
    logger = logging.getLogger(name)
    if logger.parent is logging.root:
        logger.parent = task_logger
    return logger


def get_logger(name: str) -> logging.Logger:
    """Return ``logging.getLogger(name)`` (Celery's helper of the same name)."""
    return logging.getLogger(name)
