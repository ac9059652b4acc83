"""Loggers for tasks (as Celery's ``celery.utils.log``) and redirected stdouts.

A worker started from the command line sends what its tasks write to
``sys.stdout`` and ``sys.stderr`` to the log (``worker_redirect_stdouts``,
at ``worker_redirect_stdouts_level``), through a :class:`LoggingProxy`, and
may give each pool process its own log file (``%i``/``%I`` in ``--logfile``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO, cast

from . import signals

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


#: Logger of what tasks write to stdout and stderr (Celery's ``celery.redirected``).
REDIRECT_LOGGER = "liteq.redirected"

#: Pool processes are named ``PoolWorker-N``, N from 1 (see :mod:`.worker.prefork`).
_POOL_PROCESS = re.compile(r"PoolWorker-(\d+)$")


#: Celery's level names (``-l``, ``worker_redirect_stdouts_level``).
LOG_LEVELS: dict[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}


def parse_level(value: int | str) -> int:
    """Return the number of a Celery level name (any case) or of a number.

    Raises:
        ValueError: ``value`` is no log level.
    """
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    level = LOG_LEVELS.get(text.upper())
    if level is None:
        raise ValueError(
            f"{value!r} is not a log level; use one of DEBUG, INFO, WARNING, ERROR, "
            "CRITICAL, FATAL"
        )
    return level


class LoggingProxy:
    """A text stream that turns each line written to it into a log record.

    It replaces ``sys.stdout`` and ``sys.stderr`` in worker processes (as
    Celery's ``LoggingProxy`` does), so that a task's ``print()`` becomes a
    record such as ``[...: WARNING/PoolWorker-1] hello`` in the worker's log.
    Output is line buffered, per thread: a partial line waits for its newline
    or for :meth:`flush`. Blank lines are dropped.

    A log handler that writes to this very stream (one made with
    ``logging.StreamHandler()`` after the redirect, or logging's own error
    reports) would loop; what it writes goes to the replaced stream instead.

    Args:
        logger: The logger, or its name.
        level: Level of the records (a number or a name such as ``"WARNING"``).
        stream: The stream this one replaces: it receives what log handlers
            write back here, and gives :meth:`fileno` and the encoding.

    Raises:
        ValueError: ``level`` is no log level.
    """

    mode = "w"
    newlines = None
    line_buffering = True
    write_through = False

    def __init__(
        self,
        logger: logging.Logger | str = REDIRECT_LOGGER,
        level: int | str = logging.WARNING,
        stream: TextIO | None = None,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = parse_level(level)
        self.stream = stream
        self.name = getattr(stream, "name", f"<{self.logger.name}>")
        self.encoding: str = getattr(stream, "encoding", None) or "utf-8"
        self.errors: str = getattr(stream, "errors", None) or "strict"
        self._closed = False
        # Per thread: the partial line, and whether it is inside ``logger.log``.
        self._local = threading.local()

    def __repr__(self) -> str:
        return (
            f"<LoggingProxy {self.name} to {self.logger.name} at "
            f"{logging.getLevelName(self.level)}>"
        )

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def write(self, text: str) -> int:
        """Log each complete line of ``text``; keep the rest for the next write.

        Returns:
            ``len(text)``, as a text file does.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: the stream is closed.
        """
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        local = self._local
        if getattr(local, "busy", False):
            self._write_through(text)
            return len(text)
        parts: list[str] | None = getattr(local, "parts", None)
        if parts is None:
            parts = local.parts = []
        if "\n" not in text:
            if text:
                parts.append(text)
            return len(text)
        parts.append(text)
        lines = "".join(parts).split("\n")
        parts.clear()
        if lines[-1]:
            parts.append(lines[-1])
        for line in lines[:-1]:
            self._log(line)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        """Write each string of ``lines`` (which carry their own newlines)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Log this thread's partial line, if any."""
        parts: list[str] | None = getattr(self._local, "parts", None)
        if parts and not getattr(self._local, "busy", False):
            line = "".join(parts)
            parts.clear()
            self._log(line)

    def close(self) -> None:
        """Flush, then refuse further writes (the replaced stream stays open)."""
        if not self._closed:
            self.flush()
            self._closed = True

    def _log(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        local = self._local
        local.busy = True
        try:
            self.logger.log(self.level, line)
        finally:
            local.busy = False

    def _write_through(self, text: str) -> None:
        stream = self.stream
        if stream is None:
            return
        # Already inside a handler: a broken stream must not raise into it.
        with contextlib.suppress(OSError, ValueError):
            stream.write(text)
            stream.flush()

    def isatty(self) -> bool:
        """Return False: the output goes to a log, not a terminal."""
        return False

    def fileno(self) -> int:
        """Return the descriptor of the replaced stream.

        Child processes given ``sys.stdout`` and ``faulthandler`` still get
        a real file, the one the worker's own stdout or stderr is.

        Raises:
            io.UnsupportedOperation: the replaced stream has no descriptor.
        """
        if self.stream is None:
            raise io.UnsupportedOperation("fileno")
        return self.stream.fileno()

    def readable(self) -> bool:
        """Return False: the stream is write-only."""
        return False

    def writable(self) -> bool:
        """Return True while the stream is open."""
        return not self._closed

    def seekable(self) -> bool:
        """Return False: the stream cannot seek."""
        return False

    def reconfigure(
        self, *, encoding: str | None = None, errors: str | None = None, **_: Any
    ) -> None:
        """Accept ``TextIOWrapper.reconfigure``; only the encoding names change."""
        if encoding is not None:
            self.encoding = encoding
        if errors is not None:
            self.errors = errors


def real_stream(stream: Any) -> Any:
    """Return ``stream``, or the stream it replaced if it is a :class:`LoggingProxy`."""
    while isinstance(stream, LoggingProxy) and stream.stream is not None:
        stream = stream.stream
    return stream


class StdoutRedirect:
    """``sys.stdout`` and ``sys.stderr`` sent to a logger, until :meth:`restore`."""

    def __init__(self, level: int | str, logger: logging.Logger | str) -> None:
        self.saved = (sys.stdout, sys.stderr)
        self.stdout = LoggingProxy(logger, level, real_stream(sys.stdout))
        self.stderr = LoggingProxy(logger, level, real_stream(sys.stderr))
        sys.stdout = cast(TextIO, self.stdout)
        sys.stderr = cast(TextIO, self.stderr)

    def restore(self) -> None:
        """Log pending partial lines and put back the streams that were replaced."""
        for proxy in (self.stdout, self.stderr):
            with contextlib.suppress(Exception):
                proxy.flush()
        if sys.stdout is self.stdout:
            sys.stdout = self.saved[0]
        if sys.stderr is self.stderr:
            sys.stderr = self.saved[1]


def redirect_stdouts(
    level: int | str = logging.WARNING, logger: logging.Logger | str = REDIRECT_LOGGER
) -> StdoutRedirect:
    """Send what this process writes to ``sys.stdout``/``sys.stderr`` to ``logger``.

    Set up the log handlers first: a handler made afterwards on
    ``sys.stderr`` would write to the proxy (its output then goes to the
    real stream, but without the handler's own stream choice).

    Returns:
        The redirect; call its ``restore()`` to undo it.

    Raises:
        ValueError: ``level`` is no log level.
    """
    return StdoutRedirect(level, logger)


@dataclass(frozen=True)
class WorkerLogging:
    """How ``liteq worker`` set up logging, for the pool processes it starts."""

    #: Level of the records made of stdout/stderr lines; None: no redirect.
    redirect_level: int | None = None
    #: The ``--logfile`` path with ``%i``/``%I`` left for each pool process to
    #: expand (``%%`` still escaped); None when it has neither, so pool
    #: processes log where the main process does.
    logfile: str | None = None
    #: The level given with ``-l``, for the logging signals of pool processes.
    loglevel: int | None = None


_worker_logging: WorkerLogging | None = None


def worker_logging() -> WorkerLogging | None:
    """Return the running ``liteq worker`` command's logging, or None.

    None for a worker built in code (``Worker(app)``, tests): it leaves
    ``sys.stdout`` alone, and so do its pool processes.
    """
    return _worker_logging


@contextlib.contextmanager
def worker_logging_installed(settings: WorkerLogging) -> Iterator[None]:
    """Apply ``settings`` here for the block, and offer them to pool processes.

    Redirects ``sys.stdout``/``sys.stderr`` when ``settings.redirect_level``
    is set, and restores them (and forgets ``settings``) at the end.
    """
    global _worker_logging
    redirect = (
        redirect_stdouts(settings.redirect_level)
        if settings.redirect_level is not None
        else None
    )
    saved, _worker_logging = _worker_logging, settings
    try:
        yield
    finally:
        _worker_logging = saved
        if redirect is not None:
            redirect.restore()


def expand_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace each ``%x`` of ``text`` whose ``x`` is a key of ``values``.

    Other ``%`` signs, and a ``%`` at the end, stay as they are.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%" and i + 1 < len(text) and text[i + 1] in values:
            out.append(values[text[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def process_index_values(index: int) -> dict[str, str]:
    """Celery's ``%i`` (the pool process index, 0 in the main process) and ``%I``.

    ``%I`` is ``-N`` in pool process N and empty in the main process.
    """
    return {"i": str(index), "I": f"-{index}" if index else ""}


def logfile_for_process(template: str, index: int) -> str:
    """Return the log file of pool process ``index`` (0: the main process).

    ``template`` is :attr:`WorkerLogging.logfile`: ``%i``, ``%I`` and ``%%``
    are expanded, other ``%`` sequences kept.
    """
    return expand_placeholders(template, {**process_index_values(index), "%": "%"})


def current_process_index() -> int:
    """Return this pool process's index (from 1), or 0 outside a pool process."""
    # Pool processes are started by multiprocessing, so it is loaded there;
    # elsewhere there is no need to import it (producers never do).
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:
        return 0
    match = _POOL_PROCESS.match(multiprocessing.current_process().name)
    return int(match.group(1)) if match else 0


# -- the logging signals -----------------------------------------------------------------


def _signal_kwargs(
    loglevel: int, logfile: str | None, fmt: str | None
) -> dict[str, Any]:
    return {"loglevel": loglevel, "logfile": logfile, "format": fmt, "colorize": False}


def setup_logging_taken_over(
    loglevel: int, logfile: str | None, fmt: str | None
) -> bool:
    """Send ``setup_logging`` if a receiver listens, as Celery does.

    Returns:
        True if one did: it configures logging itself (a Django project's
        ``dictConfig``), and liteq must install no handler of its own.
    """
    if not signals.setup_logging.has_receivers():
        return False
    signals.setup_logging.send(sender=None, **_signal_kwargs(loglevel, logfile, fmt))
    return True


def logging_set_up(loglevel: int, logfile: str | None, fmt: str | None) -> None:
    """Send ``after_setup_logger`` and ``after_setup_task_logger`` (liteq's handlers are in place)."""
    named = _signal_kwargs(loglevel, logfile, fmt)
    signals.after_setup_logger.send(sender=None, logger=logging.getLogger(), **named)
    signals.after_setup_task_logger.send(sender=None, logger=task_logger, **named)
