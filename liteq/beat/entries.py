"""Schedule entries: reading ``beat_schedule`` entries, and what a due entry sends.

:func:`make_definition` turns Celery's entry fields into what the store keeps;
:func:`plan` applies an entry's catch-up policy to say which occurrences a
due entry sends and when it is due next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from ..schedules import (
    BaseSchedule,
    clocked,
    crontab,
    maybe_schedule,
    rrule,
    schedule,
    schedule_from_dict,
)
from ..storage.beat_store import SOURCE_CONFIG, Definition, ScheduleRow, dumps
from ..timeutils import from_ts

if TYPE_CHECKING:
    from ..app import Liteq

#: Accepted values of ``catch_up``.
CATCH_UP_POLICIES = ("once", "all", "skip")
#: With ``catch_up="skip"``, an occurrence reached this many seconds late still fires.
SKIP_GRACE = 5.0
#: With ``catch_up="all"``, the most occurrences of one entry sent in one tick.
ALL_LIMIT = 100
#: Keys a ``beat_schedule`` entry may have (Celery's, plus ``catch_up`` and ``tz``).
ENTRY_KEYS = frozenset(
    {"task", "schedule", "args", "kwargs", "options", "relative", "catch_up", "tz"}
)

_STEP_LIMIT = 10_000


@dataclass(frozen=True)
class ScheduleEntry:
    """A stored schedule entry, as ``app.schedules`` returns it.

    Attributes:
        name: The entry's unique name.
        task: Name of the task it sends.
        schedule: The schedule value (its ``tz`` is the zone it runs in).
        args: Positional arguments.
        kwargs: Keyword arguments.
        options: Calling options, including ``queue`` and ``priority`` if set.
        enabled: False once disabled.
        source: ``"config"`` (from ``beat_schedule``) or ``"api"`` (added at runtime).
        catch_up: ``"once"``, ``"all"`` or ``"skip"``.
        last_run_at: Occurrence it last fired for (aware UTC), None if never.
        next_run_at: When it fires next (aware UTC); None: never again.
        total_run_count: How many tasks it has sent.
        last_task_id: Id of the last task it sent.
    """

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    enabled: bool
    source: str
    catch_up: str
    last_run_at: datetime | None
    next_run_at: datetime | None
    total_run_count: int
    last_task_id: str | None

    @classmethod
    def from_row(cls, row: ScheduleRow) -> ScheduleEntry:
        """Build the entry from its stored row."""
        options = dict(row.options)
        if row.queue is not None:
            options["queue"] = row.queue
        if row.priority is not None:
            options["priority"] = row.priority
        return cls(
            name=row.name,
            task=row.task,
            schedule=schedule_from_dict(row.schedule),
            args=tuple(row.args),
            kwargs=dict(row.kwargs),
            options=options,
            enabled=row.enabled,
            source=row.source,
            catch_up=row.catch_up,
            last_run_at=None if row.last_run_at is None else from_ts(row.last_run_at),
            next_run_at=None if row.next_run_at is None else from_ts(row.next_run_at),
            total_run_count=row.total_run_count,
            last_task_id=row.last_task_id,
        )


# -- definitions -------------------------------------------------------------------------
def _in_wall_time(value: BaseSchedule) -> bool:
    if isinstance(value, schedule):
        return value.relative
    return isinstance(value, crontab | rrule | clocked)


def _option_value(name: str, value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, datetime):
        raise ValueError(
            f"option {name!r}: a fixed datetime makes no sense for a repeating "
            "entry; give seconds (expires=60)"
        )
    return value


#: Modules of liteq's own schedule classes (the only ones an entry may use).
_BUILT_IN = frozenset({"liteq.schedules", "liteq.solar"})


def make_definition(
    app: Liteq,
    name: str,
    task: Any,
    value: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    *,
    relative: bool = False,
    catch_up: str | None = None,
    tz: Any = None,
    source: str = SOURCE_CONFIG,
    enabled: bool = True,
    now: datetime,
) -> Definition:
    """Turn one entry (Celery's fields) into what the store keeps.

    The schedule is copied, and a wall-clock schedule without a zone gets the
    app's ``timezone``. ``value`` may be a schedule, a timedelta or seconds, a
    dateutil ``rrule``, a datetime (one-off) or a ``to_dict()`` mapping.

    Returns:
        The definition, with the first due time computed from ``now``.

    Raises:
        ValueError: a bad field (the message names it), arguments or options
            that cannot be stored as JSON, or a message that cannot be built.
        TypeError: a schedule of an unsupported type.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"schedule name must be a non-empty string, got {name!r}")
    task_name = task if isinstance(task, str) else getattr(task, "name", None)
    if not isinstance(task_name, str) or not task_name:
        raise ValueError(f"task must be a task or its name, got {task!r}")
    if isinstance(value, Mapping):
        parsed = schedule_from_dict(value)
    else:
        parsed = maybe_schedule(value, relative=relative)
    if type(parsed).__module__ not in _BUILT_IN:
        # Entries live in the database as to_dict() data: a subclass would come
        # back as its base class, its own is_due() silently gone.
        raise TypeError(
            f"custom schedule class {type(parsed).__name__} cannot be stored: "
            "a schedule is kept in the database as data; use schedule (an "
            "interval), crontab, solar, clocked or rrule"
        )
    parsed = schedule_from_dict(parsed.to_dict())
    if tz is not None:
        parsed.tz = tz
    elif parsed.tz is None and _in_wall_time(parsed):
        parsed.tz = app.timezone
    opts = {k: _option_value(k, v) for k, v in dict(options or {}).items()}
    queue = opts.pop("queue", None)
    priority = opts.pop("priority", None)
    policy = catch_up or opts.pop("catch_up", None) or app.conf.beat_catch_up
    if policy not in CATCH_UP_POLICIES:
        raise ValueError(
            f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {policy!r}"
        )
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ValueError(f"args must be a list or tuple, got {type(args).__name__}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ValueError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    if queue is not None and not isinstance(queue, str):
        raise ValueError(f"queue must be a string, got {queue!r}")
    if priority is not None:
        priority = int(priority)
    arg_list, kwarg_dict = list(args), dict(kwargs or {})
    schedule_dict = parsed.to_dict()
    try:
        digest = hashlib.sha256(
            dumps(
                {
                    "task": task_name,
                    "schedule": schedule_dict,
                    "args": arg_list,
                    "kwargs": kwarg_dict,
                    "options": opts,
                    "queue": queue,
                    "priority": priority,
                    "catch_up": policy,
                }
            ).encode()
        ).hexdigest()
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"arguments and options must be JSON-serializable to be stored: {exc}"
        ) from exc
    try:
        # Build one message now, so a bad option fails here and not at every fire.
        app.build_message(
            task_name, arg_list, kwarg_dict, queue=queue, priority=priority, **opts
        )
    except Exception as exc:
        raise ValueError(
            f"cannot send {task_name!r} with these options: {exc}"
        ) from exc
    return Definition(
        name=name,
        task=task_name,
        schedule=schedule_dict,
        args=arg_list,
        kwargs=kwarg_dict,
        options=opts,
        queue=queue,
        priority=priority,
        catch_up=policy,
        definition_hash=digest,
        next_run_at=first_run_at(parsed, now),
        source=source,
        enabled=enabled,
    )


def periodic_entry(
    app: Liteq,
    schedule: Any,
    sig: Any,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Build the ``beat_schedule`` entry of ``app.add_periodic_task`` (Celery's rules).

    ``args``/``kwargs`` are partial arguments merged into the signature
    (``args`` before its own); ``options`` are added to its options.

    Returns:
        ``(name, entry)``: ``name``, or the signature's ``repr`` by default.

    Raises:
        TypeError: ``sig`` is a workflow (beat sends one task by name), or
            neither a signature nor a task.
    """
    from ..canvas import Signature

    if isinstance(sig, Signature):
        if type(sig) is not Signature:
            raise TypeError(
                f"add_periodic_task sends one task by name, not a {type(sig).__name__}: "
                "call the workflow from a task and schedule that task"
            )
        sig = sig.clone(tuple(args), dict(kwargs or {}))
    elif isinstance(getattr(sig, "name", None), str):
        sig = app.signature(sig.name, tuple(args), dict(kwargs or {}))
    else:
        raise TypeError(
            f"add_periodic_task needs a signature such as task.s(...), got {sig!r}"
        )
    entry = {
        "schedule": schedule,
        "task": sig.name,
        "args": tuple(sig.args),
        "kwargs": dict(sig.kwargs),
        "options": {**sig.options, **(options or {})},
    }
    return name or repr(sig), entry


def definition_from_entry(
    app: Liteq, name: str, entry: Any, now: datetime
) -> Definition:
    """Read one ``beat_schedule`` entry (``{"task", "schedule", "args", ...}``).

    Raises:
        ConfigurationError: the entry is malformed; the message names it.
    """
    try:
        if not isinstance(entry, Mapping):
            raise ValueError(f"must be a dict, got {type(entry).__name__}")
        unknown = set(entry) - ENTRY_KEYS
        if unknown:
            raise ValueError(
                f"unknown keys {sorted(unknown)}; expected some of {sorted(ENTRY_KEYS)}"
            )
        for key in ("task", "schedule"):
            if key not in entry:
                raise ValueError(f"lacks {key!r}")
        return make_definition(
            app,
            name,
            entry["task"],
            entry["schedule"],
            entry.get("args") or (),
            entry.get("kwargs"),
            entry.get("options"),
            relative=bool(entry.get("relative", False)),
            catch_up=entry.get("catch_up"),
            tz=entry.get("tz"),
            source=SOURCE_CONFIG,
            now=now,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"beat_schedule entry {name!r}: {exc}") from exc


def first_run_at(value: BaseSchedule, now: datetime) -> float | None:
    """Return when a new entry is first due (epoch s), or None for never.

    An interval first fires one interval from now, as in Celery; other
    schedules at their next occurrence. A one-off time already past fires at
    once (Celery's ``clocked`` does the same).
    """
    if isinstance(value, clocked):
        return value.clocked_time.timestamp()
    following = value.next_after(now)
    return None if following is None else following.timestamp()


def plan(
    value: BaseSchedule,
    due: datetime,
    now: datetime,
    policy: str,
    limit: int = ALL_LIMIT,
) -> tuple[list[datetime], datetime | None]:
    """Decide what an entry due at ``due`` sends at ``now`` under ``policy``.

    Returns:
        ``(occurrences to send, next due time or None)``; the next due time is
        after ``now`` except with ``"all"`` when more than ``limit`` are missed.
    """
    following: datetime | None
    if isinstance(value, schedule) and not value.relative:
        # Arithmetic keeps the phase of the interval (no drift from tick latency).
        every = value.run_every
        missed = (now - due) // every + 1
        if policy == "all":
            count = min(missed, limit)
            return [due + every * i for i in range(count)], due + every * count
        last, following = due + every * (missed - 1), due + every * missed
        if policy == "skip" and (now - last).total_seconds() > SKIP_GRACE:
            return [], following
        return [last], following
    if policy == "all":
        fires = [due]
        following = value.next_after(due)
        while following is not None and following <= now and len(fires) < limit:
            fires.append(following)
            following = value.next_after(following)
        return fires, following
    last = due
    following = value.next_after(due)
    steps = 0
    while following is not None and following <= now and steps < _STEP_LIMIT:
        last, following = following, value.next_after(following)
        steps += 1
    if following is not None and following <= now:
        following = value.next_after(now)
    if policy == "skip" and (now - last).total_seconds() > SKIP_GRACE:
        return [], following
    return [last], following


def unique_key(name: str, at: datetime) -> str:
    """Return the task unique key of entry ``name``'s occurrence at ``at``."""
    return f"beat:{name}:{at.timestamp():.6f}"
