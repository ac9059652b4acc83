"""liteq: Celery's programming model on one SQLite file.

The queue, the results and the schedules live in one SQLite file; there is no
server to run. ``from liteq import Celery`` works for code written for Celery.
"""

from __future__ import annotations

from . import states
from .app import Celery, Liteq, current_app, shared_task
from .canvas import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    subtask,
    xmap,
    xstarmap,
)
from .exceptions import (
    ConfigurationError,
    Ignore,
    LiteqError,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    StorageError,
    TimeLimitExceeded,
    WorkerLostError,
)
from .result import AsyncResult, EagerResult, GroupResult, ResultSet
from .task import Task

__version__ = "0.1.0"

__all__ = [
    "AsyncResult",
    "Celery",
    "ConfigurationError",
    "EagerResult",
    "GroupResult",
    "Ignore",
    "Liteq",
    "LiteqError",
    "MaxRetriesExceededError",
    "NotRegistered",
    "Reject",
    "ResultSet",
    "Retry",
    "Signature",
    "SoftTimeLimitExceeded",
    "StorageError",
    "Task",
    "TimeLimitExceeded",
    "WorkerLostError",
    "__version__",
    "chain",
    "chord",
    "chunks",
    "current_app",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "xmap",
    "xstarmap",
]
