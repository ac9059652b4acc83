"""Wall-clock plumbing shared by the schedules: zones, naming, DST resolution."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from typing import TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc

_OFFSET_NAME = re.compile(r"^UTC([+-])(\d{2}):(\d{2})$")

#: What a ``tz`` argument may be: a zone name, a tzinfo, or None (not set).
TzSpec: TypeAlias = str | tzinfo | None


def _require_aware(dt: object, what: str = "datetime") -> datetime:
    if not isinstance(dt, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(dt).__name__}")
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {dt.isoformat()}")
    return dt


def _coerce_tz(value: object) -> tzinfo | None:
    if value is None or isinstance(value, tzinfo):
        return value
    if not isinstance(value, str):
        raise TypeError(f"tz must be a zone name or tzinfo, got {type(value).__name__}")
    match = _OFFSET_NAME.match(value)
    if match:
        sign = -1 if match.group(1) == "-" else 1
        offset = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return UTC if not offset else timezone(sign * offset)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc


def _tz_name(tz: tzinfo | None) -> str | None:
    """Return a name that :func:`_coerce_tz` maps back to ``tz``."""
    if tz is None:
        return None
    if isinstance(tz, ZoneInfo):
        return tz.key
    if isinstance(tz, timezone):
        offset = tz.utcoffset(None)
        if not offset:
            return "UTC"
        sign = "-" if offset < timedelta(0) else "+"
        minutes = abs(int(offset.total_seconds())) // 60
        return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    name = getattr(tz, "key", None) or getattr(tz, "zone", None)
    if isinstance(name, str):
        return name
    raise ValueError(
        f"cannot name time zone {tz!r}; pass a zone name such as 'Europe/Berlin'"
    )


def _bisect_seconds(lo: int, hi: int, passed: Callable[[int], bool]) -> int:
    """Return the smallest integer in (lo, hi] for which ``passed`` holds.

    ``passed`` must be False at ``lo``, True at ``hi`` and monotonic between;
    zone transitions fall on whole seconds, so this finds them exactly.
    """
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passed(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _local_wall(dt: datetime, tz: tzinfo) -> datetime:
    return dt.astimezone(tz).replace(tzinfo=None, fold=0)


def _resolve(wall: datetime, tz: tzinfo) -> datetime:
    """Map a naive wall time in ``tz`` to its fire instant (aware UTC).

    Returns the first occurrence of an ambiguous time, and the end of the gap
    for a time that does not exist.
    """
    if isinstance(tz, timezone):
        return wall.replace(tzinfo=tz).astimezone(UTC)
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # Inside a gap: the fire instant is the first one whose wall time has
    # passed ``wall``, i.e. the end of the gap.
    hi = math.floor(instant.timestamp())
    end = _bisect_seconds(
        hi - 86400,
        hi,
        lambda t: datetime.fromtimestamp(t, tz).replace(tzinfo=None) > wall,
    )
    return datetime.fromtimestamp(end, UTC)
