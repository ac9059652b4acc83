"""Log set-up for long-running commands, in Celery's format.

Log lines look like ``[2024-01-01 12:00:00,000: INFO/MainProcess] message``;
lines from task loggers (``get_task_logger``) add ``task_name[task_id]:``.
"""

from __future__ import annotations

import logging
import sys

import click

from ..log import (
    TaskFormatter,
    logging_set_up,
    parse_level,
    setup_logging_taken_over,
)

#: Used when the app's configuration has no format.
DEFAULT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
#: Format of lines logged by task loggers.
DEFAULT_TASK_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] "
    "%(task_name)s[%(task_id)s]: %(message)s"
)


#: ``-l/--loglevel`` values: Celery's level names (any case) or numbers.
parse_loglevel = parse_level


def loglevel_callback(
    ctx: click.Context, param: click.Parameter, value: str | int | None
) -> int | None:
    """Click callback converting ``-l/--loglevel``."""
    if value is None:
        return None
    try:
        return parse_loglevel(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def setup_logging(
    level: int,
    logfile: str | None = None,
    fmt: str | None = None,
    task_fmt: str | None = None,
    hijack_root: bool = True,
) -> logging.Handler | None:
    """Send log records at ``level`` and above to stderr or ``logfile``.

    Args:
        level: The root logger's level.
        logfile: Append to this file instead of writing to stderr.
        fmt: Format of ordinary lines (``worker_log_format``).
        task_fmt: Format of task logger lines (``worker_task_log_format``).
        hijack_root: Remove handlers others installed on the root logger
            (``worker_hijack_root_logger``), as Celery does.

    As Celery's: if a receiver listens to the ``setup_logging`` signal, it
    is sent instead and configures logging itself (a Django project's
    ``dictConfig``); otherwise, once the handlers are in place,
    ``after_setup_logger`` and ``after_setup_task_logger`` are sent so that
    receivers can add to them.

    Returns:
        The handler installed on the root logger (None when a
        ``setup_logging`` receiver did it).
    """
    if setup_logging_taken_over(level, logfile, fmt):
        return None
    root = logging.getLogger()
    if hijack_root:
        for old in list(root.handlers):
            root.removeHandler(old)
    stream = open(logfile, "a", encoding="utf-8") if logfile else sys.stderr  # noqa: SIM115
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt or DEFAULT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    task_logger = logging.getLogger("liteq.task")
    for old in list(task_logger.handlers):
        task_logger.removeHandler(old)
    task_handler = logging.StreamHandler(stream)
    task_handler.setFormatter(TaskFormatter(task_fmt or DEFAULT_TASK_FORMAT))
    task_logger.addHandler(task_handler)
    # Task lines carry their own format; do not print them twice via root.
    task_logger.propagate = False
    logging_set_up(level, logfile, fmt)
    return handler


#: ``-l/--loglevel`` as Celery's commands take it (also ``LITEQ_LOGLEVEL``).
loglevel_option = click.option(
    "-l",
    "--loglevel",
    default="WARNING",
    callback=loglevel_callback,
    metavar="[DEBUG|INFO|WARNING|ERROR|CRITICAL|FATAL]",
    envvar="LITEQ_LOGLEVEL",
    help="Log level.",
    show_default=True,
)
