"""liteq: Celery's programming model on one SQLite file.

The queue, the results and the schedules live in one SQLite file; there is no
server to run. ``from liteq import Celery`` works for code written for Celery.
"""

from __future__ import annotations

from . import states
from .app import Celery, Liteq, shared_task
from .app import current_app as _current_app
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
from .task import current_task as _current_task
from .utils.proxy import Proxy

#: The current app, as Celery's proxy: ``current_app.conf``,
#: ``current_app.send_task(...)``; ``current_app()`` returns the app itself.
current_app = Proxy(_current_app)
#: The task running in this thread (falsy outside a task), as Celery's
#: proxy: ``current_task.request.id``, ``current_task.update_state(...)``.
current_task = Proxy(_current_task)

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
    "current_task",
    "group",
    "maybe_signature",
    "shared_task",
    "signature",
    "states",
    "subtask",
    "xmap",
    "xstarmap",
]
