"""Turning what happened in the pool into outcomes, and logging them.

A task normally ends with the :class:`~liteq.execution.Outcome` its pool
slot produced. One that did not end by itself (:class:`~.pool.Interrupted`)
gets its outcome here, following the worker-lost rule:

* its pool process died — ``acks_late`` (or ``reject_on_worker_lost``) tasks
  go back to the queue while they have deliveries left, the others end
  FAILURE(WorkerLostError);
* it ran past its hard time limit — FAILURE(TimeLimitExceeded);
* it was terminated (``revoke(terminate=True)``) — REVOKED.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import signals, states
from ..exceptions import TaskRevokedError, TimeLimitExceeded, WorkerLostError
from ..execution import Outcome, end_claimed, received_request
from ..storage import Completion
from .runner import Report, describe

if TYPE_CHECKING:
    from ..app import Liteq
    from .pool import Interrupted

logger = logging.getLogger("liteq.worker")

#: The state logged for a task put back in the queue (never stored).
REQUEUED = "REQUEUED"


def interrupted_outcome(
    app: Liteq, item: Interrupted, hostname: str, max_deliveries: int
) -> Outcome | Report:
    """Return the outcome of a task that did not end by itself."""
    claimed = item.claimed
    label = f"Task {claimed.name}[{claimed.task_id}]"
    if item.reason == "terminated":
        signals.task_revoked.send(
            sender=app.tasks.get(claimed.name),
            request=received_request(app, claimed, hostname),
            terminated=True,
            signum=item.signum,
            expired=False,
            task_id=claimed.task_id,
        )
        exc: BaseException = TaskRevokedError(f"terminated by signal {item.signum}")
        return end_claimed(app, claimed, exc, states.REVOKED, hostname=hostname)
    if item.reason == "time_limit":
        exc = TimeLimitExceeded(
            f"{label} exceeded its hard time limit of {item.detail}"
        )
        return end_claimed(app, claimed, exc, hostname=hostname)
    # The row's flags were set by the producer; the task knows better.
    task = app.tasks.get(claimed.name)
    if task is not None:
        again = task.effective_acks_late or task.effective_reject_on_worker_lost
    else:
        again = claimed.acks_late or claimed.reject_on_worker_lost
    if again and claimed.deliveries < max_deliveries:
        completion = Completion(task_id=claimed.task_id, claimed=claimed, requeue=True)
        line = f"{label} re-queued: its pool process exited with {item.detail}"
        return Report(
            claimed.task_id, claimed.name, REQUEUED, completion, line, None, True, 0.0
        )
    if again:
        exc = WorkerLostError(
            f"Worker exited prematurely: {item.detail}; task delivered "
            f"{claimed.deliveries} times (task_max_deliveries={max_deliveries})"
        )
    else:
        exc = WorkerLostError(f"Worker exited prematurely: {item.detail}.")
    return end_claimed(app, claimed, exc, hostname=hostname)


def log_outcome(outcome: Outcome | Report, info: bool) -> None:
    """Log one outcome the way Celery does (SUCCESS lines only when ``info``)."""
    state = outcome.state
    if state == states.SUCCESS:
        if info:
            logger.info(describe(outcome))
    elif state == states.FAILURE and not outcome.expected:
        logger.error("%s\n%s", describe(outcome), outcome.traceback or "")
    else:
        logger.info(describe(outcome))
