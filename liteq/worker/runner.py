"""Running one claimed task in a pool slot: its time limits, and a run that never raises.

Every pool (prefork child, thread, solo) runs tasks through :func:`run_task`,
which calls :func:`liteq.execution.execute` and turns even an error of the
execution machinery itself into a FAILURE outcome, so that a slot never dies
of a task. :class:`Report` is the picklable summary a prefork child sends back
to its parent.
"""

from __future__ import annotations

import dataclasses
import logging
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import states
from ..exceptions import ContentDisallowed, DecodeError, NotRegistered
from ..execution import Outcome, end_claimed, execute
from ..messages import Message
from ..storage import Completion, ResultRow

if TYPE_CHECKING:
    from ..app import Liteq
    from ..storage.broker import Claimed

logger = logging.getLogger("liteq.worker")


@dataclass(frozen=True)
class Limits:
    """Time limits of one task run, in seconds (None: no limit)."""

    hard: float | None = None
    soft: float | None = None


#: The limits of the (common) task without any.
_NO_LIMITS = Limits()


def _positive(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if value > 0 else None


def prepare(
    app: Liteq, claimed: Claimed, autoimport: bool, defaults: Limits
) -> tuple[Message | None, Limits]:
    """Decode ``claimed`` and work out its time limits.

    The message's own limits win (``apply_async(time_limit=...)``, or the
    task's when the producer knew it), then the task's attributes, then the
    worker's defaults.

    Returns:
        ``(message, limits)``; ``message`` is None when it cannot be decoded
        (``execute`` then stores the decode error).
    """
    try:
        message = Message.decode(
            claimed.message, claimed.content_type, app.accept, claimed.task_id
        )
    except (DecodeError, ContentDisallowed):
        return None, Limits()
    hard, soft = message.timelimit
    if hard is None or soft is None:
        try:
            task = app.resolve_task(message.task, autoimport=autoimport)
        except NotRegistered:
            task = None
        if task is not None:
            hard = task.time_limit if hard is None else hard
            soft = task.soft_time_limit if soft is None else soft
    hard = defaults.hard if hard is None else hard
    soft = defaults.soft if soft is None else soft
    if hard is None and soft is None:
        return message, _NO_LIMITS
    return message, Limits(_positive(hard), _positive(soft))


def run_task(
    app: Liteq,
    claimed: Claimed,
    message: Message | None,
    hostname: str,
    autoimport: bool,
    store: Callable[[Completion], bool | None] | None = None,
) -> Outcome:
    """Run one claimed task; never raises (any error becomes its FAILURE).

    ``store``: see :func:`~liteq.execution.execute` (stores the outcome
    before the task's end hooks, when it has any).
    """
    try:
        return execute(
            app,
            claimed,
            message,
            hostname=hostname,
            autoimport=autoimport,
            store=store,
        )
    except BaseException as exc:  # noqa: BLE001 - a slot must survive anything
        # Raised outside the task body (a soft time limit that fired while
        # the outcome was being stored, a broken result hook...).
        logger.error(
            "Task %s[%s]: error while running it: %r",
            claimed.name,
            claimed.task_id,
            exc,
            exc_info=True,
        )
        return failed_outcome(app, claimed, exc, hostname)


def store_completion(app: Liteq, completion: Completion) -> bool | None:
    """Apply ``completion`` (the ack, with the result) from the slot that ran the task.

    Returns:
        Whether it applied (False: the claim's lease was lost), or None if
        it failed: the worker then acks the task from its outcome, as usual.
    """
    try:
        return app.storage.complete([completion], app.clock.time())[0]
    except Exception as exc:  # noqa: BLE001 - the worker acks it instead
        logger.debug("acking %s from its pool slot failed: %r", completion.task_id, exc)
        return None


def failed_outcome(
    app: Liteq, claimed: Claimed, exc: BaseException, hostname: str
) -> Outcome:
    """Return the FAILURE outcome of ``claimed`` for ``exc``; never raises.

    The full failure (:func:`~liteq.execution.end_claimed`: errbacks, chord)
    when it can be built, else a bare FAILURE that still acks the task.
    """
    try:
        return end_claimed(app, claimed, exc, hostname=hostname)
    except BaseException as again:  # noqa: BLE001
        logger.error("cannot record the failure of %s: %r", claimed.task_id, again)
        return Outcome(
            claimed.task_id,
            claimed.name,
            states.FAILURE,
            Completion(task_id=claimed.task_id, claimed=claimed),
            exc=exc,
        )


#: Longest log line kept for an outcome (a huge return value stays out of the log).
MAX_LINE = 1024


def describe(outcome: Outcome | Report) -> str:
    """Return the outcome's log line, shortened, even if a ``__repr__`` raises."""
    try:
        line = outcome.describe()
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not stop the worker
        line = (
            f"Task {outcome.name}[{outcome.task_id}] {outcome.state} ({exc!r} in repr)"
        )
    if len(line) > MAX_LINE:
        line = line[: MAX_LINE - 3] + "..."
    return line


@dataclass
class Report:
    """How a task ended in a prefork child, as sent to the parent (picklable).

    It has the attributes of :class:`~liteq.execution.Outcome` that the
    parent needs to ack and log the task; ``exc`` stays in the child.
    ``acked`` tells whether the child stored the outcome itself (see
    :mod:`.child`): None if it did not, else whether the ack applied (False:
    the claim's lease was lost first).
    """

    task_id: str
    name: str
    state: str
    completion: Completion
    line: str | None
    traceback: str | None
    expected: bool
    runtime: float
    exc: BaseException | None = None
    acked: bool | None = None

    @classmethod
    def from_outcome(
        cls, outcome: Outcome, info: bool, acked: bool | None = None
    ) -> Report:
        """Summarize ``outcome``; the log line is only built if it will be logged."""
        completion = outcome.completion
        completion.claimed = None  # the parent holds the claim
        line = describe(outcome) if info or outcome.state != states.SUCCESS else None
        return cls(
            outcome.task_id,
            outcome.name,
            outcome.state,
            completion,
            line,
            outcome.traceback,
            outcome.expected,
            outcome.runtime,
            acked=acked,
        )

    def describe(self) -> str:
        """Return the Celery-style log line."""
        return self.line or f"Task {self.name}[{self.task_id}] {self.state}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Plain tuples instead of three objects' attribute dicts: a child
        # sends one report per task, so this is on every task's path.
        completion = self.completion
        row = completion.result
        return (
            _rebuild_report,
            (
                _report_values(self),
                _completion_values(completion),
                None if row is None else _row_values(row),
            ),
        )


#: The fields sent as values; ``completion`` (and its ``result``) travel
#: separately.
_REPORT_FIELDS = tuple(
    f.name for f in dataclasses.fields(Report) if f.name != "completion"
)
_COMPLETION_FIELDS = tuple(
    f.name for f in dataclasses.fields(Completion) if f.name != "result"
)
_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(ResultRow))
_report_values = operator.attrgetter(*_REPORT_FIELDS)
_completion_values = operator.attrgetter(*_COMPLETION_FIELDS)
_row_values = operator.attrgetter(*_ROW_FIELDS)
_new = object.__new__
_set = object.__setattr__


def _rebuild_report(
    values: tuple[Any, ...],
    completion_values: tuple[Any, ...],
    row_values: tuple[Any, ...] | None,
) -> Report:
    """Unpickle a :class:`Report` (see ``Report.__reduce__``).

    Every field is given, so the objects are filled in directly, without
    their dataclass constructors.
    """
    fields = dict(zip(_COMPLETION_FIELDS, completion_values, strict=True))
    if row_values is None:
        fields["result"] = None
    else:
        row = _new(ResultRow)
        _set(row, "__dict__", dict(zip(_ROW_FIELDS, row_values, strict=True)))
        fields["result"] = row
    completion = _new(Completion)
    _set(completion, "__dict__", fields)
    report_fields = dict(zip(_REPORT_FIELDS, values, strict=True))
    report_fields["completion"] = completion
    report = _new(Report)
    _set(report, "__dict__", report_fields)
    return report
