"""``from liteq.utils.log import get_task_logger``, as in Celery."""

from __future__ import annotations

from ..log import TaskFormatter, get_logger, get_task_logger, task_logger

__all__ = ["TaskFormatter", "get_logger", "get_task_logger", "task_logger"]
