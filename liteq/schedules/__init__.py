"""Schedule values for beat: interval, crontab, clocked, rrule and solar.

Every schedule is a plain value: it holds no app and reads no global clock.
The one question beat asks is :meth:`BaseSchedule.next_after`, "when is the
first fire strictly after this instant?", answered as an aware UTC datetime
(or ``None`` when the schedule will never fire again). ``is_due`` and
``remaining_estimate`` are Celery-compatible wrappers around it.

Wall-clock schedules (crontab, rrule, naive clocked times and the rounding of
relative intervals) are evaluated in the schedule's ``tz`` and share one rule
for daylight-saving changes:

* a wall-clock time that does not exist (spring-forward gap) fires once, at
  the first instant after the gap;
* a wall-clock time that occurs twice (fall-back overlap) fires once, at its
  first occurrence.

Catch-up: ``next_after(last_run_at)`` only ever yields the *first* missed
fire, so ``is_due`` after downtime is due once and the following fire is
computed from "now". Beat's per-entry ``catch_up`` policies ("once", "all",
"skip") are built on ``next_after`` in :mod:`liteq.beat`.

The parsing and zone plumbing lives in private modules: ``_cron`` (crontab
fields), ``_rrule`` (dateutil rules) and ``_walltime`` (zones and DST).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right
from calendar import monthrange
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from dateutil import rrule as _du

from ._cron import _CRON_ALIASES, _expand_spec, _spec_text
from ._rrule import _RRULE_EPOCH, _advance, _get, _parse_rule, _pin, _rule_text
from ._walltime import (
    UTC,
    TzSpec,
    _coerce_tz,
    _local_wall,
    _require_aware,
    _resolve,
    _tz_name,
)

if TYPE_CHECKING:
    from liteq.solar import solar

__all__ = [
    "NEVER",
    "BaseSchedule",
    "TzSpec",
    "clocked",
    "crontab",
    "maybe_schedule",
    "rrule",
    "schedstate",
    "schedule",
    "schedule_from_dict",
    "solar",
]

#: Seconds reported by ``is_due`` (and ``remaining_estimate``) when a schedule
#: will never fire again. Finite on purpose: callers sleep on this number.
NEVER: float = 365.0 * 86400.0

_MINUTE = timedelta(minutes=1)


class schedstate(NamedTuple):
    """Celery's answer to "is it due?".

    Attributes:
        is_due: whether the entry should run now.
        next: seconds until beat should check this entry again.
    """

    is_due: bool
    next: float


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BaseSchedule(ABC):
    """Common behaviour of every schedule value.

    Args:
        tz: zone the schedule is evaluated in (name or tzinfo). ``None`` means
            "not set yet": beat assigns the app's zone through the settable
            :attr:`tz` attribute; an unset zone evaluates in UTC.
        nowfun: returns the current aware time; defaults to UTC now.

    Raises:
        ValueError: unknown zone name.
        TypeError: ``tz`` is neither a string nor a tzinfo.
    """

    type_name: ClassVar[str]

    def __init__(
        self,
        tz: TzSpec = None,
        nowfun: Callable[[], datetime] | None = None,
    ) -> None:
        self._tzinfo: tzinfo | None = None
        self.tz = tz
        self.nowfun: Callable[[], datetime] = nowfun if nowfun is not None else _utcnow

    @property
    def tz(self) -> tzinfo | None:
        """The evaluation zone as a tzinfo, or ``None`` when not set."""
        return self._tzinfo

    @tz.setter
    def tz(self, value: TzSpec) -> None:
        self._tzinfo = _coerce_tz(value)

    def _zone(self) -> tzinfo:
        return self._tzinfo if self._tzinfo is not None else UTC

    def _tz_key(self) -> object:
        try:
            return _tz_name(self._tzinfo)
        except ValueError:
            return self._tzinfo

    def now(self) -> datetime:
        """Return ``nowfun()``.

        Raises:
            ValueError: ``nowfun`` returned a naive datetime.
        """
        return _require_aware(self.nowfun(), "nowfun()")

    @abstractmethod
    def next_after(self, dt: datetime) -> datetime | None:
        """Return the first fire time strictly after ``dt``.

        Args:
            dt: an aware datetime in any zone.

        Returns:
            An aware UTC datetime, or ``None`` when the schedule never fires
            again.

        Raises:
            ValueError: ``dt`` is naive.
        """

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Celery-compatible due check against ``self.now()``.

        Args:
            last_run_at: aware time of the last run.

        Returns:
            ``(True, seconds until the fire after now)`` when the fire following
            ``last_run_at`` has come, else ``(False, seconds until it comes)``.
            When there is no further fire the seconds are :data:`NEVER`
            (Celery returns ``None`` there; a finite number is safer to sleep
            on). Beat should retire an entry whose ``next_after`` is ``None``.

        Raises:
            ValueError: ``last_run_at`` or ``now()`` is naive.
        """
        now = self.now()
        pending = self.next_after(last_run_at)
        if pending is None:
            return schedstate(False, NEVER)
        if pending <= now:
            following = self.next_after(now)
            if following is None:
                return schedstate(True, NEVER)
            return schedstate(True, (following - now).total_seconds())
        return schedstate(False, (pending - now).total_seconds())

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Return the time from now until the fire following ``last_run_at``.

        Returns:
            A timedelta, negative when overdue; :data:`NEVER` seconds when the
            schedule never fires again.

        Raises:
            ValueError: ``last_run_at`` or ``now()`` is naive.
        """
        pending = self.next_after(last_run_at)
        if pending is None:
            return timedelta(seconds=NEVER)
        return pending - self.now()

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe definition; :func:`schedule_from_dict` inverts it.

        Raises:
            ValueError: ``tz`` is a tzinfo without a recoverable name.
        """

    @abstractmethod
    def _key(self) -> tuple[Any, ...]: ...

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseSchedule) or type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))


class schedule(BaseSchedule):
    """Fixed interval measured from the last run (Celery's ``schedule``).

    Args:
        run_every: the interval, as a timedelta or seconds.
        relative: round each fire down to the resolution of the interval
            (days, hours, minutes or whole seconds) in ``tz`` wall time, as
            Celery does, so e.g. an hourly schedule fires on the hour.
        tz: see :class:`BaseSchedule`.
        nowfun: see :class:`BaseSchedule`.

    Raises:
        ValueError: the interval is zero, negative or not finite.
        TypeError: ``run_every`` is not a timedelta or number.
    """

    type_name = "interval"

    def __init__(
        self,
        run_every: timedelta | float,
        relative: bool = False,
        tz: TzSpec = None,
        nowfun: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(tz, nowfun)
        self.run_every = _as_interval(run_every)
        self.relative = bool(relative)

    @property
    def seconds(self) -> float:
        """The interval in seconds."""
        return self.run_every.total_seconds()

    def next_after(self, dt: datetime) -> datetime | None:
        """See :meth:`BaseSchedule.next_after`; ``None`` only on overflow."""
        _require_aware(dt)
        try:
            fire = dt.astimezone(UTC) + self.run_every
        except OverflowError:
            return None
        if not self.relative:
            return fire
        tz = self._zone()
        wall = fire.astimezone(tz).replace(tzinfo=None, microsecond=0)
        if self.run_every >= timedelta(days=1):
            wall = wall.replace(hour=0, minute=0, second=0)
        elif self.run_every >= timedelta(hours=1):
            wall = wall.replace(minute=0, second=0)
        elif self.run_every >= _MINUTE:
            wall = wall.replace(second=0)
        rounded = _resolve(wall, tz)
        # Sub-second intervals can round back onto ``dt``; never fire twice.
        return rounded if rounded > dt else fire

    def to_dict(self) -> dict[str, Any]:
        """See :meth:`BaseSchedule.to_dict`."""
        return {
            "type": self.type_name,
            "every": self.seconds,
            "relative": self.relative,
            "tz": _tz_name(self.tz),
        }

    def _key(self) -> tuple[Any, ...]:
        return (self.run_every, self.relative, self._tz_key())

    def __repr__(self) -> str:
        return f"<freq: {_humanize(self.seconds)}>"


def _as_interval(value: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, timedelta | int | float):
        raise TypeError(
            f"run_every must be a timedelta or seconds, got {type(value).__name__}"
        )
    if not isinstance(value, timedelta):
        if not math.isfinite(value):
            raise ValueError(f"run_every must be finite, got {value!r}")
        value = timedelta(seconds=value)
    if value <= timedelta(0):
        raise ValueError(f"run_every must be positive, got {value!r}")
    return value


def _humanize(seconds: float) -> str:
    for unit, size in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size:
            amount = seconds / size
            return f"{amount:.2f} {unit}{'' if amount == 1 else 's'}"
    return f"{seconds:.2f} second{'' if seconds == 1 else 's'}"


class crontab(BaseSchedule):
    """Cron-like schedule with Celery's field syntax and semantics.

    Each field takes an int, an iterable of ints/strings, or a string of
    comma-separated parts: ``"*"``, ``"5"``, ``"1-5"``, ``"*/15"``,
    ``"1-30/2"``, ``"10/20"`` (10 to the end, every 20). ``day_of_week`` runs
    0-6 with 0 = Sunday, also accepts 7 for Sunday and names (``"mon-fri"``,
    ``"sun"``, ``"monday"``); ranges wrap (``"fri-mon"``). ``month_of_year``
    also accepts month names (``"jan"``), an extension over Celery.

    Unlike cron, which fires when *either* day-of-month or day-of-week matches,
    this follows Celery: ``day_of_week`` AND ``day_of_month`` AND
    ``month_of_year`` must all match (``day_of_month=13, day_of_week="fri"``
    means Friday the 13th). A combination no calendar date satisfies (e.g.
    30 February) never fires: ``next_after`` returns ``None``.

    Fields are matched against wall-clock time in ``tz``, at whole minutes.
    Daylight-saving changes:

    * a matching wall time that does not exist (spring-forward gap) fires once,
      at the first instant after the gap: a daily 02:30 in Europe/Berlin fires
      at 03:00 CEST on the spring change day; several matching minutes inside
      one gap therefore fire together, once;
    * a matching wall time that occurs twice (fall-back overlap) fires once, at
      its first occurrence: a daily 02:30 fires at 02:30 CEST, not again at
      02:30 CET. Hourly or minutely entries fire once per distinct wall-clock
      minute, so nothing fires during the second pass of the repeated hour.

    Attributes:
        minute, hour, day_of_week, day_of_month, month_of_year: the expanded
            sets of ints (day_of_week with 0 = Sunday).

    Raises:
        ValueError: a field value is malformed or out of range; the message
            names the field, e.g. ``crontab: minute: 61 is out of range 0-59``.
        TypeError: a field has an unsupported type.
    """

    type_name = "crontab"
    _FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")

    def __init__(
        self,
        minute: object = "*",
        hour: object = "*",
        day_of_week: object = "*",
        day_of_month: object = "*",
        month_of_year: object = "*",
        tz: TzSpec = None,
        nowfun: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(tz, nowfun)
        specs = dict(
            zip(
                self._FIELDS,
                (minute, hour, day_of_week, day_of_month, month_of_year),
                strict=True,
            )
        )
        expanded = {name: _expand_spec(name, spec) for name, spec in specs.items()}
        self._orig = {
            name: _spec_text(specs[name], expanded[name]) for name in self._FIELDS
        }
        self.minute: set[int] = expanded["minute"]
        self.hour: set[int] = expanded["hour"]
        self.day_of_week: set[int] = expanded["day_of_week"]
        self.day_of_month: set[int] = expanded["day_of_month"]
        self.month_of_year: set[int] = expanded["month_of_year"]
        self._minutes = sorted(self.minute)
        self._hours = sorted(self.hour)
        self._days = sorted(self.day_of_month)
        self._months = sorted(self.month_of_year)
        # Feb counts 29 days here: a leap year always comes round.
        self._possible = any(
            day <= (29 if month == 2 else monthrange(2001, month)[1])
            for month in self._months
            for day in self._days
        )

    @classmethod
    def from_string(
        cls,
        line: str,
        tz: TzSpec = None,
        nowfun: Callable[[], datetime] | None = None,
    ) -> crontab:
        """Parse a standard five-field cron line.

        Args:
            line: ``"minute hour day_of_month month day_of_week"`` (cron's
                order), or an alias such as ``"@daily"`` or ``"@hourly"``.
            tz: see :class:`BaseSchedule`.
            nowfun: see :class:`BaseSchedule`.

        Returns:
            The equivalent crontab (still with Celery's AND day semantics).

        Raises:
            ValueError: wrong number of fields, unknown alias or bad field.
        """
        text = line.strip()
        if text.startswith("@"):
            if text.lower() not in _CRON_ALIASES:
                raise ValueError(
                    f"crontab: unknown alias {text!r}; expected one of {sorted(_CRON_ALIASES)}"
                )
            text = _CRON_ALIASES[text.lower()]
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(
                f"crontab: expected 5 fields (minute hour day_of_month month day_of_week), got {len(fields)} in {line!r}"
            )
        minute, hour, dom, month, dow = fields
        return cls(minute, hour, dow, dom, month, tz=tz, nowfun=nowfun)

    def _day_ok(self, day: date) -> bool:
        return (
            day.month in self.month_of_year
            and day.day in self.day_of_month
            and (day.weekday() + 1) % 7 in self.day_of_week
        )

    def _time_from(self, hour: int, minute: int) -> time | None:
        if hour in self.hour:
            i = bisect_left(self._minutes, minute)
            if i < len(self._minutes):
                return time(hour, self._minutes[i])
        j = bisect_right(self._hours, hour)
        return time(self._hours[j], self._minutes[0]) if j < len(self._hours) else None

    def _day_from(self, day: date) -> date | None:
        if not self._possible:
            return None
        year, month, first = day.year, day.month, day.day
        # The Gregorian calendar repeats every 400 years, so this is exhaustive.
        for _ in range(12 * 401):
            if month in self.month_of_year:
                length = monthrange(year, month)[1]
                for dom in self._days[bisect_left(self._days, first) :]:
                    if dom > length:
                        break
                    candidate = date(year, month, dom)
                    if (candidate.weekday() + 1) % 7 in self.day_of_week:
                        return candidate
            month, first = month + 1, 1
            if month > 12:
                month, year = 1, year + 1
                if year > 9999:
                    return None
        return None  # pragma: no cover - unreachable when _possible

    def _match_from(self, start: datetime) -> datetime | None:
        """Return the first matching naive wall minute at or after ``start``."""
        day = start.date()
        if self._day_ok(day):
            at = self._time_from(start.hour, start.minute)
            if at is not None:
                return datetime.combine(day, at)
        if day == date.max:
            return None
        following = self._day_from(day + timedelta(days=1))
        if following is None:
            return None
        return datetime(
            following.year,
            following.month,
            following.day,
            self._hours[0],
            self._minutes[0],
        )

    def next_after(self, dt: datetime) -> datetime | None:
        """See :meth:`BaseSchedule.next_after` and the class DST rules."""
        _require_aware(dt)
        tz = self._zone()
        start = _local_wall(dt, tz).replace(second=0, microsecond=0) + _MINUTE
        while True:
            candidate = self._match_from(start)
            if candidate is None:
                return None
            fire = _resolve(candidate, tz)
            if fire > dt:
                return fire
            # dt is in the second pass of a fall-back overlap, and this wall
            # time already fired during the first pass.
            start = candidate + _MINUTE

    def to_dict(self) -> dict[str, Any]:
        """See :meth:`BaseSchedule.to_dict`."""
        return {"type": self.type_name, **self._orig, "tz": _tz_name(self.tz)}

    def _key(self) -> tuple[Any, ...]:
        return (
            frozenset(self.minute),
            frozenset(self.hour),
            frozenset(self.day_of_week),
            frozenset(self.day_of_month),
            frozenset(self.month_of_year),
            self._tz_key(),
        )

    def __repr__(self) -> str:
        o = self._orig
        return (
            f"<crontab: {o['minute']} {o['hour']} {o['day_of_month']} "
            f"{o['month_of_year']} {o['day_of_week']} (m/h/dM/MY/d)>"
        )


class clocked(BaseSchedule):
    """One-off schedule firing once at ``clocked_time``.

    Args:
        clocked_time: when to fire; a naive value is wall time in ``tz`` (UTC
            while ``tz`` is unset), resolved with the crontab DST rules.
        tz: see :class:`BaseSchedule`.
        nowfun: see :class:`BaseSchedule`.

    Raises:
        TypeError: ``clocked_time`` is not a datetime.
    """

    type_name = "clocked"

    def __init__(
        self,
        clocked_time: datetime,
        tz: TzSpec = None,
        nowfun: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(tz, nowfun)
        if not isinstance(clocked_time, datetime):
            raise TypeError(
                f"clocked_time must be a datetime, got {type(clocked_time).__name__}"
            )
        self._clocked_time = clocked_time

    @property
    def clocked_time(self) -> datetime:
        """The fire instant as an aware UTC datetime."""
        value = self._clocked_time
        if value.tzinfo is None or value.utcoffset() is None:
            return _resolve(value.replace(tzinfo=None), self._zone())
        return value.astimezone(UTC)

    def next_after(self, dt: datetime) -> datetime | None:
        """Return the fire instant if strictly after ``dt``, else ``None``.

        Raises:
            ValueError: ``dt`` is naive.
        """
        _require_aware(dt)
        fire = self.clocked_time
        return fire if fire > dt else None

    def to_dict(self) -> dict[str, Any]:
        """See :meth:`BaseSchedule.to_dict`."""
        return {
            "type": self.type_name,
            "clocked_time": self._clocked_time.isoformat(),
            "tz": _tz_name(self.tz),
        }

    def _key(self) -> tuple[Any, ...]:
        value = self._clocked_time
        naive = value.tzinfo is None or value.utcoffset() is None
        return (
            naive,
            value.replace(tzinfo=None) if naive else value.astimezone(UTC),
            self._tz_key(),
        )

    def __repr__(self) -> str:
        return f"<clocked: {self._clocked_time.isoformat()}>"


class rrule(BaseSchedule):
    """RFC 5545 recurrence rule evaluated as wall-clock time in ``tz``.

    ``BYHOUR=9`` means 09:00 local on every day, across DST changes; times in
    a spring-forward gap or fall-back overlap follow the crontab rules (fire at
    the end of the gap; fire at the first occurrence only).

    Args:
        rule: an RRULE string (``"FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9"``, with or
            without ``RRULE:`` and an optional ``DTSTART...`` line) or a
            ``dateutil.rrule.rrule`` (its own dtstart is kept).
        dtstart: overrides the rule's start. Naive values are wall time in
            ``tz``, aware ones are converted to it. Without any start a fixed
            epoch, 2000-01-01 00:00 local, is used, so unspecified minutes and
            seconds are 0. COUNT counts from that start, so give a dtstart
            with COUNT.
        tz: see :class:`BaseSchedule`.
        nowfun: see :class:`BaseSchedule`.

    Raises:
        ValueError: the rule does not parse, or holds more than one RRULE.
        TypeError: ``rule`` is neither a string nor a dateutil rrule.
    """

    type_name = "rrule"

    def __init__(
        self,
        rule: str | _du.rrule,
        dtstart: datetime | None = None,
        tz: TzSpec = None,
        nowfun: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(tz, nowfun)
        if dtstart is not None and not isinstance(dtstart, datetime):
            raise TypeError(f"dtstart must be a datetime, got {type(dtstart).__name__}")
        start = dtstart
        if isinstance(rule, _du.rrule):
            self.rule = _rule_text(rule)
            self.dtstart = dtstart if dtstart is not None else _get(rule, "_dtstart")
            start = self.dtstart
            self._base = _parse_rule(self.rule)
        elif isinstance(rule, str):
            self.rule = rule.strip()
            self.dtstart = dtstart
            self._base = _parse_rule(self.rule)
            if start is None and "DTSTART" in self.rule.upper():
                start = _get(self._base, "_dtstart")
        else:
            raise TypeError(
                f"rule must be an RRULE string or dateutil rrule, got {type(rule).__name__}"
            )
        self._start: datetime | None = start
        self._local: dict[object, _du.rrule] = {}
        self._local_rule(self._zone())  # surface inconsistent rules now

    def _local_rule(self, tz: tzinfo) -> _du.rrule:
        cached = self._local.get(tz)
        if cached is not None:
            return cached
        start = self._start
        if start is None:
            wall_start = _RRULE_EPOCH
        elif start.tzinfo is None or start.utcoffset() is None:
            wall_start = start.replace(tzinfo=None)
        else:
            wall_start = start.astimezone(tz).replace(tzinfo=None)
        until = _get(self._base, "_until")
        if until is not None and until.tzinfo is not None:
            until = until.astimezone(tz).replace(tzinfo=None)
        try:
            local = _pin(self._base.replace(dtstart=wall_start, until=until))
        except ValueError as exc:
            raise ValueError(f"rrule: invalid rule {self.rule!r}: {exc}") from exc
        self._local[tz] = local
        return local

    def next_after(self, dt: datetime) -> datetime | None:
        """See :meth:`BaseSchedule.next_after`; ``None`` once exhausted."""
        _require_aware(dt)
        tz = self._zone()
        wall = _local_wall(dt, tz)
        local = _advance(self._local_rule(tz), wall)
        while True:
            candidate = local.after(wall)
            if candidate is None:
                return None
            fire = _resolve(candidate, tz)
            if fire > dt:
                return fire
            wall = candidate  # already fired in the first pass of an overlap

    def to_dict(self) -> dict[str, Any]:
        """See :meth:`BaseSchedule.to_dict`."""
        return {
            "type": self.type_name,
            "rule": self.rule,
            "dtstart": None if self.dtstart is None else self.dtstart.isoformat(),
            "tz": _tz_name(self.tz),
        }

    def _key(self) -> tuple[Any, ...]:
        start = self.dtstart
        if (
            start is not None
            and start.tzinfo is not None
            and start.utcoffset() is not None
        ):
            start = start.astimezone(UTC)
        return (self.rule, start, self._tz_key())

    def __repr__(self) -> str:
        start = "" if self.dtstart is None else f" from {self.dtstart.isoformat()}"
        return f"<rrule: {self.rule}{start}>"


def maybe_schedule(value: object, relative: bool = False) -> BaseSchedule:
    """Coerce a schedule-like value into a schedule.

    Args:
        value: a timedelta or int/float seconds (interval), a schedule (returned
            as is), a ``dateutil.rrule.rrule`` or a datetime (one-off).
        relative: passed to :class:`schedule` for intervals.

    Returns:
        The schedule value.

    Raises:
        TypeError: any other type; the message names it.
        ValueError: a non-positive interval.
    """
    if isinstance(value, BaseSchedule):
        return value
    if isinstance(value, timedelta | int | float) and not isinstance(value, bool):
        return schedule(value, relative=relative)
    if isinstance(value, datetime):
        return clocked(value)
    if isinstance(value, _du.rrule):
        return rrule(value)
    raise TypeError(f"cannot make a schedule from {type(value).__name__}: {value!r}")


def schedule_from_dict(data: Mapping[str, Any]) -> BaseSchedule:
    """Rebuild a schedule from :meth:`BaseSchedule.to_dict` output.

    Returns:
        A schedule equal to the one that produced ``data``.

    Raises:
        TypeError: ``data`` is not a mapping, or a value has the wrong type.
        ValueError: unknown ``type``, a missing key or a bad value.
    """
    if not isinstance(data, Mapping):
        raise TypeError(
            f"schedule definition must be a mapping, got {type(data).__name__}"
        )
    kind = data.get("type")
    tz = data.get("tz")
    try:
        if kind == "interval":
            return schedule(
                timedelta(seconds=data["every"]),
                relative=bool(data.get("relative", False)),
                tz=tz,
            )
        if kind == "crontab":
            fields = {name: data[name] for name in crontab._FIELDS}
            return crontab(**fields, tz=tz)
        if kind == "clocked":
            return clocked(datetime.fromisoformat(data["clocked_time"]), tz=tz)
        if kind == "rrule":
            start = data.get("dtstart")
            return rrule(
                data["rule"],
                dtstart=None if start is None else datetime.fromisoformat(start),
                tz=tz,
            )
        if kind == "solar":
            from liteq.solar import solar

            return solar(data["event"], data["lat"], data["lon"], tz=tz)
    except KeyError as exc:
        raise ValueError(f"{kind} schedule definition lacks {exc.args[0]!r}") from exc
    raise ValueError(
        f"unknown schedule type {kind!r}; expected interval, crontab, clocked, rrule or solar"
    )


def __getattr__(name: str) -> Any:
    # liteq.solar subclasses BaseSchedule, so it is imported on first use
    # rather than at import time (which would be circular).
    if name == "solar":
        from liteq.solar import solar

        return solar
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
