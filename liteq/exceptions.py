"""The liteq exception tree.

Every error liteq raises derives from :class:`LiteqError`; control-flow
exceptions that a task raises to steer the worker derive from
:class:`TaskPredicate` instead, because they are not failures::

    LiteqError
    ├── ConfigurationError (alias ImproperlyConfigured)
    ├── ScheduleNotFound (also a KeyError)
    ├── StorageError
    │   └── DatabaseLocked
    ├── DecodeError
    ├── EncodeError
    ├── ContentDisallowed
    ├── TaskError
    │   ├── NotRegistered (also a KeyError)
    │   ├── MaxRetriesExceededError
    │   ├── ResultTimeout (alias TimeoutError, Celery's name)
    │   ├── TaskRevokedError
    │   ├── WorkerLostError
    │   ├── TimeLimitExceeded
    │   ├── ChordError
    │   ├── QueueNotFound
    │   └── IncompleteStream
    └── TaskPredicate
        ├── Retry
        ├── Ignore
        │   └── Replaced
        └── Reject

    SoftTimeLimitExceeded  (an Exception outside the tree, raised inside a
                            running task so that ``except Exception`` in the
                            task's own code can clean up)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


class LiteqError(Exception):
    """Base class of every liteq error."""

    def __init__(self, message: str | None = None, *args: Any) -> None:
        if message is None:
            message = (self.__doc__ or type(self).__name__).strip()
        super().__init__(message, *args)


class ConfigurationError(LiteqError):
    """The application is configured in a way liteq cannot work with."""


#: Celery's name for :class:`ConfigurationError`.
ImproperlyConfigured = ConfigurationError


class ScheduleNotFound(KeyError, LiteqError):
    """There is no schedule entry with that name."""

    def __str__(self) -> str:
        if not self.args:
            return "no such schedule entry"
        return f"no schedule entry named {self.args[0]!r}"


class StorageError(LiteqError):
    """The database could not be read or written."""

    def __init__(self, message: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        #: Path of the database file involved, when known.
        self.path = path


class DatabaseLocked(StorageError):
    """Another process held the database's write lock longer than busy_timeout."""


class DecodeError(LiteqError):
    """A message or result could not be decoded."""

    def __init__(
        self,
        message: str | None = None,
        data: bytes | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        #: The raw bytes that failed to decode.
        self.data = data
        #: The underlying error.
        self.error = error


class EncodeError(LiteqError):
    """A value could not be serialized with the chosen serializer."""


class ContentDisallowed(DecodeError):
    """A message used a serializer that is not listed in accept_content."""


class TaskError(LiteqError):
    """Base class of errors about a single task."""


class NotRegistered(KeyError, TaskError):
    """The task is not registered with the application."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "task not registered"


class MaxRetriesExceededError(TaskError):
    """The task was retried more often than its max_retries allows."""

    def __init__(self, message: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args)
        self.task_args = kwargs.get("task_args", ())
        self.task_kwargs = kwargs.get("task_kwargs", {})


class ResultTimeout(TaskError):
    """The result was not ready before the timeout ran out."""


#: Celery's name for :class:`ResultTimeout`. It shadows the builtin, so liteq's
#: own code never uses it; it exists for ``from celery.exceptions`` ports.
TimeoutError = ResultTimeout  # noqa: A001


class TaskRevokedError(TaskError):
    """The task was revoked, so it has no result."""


class WorkerLostError(TaskError):
    """The worker or pool process running the task died before it finished."""


class TimeLimitExceeded(TaskError):
    """The task ran past its hard time limit.

    Under the prefork pool its process was killed; the threads and solo
    pools, which cannot kill a thread, raise this in the task's thread.
    """

    def __init__(self, *args: Any) -> None:
        # Raised into a thread, it is made without arguments.
        super().__init__(*(args or ("the task ran past its hard time limit",)))


class ChordError(TaskError):
    """A part of a chord's header failed, so the body cannot run."""


class QueueNotFound(TaskError):
    """The task was routed to a queue that is not configured."""


class IncompleteStream(TaskError):
    """:meth:`AsyncResult.collect` met a task that has not finished."""


class SoftTimeLimitExceeded(Exception):
    """The task ran past its soft time limit; raised inside the task."""


class TaskPredicate(LiteqError):
    """Base class of the exceptions a task raises to steer the worker."""


class Retry(TaskPredicate):
    """The task asks to be run again later.

    Args:
        message: Human readable reason.
        exc: The exception that caused the retry, if any.
        when: Seconds from now, or an aware datetime, of the next attempt.
        is_eager: True when raised while running eagerly.
        sig: The signature to run again (set by ``Task.retry``).
    """

    def __init__(
        self,
        message: str | None = None,
        exc: BaseException | None = None,
        when: float | datetime | None = None,
        is_eager: bool = False,
        sig: Any = None,
    ) -> None:
        self.exc = exc
        self.when = when
        self.is_eager = is_eager
        self.sig = sig
        if message is None:
            message = "Retry"
            if when is not None:
                message += (
                    f" in {when}s" if isinstance(when, (int, float)) else f" at {when}"
                )
            if exc is not None:
                message += f": {exc!r}"
        super().__init__(message)
        self.message = message

    def humanize(self) -> str:
        """Return a short description of when the retry happens."""
        if isinstance(self.when, (int, float)):
            return f"in {self.when}s"
        return f"at {self.when}"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message, self.exc, self.when, self.is_eager)


class Ignore(TaskPredicate):
    """The task asks the worker not to record any result or state for it."""


class Replaced(Ignore):
    """Raised by :meth:`Task.replace`: the task ends, and ``sig`` takes its place.

    The worker records no result for the task and queues ``sig`` under the
    task's id when it acks the task (an :class:`Ignore`, as Celery's is).
    """

    def __init__(self, sig: Any) -> None:
        super().__init__("replaced by a new task")
        self.sig = sig


class Reject(TaskPredicate):
    """The task rejects its message; with ``requeue=True`` it is queued again."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(str(reason) if reason is not None else "Rejected")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.requeue)


__all__ = [
    "ChordError",
    "ConfigurationError",
    "ContentDisallowed",
    "DatabaseLocked",
    "DecodeError",
    "EncodeError",
    "Ignore",
    "ImproperlyConfigured",
    "IncompleteStream",
    "LiteqError",
    "MaxRetriesExceededError",
    "NotRegistered",
    "QueueNotFound",
    "Reject",
    "Replaced",
    "ResultTimeout",
    "Retry",
    "SoftTimeLimitExceeded",
    "StorageError",
    "TaskError",
    "TaskPredicate",
    "TaskRevokedError",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]
