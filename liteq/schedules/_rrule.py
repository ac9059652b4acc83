"""dateutil rrule plumbing for :class:`liteq.schedules.rrule`."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Any

from dateutil import rrule as _du

from ._walltime import UTC

# Fixed start for rules without DTSTART: results do not depend on when the
# schedule was built, and minute/second default to 0 (dateutil copies them
# from dtstart when BYMINUTE/BYSECOND are absent).
_RRULE_EPOCH = datetime(2000, 1, 1)
_UNTIL_UTC = re.compile(r"UNTIL=\d{8}T\d{6}Z", re.IGNORECASE)
_SUBDAY_UNIT = {_du.HOURLY: 3600, _du.MINUTELY: 60, _du.SECONDLY: 1}


def _get(rule: _du.rrule, name: str) -> Any:
    # dateutil keeps the normalised rule only in private attributes.
    return getattr(rule, name)


def _rule_text(rule: _du.rrule) -> str:
    lines = [ln for ln in str(rule).splitlines() if ln.upper().startswith("RRULE:")]
    text = lines[0] if lines else str(rule)
    until = _get(rule, "_until")
    if until is not None and until.tzinfo is not None:
        # str() drops the zone of UNTIL; RFC 5545 wants it in UTC.
        text = re.sub(
            r"UNTIL=\d{8}T\d{6}",
            until.astimezone(UTC).strftime("UNTIL=%Y%m%dT%H%M%SZ"),
            text,
        )
    return text


def _parse_rule(text: str) -> _du.rrule:
    if not text:
        raise ValueError("rrule: empty rule")
    has_dtstart = "DTSTART" in text.upper()
    default = (
        _RRULE_EPOCH.replace(tzinfo=UTC)
        if _UNTIL_UTC.search(text) and not has_dtstart
        else _RRULE_EPOCH
    )
    try:
        parsed = _du.rrulestr(text, dtstart=default, unfold=True)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"rrule: invalid rule {text!r}: {exc}") from exc
    if not isinstance(parsed, _du.rrule):
        raise ValueError(
            f"rrule: only one RRULE (optionally with DTSTART) is supported, got {text!r}"
        )
    return parsed


def _pin(rule: _du.rrule) -> _du.rrule:
    """Return ``rule`` with every by-value explicit, so moving its dtstart
    (see :func:`_advance`) cannot change the defaults dateutil derives from it."""
    weekdays: list[Any] = list(_get(rule, "_byweekday") or ())
    weekdays += [_du.weekday(wd, n) for wd, n in _get(rule, "_bynweekday") or ()]
    monthdays = tuple(_get(rule, "_bymonthday")) + tuple(_get(rule, "_bynmonthday"))
    extra: dict[str, Any] = {
        "bymonth": _get(rule, "_bymonth"),
        "bymonthday": monthdays or None,
        "byweekday": weekdays or None,
    }
    for name in ("byhour", "byminute", "bysecond"):
        value = _get(rule, "_" + name)
        extra[name] = tuple(sorted(value)) if value is not None else None
    return rule.replace(**extra)


def _advance(rule: _du.rrule, wall: datetime) -> _du.rrule:
    """Return an equivalent rule starting at the latest whole period <= ``wall``.

    dateutil iterates from dtstart, which would make every call walk all the
    way from the epoch. Moving dtstart by whole multiples of INTERVAL periods
    keeps the recurrence set (for pinned rules without COUNT) unchanged.
    """
    start: datetime = _get(rule, "_dtstart")
    if _get(rule, "_count") is not None or wall <= start:
        return rule
    freq: int = _get(rule, "_freq")
    interval: int = _get(rule, "_interval")
    if freq == _du.YEARLY:
        steps = (wall.year - start.year) // interval * interval
        new = datetime(start.year + steps, 1, 1)
    elif freq == _du.MONTHLY:
        steps = (
            ((wall.year - start.year) * 12 + wall.month - start.month)
            // interval
            * interval
        )
        index = start.year * 12 + start.month - 1 + steps
        new = datetime(index // 12, index % 12 + 1, 1)
    elif freq == _du.WEEKLY:
        week = start.date() - timedelta(
            days=(start.weekday() - _get(rule, "_wkst")) % 7
        )
        steps = (wall.date() - week).days // 7 // interval * interval
        new = datetime.combine(week + timedelta(weeks=steps), time())
    elif freq == _du.DAILY:
        steps = (wall.date() - start.date()).days // interval * interval
        new = datetime.combine(start.date() + timedelta(days=steps), time())
    else:
        unit = _SUBDAY_UNIT[freq]
        origin = start - timedelta(seconds=(start.minute * 60 + start.second) % unit)
        steps = int((wall - origin).total_seconds()) // unit // interval * interval
        new = origin + timedelta(seconds=steps * unit)
    return rule.replace(dtstart=new) if steps > 0 else rule
