"""Aware-UTC time helpers; stored times are epoch float seconds."""

from __future__ import annotations

import contextlib
import functools
import os
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc


def to_ts(value: datetime) -> float:
    """Return epoch seconds for an aware datetime (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def from_ts(ts: float) -> datetime:
    """Return the aware UTC datetime for epoch seconds."""
    return datetime.fromtimestamp(ts, UTC)


def to_utc(value: datetime | str, assume: tzinfo | None = None) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    A string is read as ISO 8601 (Celery's ``eta="2030-01-01T00:00:00+00:00"``);
    a naive value, datetime or string, is taken to be in ``assume`` (or UTC).

    Raises:
        ValueError: a string that is not an ISO 8601 date and time.
        OverflowError: a time beyond datetime's range once in UTC.
    """
    if isinstance(value, str):
        value = parse_iso(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=assume or UTC)
    return value.astimezone(UTC)


def maybe_timedelta(value: float | timedelta) -> timedelta:
    """Return ``value`` as a timedelta; numbers are seconds."""
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=float(value))


def seconds(value: float | timedelta | None) -> float | None:
    """Return ``value`` in float seconds (None stays None)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def parse_iso(value: str) -> datetime:
    """Parse an ISO 8601 string into a datetime (aware if it carries an offset)."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        from dateutil.parser import isoparse

        return isoparse(value)


@lru_cache(maxsize=64)
def get_timezone(name: str | None) -> tzinfo:
    """Return the tzinfo for an IANA zone name; None or "UTC" gives UTC.

    Raises:
        ValueError: the zone is unknown.
    """
    if name is None or name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@functools.cache
def local_timezone() -> tzinfo:
    """This machine's time zone, by its IANA name when one can be found.

    Looked up in ``TZ``, ``/etc/timezone`` and the ``/etc/localtime`` link;
    failing those, the current offset from UTC (which knows no DST).
    """
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        with open("/etc/timezone", encoding="utf-8") as handle:
            candidates.append(handle.read().strip())
    with contextlib.suppress(OSError):
        target = os.path.realpath("/etc/localtime")
        if "zoneinfo" + os.sep in target:
            candidates.append(target.split("zoneinfo" + os.sep, 1)[1])
    for name in candidates:
        if name:
            with contextlib.suppress(ValueError):
                return get_timezone(name)
    offset = datetime.now().astimezone().utcoffset() or timedelta(0)
    return timezone(offset) if offset else UTC


def isoformat(value: datetime | date | None) -> str | None:
    """Return an ISO string for a datetime or date, None for None."""
    return None if value is None else value.isoformat()


__all__ = [
    "UTC",
    "from_ts",
    "get_timezone",
    "isoformat",
    "local_timezone",
    "maybe_timedelta",
    "parse_iso",
    "seconds",
    "to_ts",
    "to_utc",
]
