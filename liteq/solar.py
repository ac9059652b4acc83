"""Sun-event schedule computed with the NOAA solar equations (no ephemeris).

The sun's declination and the equation of time come from the low-precision
NOAA series (good to well under a minute for event times between 1900 and
2100). For one UTC day the transit (solar noon) follows from the longitude and
the equation of time; a rise or set event lies one hour angle before or after
it, where the hour angle is the one at which the sun's centre crosses the
event's altitude. Each estimate is refined by recomputing the sun's position
at the estimated instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from liteq.schedules import BaseSchedule
from liteq.schedules._walltime import TzSpec, _require_aware, _tz_name

__all__ = ["SOLAR_EVENTS", "next_event_after", "solar"]

#: Event name -> (kind, altitude of the sun's centre in degrees). Sunrise and
#: sunset use -0.833 deg: the upper limb touching the horizon once refraction
#: is allowed for, as Celery does.
SOLAR_EVENTS: dict[str, tuple[str, float]] = {
    "dawn_astronomical": ("rise", -18.0),
    "dawn_nautical": ("rise", -12.0),
    "dawn_civil": ("rise", -6.0),
    "sunrise": ("rise", -0.833),
    "solar_noon": ("noon", 0.0),
    "sunset": ("set", -0.833),
    "dusk_civil": ("set", -6.0),
    "dusk_nautical": ("set", -12.0),
    "dusk_astronomical": ("set", -18.0),
}

#: How far ahead :func:`next_event_after` looks before giving up (polar
#: regions can go months without a given event).
HORIZON_DAYS = 367

_DAY = 86400.0


def _sun(ts: float) -> tuple[float, float]:
    """Return (declination in radians, equation of time in minutes) at ``ts``."""
    jc = (ts / _DAY + 2440587.5 - 2451545.0) / 36525.0  # Julian centuries since J2000
    mean_long = math.radians((280.46646 + jc * (36000.76983 + 0.0003032 * jc)) % 360.0)
    anomaly = math.radians(357.52911 + jc * (35999.05029 - 0.0001537 * jc))
    ecc = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    centre = (
        math.sin(anomaly) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
        + math.sin(2 * anomaly) * (0.019993 - 0.000101 * jc)
        + math.sin(3 * anomaly) * 0.000289
    )
    node = math.radians(125.04 - 1934.136 * jc)
    apparent_long = mean_long + math.radians(
        centre - 0.00569 - 0.00478 * math.sin(node)
    )
    arcsec = 21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))
    obliquity = math.radians(
        23.0 + (26.0 + arcsec / 60.0) / 60.0 + 0.00256 * math.cos(node)
    )
    declination = math.asin(math.sin(obliquity) * math.sin(apparent_long))
    y = math.tan(obliquity / 2) ** 2
    eot = (
        y * math.sin(2 * mean_long)
        - 2 * ecc * math.sin(anomaly)
        + 4 * ecc * y * math.sin(anomaly) * math.cos(2 * mean_long)
        - 0.5 * y * y * math.sin(4 * mean_long)
        - 1.25 * ecc * ecc * math.sin(2 * anomaly)
    )
    return declination, 4.0 * math.degrees(eot)


def _event_on_day(
    day: int, kind: str, altitude: float, lat: float, lon: float
) -> float | None:
    """Return the event's Unix time for UTC day number ``day``, or ``None``.

    The day's events sit around its transit, which is near 12:00 local mean
    time; ``None`` means the sun does not cross ``altitude`` that day.
    """
    midnight = day * _DAY
    sin_lat, cos_lat = math.sin(math.radians(lat)), math.cos(math.radians(lat))
    sin_alt = math.sin(math.radians(altitude))
    estimate = midnight + _DAY / 2 - lon * 240.0
    for _ in range(3):
        declination, eot = _sun(estimate)
        transit = midnight + (720.0 - 4.0 * lon - eot) * 60.0
        if kind == "noon":
            estimate = transit
            continue
        # cos(lat) never reaches 0.0 in floating point, even at the poles.
        cos_hour = (sin_alt - sin_lat * math.sin(declination)) / (
            cos_lat * math.cos(declination)
        )
        if not -1.0 <= cos_hour <= 1.0:
            return None
        half_arc = math.degrees(math.acos(cos_hour)) * 240.0  # 1 degree = 4 minutes
        estimate = transit - half_arc if kind == "rise" else transit + half_arc
    return estimate


def next_event_after(ts: float, event: str, lat: float, lon: float) -> float | None:
    """Return the Unix time of the first ``event`` strictly after ``ts``.

    Args:
        ts: Unix time to search from.
        event: a key of :data:`SOLAR_EVENTS`.
        lat: latitude in degrees, north positive.
        lon: longitude in degrees, east positive.

    Returns:
        The event time, or ``None`` when none occurs within
        :data:`HORIZON_DAYS` (polar day or night).

    Raises:
        KeyError: unknown event.
    """
    kind, altitude = SOLAR_EVENTS[event]
    # Events of UTC day n fall within about n-1 12:00 .. n+1 12:00 UTC and move
    # by minutes a day, so scanning days in order yields them in time order,
    # and nothing from before the previous day can come after ``ts``.
    first = math.floor(ts / _DAY) - 1
    for day in range(first, first + HORIZON_DAYS + 2):
        found = _event_on_day(day, kind, altitude, lat, lon)
        if found is not None and found > ts:
            return found
    return None


class solar(BaseSchedule):
    """Fires at a sun event at a place, like Celery's ``solar``.

    Args:
        event: one of ``dawn_astronomical``, ``dawn_nautical``, ``dawn_civil``,
            ``sunrise``, ``solar_noon``, ``sunset``, ``dusk_civil``,
            ``dusk_nautical``, ``dusk_astronomical``.
        lat: latitude in degrees, -90..90 (north positive).
        lon: longitude in degrees, -180..180 (east positive).
        tz: kept for interface symmetry and serialisation; sun events are
            instants, so it does not affect them.
        nowfun: see :class:`~liteq.schedules.BaseSchedule`.

    Times are accurate to about a minute (sea level, no observer elevation).
    On days when the sun never crosses the event's altitude (polar day or
    night) there is no event; the schedule moves on to the next day that has
    one, or ``next_after`` returns ``None`` when there is none within about a
    year. At the poles themselves the sun's altitude hardly changes within a
    day, so only ``solar_noon`` is ever found there.

    Raises:
        ValueError: unknown event (the message lists the valid ones) or a
            latitude/longitude out of range.
        TypeError: latitude or longitude is not a number.
    """

    type_name = "solar"

    def __init__(
        self,
        event: str,
        lat: float,
        lon: float,
        tz: TzSpec = None,
        nowfun: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(tz, nowfun)
        if event not in SOLAR_EVENTS:
            raise ValueError(
                f"solar: unknown event {event!r}; valid events: {', '.join(SOLAR_EVENTS)}"
            )
        for name, value, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(
                    f"solar: {name} must be a number, got {type(value).__name__}"
                )
            if not -limit <= value <= limit:
                raise ValueError(
                    f"solar: {name} {value} is out of range {-limit:g}..{limit:g}"
                )
        self.event = event
        self.lat = float(lat)
        self.lon = float(lon)

    def next_after(self, dt: datetime) -> datetime | None:
        """See :meth:`~liteq.schedules.BaseSchedule.next_after`.

        Returns ``None`` when no such event occurs within about a year.
        """
        _require_aware(dt)
        found = next_event_after(dt.timestamp(), self.event, self.lat, self.lon)
        if found is None:
            return None
        # Whole seconds; rounding up keeps the result strictly after ``dt``.
        return datetime.fromtimestamp(math.ceil(found), timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        """See :meth:`~liteq.schedules.BaseSchedule.to_dict`."""
        return {
            "type": self.type_name,
            "event": self.event,
            "lat": self.lat,
            "lon": self.lon,
            "tz": _tz_name(self.tz),
        }

    def _key(self) -> tuple[Any, ...]:
        return (self.event, self.lat, self.lon, self._tz_key())

    def __repr__(self) -> str:
        return f"<solar: {self.event} at latitude {self.lat}, longitude: {self.lon}>"
