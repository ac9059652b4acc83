from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import astral.sun
import pytest
from astral import Observer, SunDirection

from liteq.schedules import schedule_from_dict
from liteq.solar import SOLAR_EVENTS, solar

UTC = timezone.utc
TOLERANCE = 60.0  # seconds

PLACES = [
    pytest.param(0.0, 0.0, id="equator"),
    pytest.param(31.23, 121.47, id="shanghai"),
    pytest.param(51.5, -0.13, id="london"),
    pytest.param(-33.87, 151.21, id="sydney"),
    pytest.param(60.0, 10.75, id="oslo"),
    pytest.param(40.71, -74.0, id="new-york"),
]
DATES = [
    date(2024, 1, 15),
    date(2024, 3, 20),
    date(2024, 5, 5),
    date(2024, 6, 21),
    date(2024, 9, 22),
    date(2024, 12, 21),
    date(2025, 8, 1),
]
LONGYEARBYEN = (78.22, 15.65)


def astral_event(event: str, lat: float, lon: float, day: date) -> datetime:
    """The reference: astral's algorithm at exactly Celery's altitudes.

    Rise and set events use ``time_of_transit`` without astral's own
    refraction term (astral models sunrise as 0.789 deg rather than 0.833, and
    adds refraction even 6-18 deg below the horizon); noon is ``astral.sun.noon``.

    Raises:
        ValueError: the sun does not reach the altitude that day.
    """
    observer = Observer(lat, lon)
    if event == "solar_noon":
        return astral.sun.noon(observer, day)
    kind, altitude = SOLAR_EVENTS[event]
    direction = SunDirection.RISING if kind == "rise" else SunDirection.SETTING
    return astral.sun.time_of_transit(
        observer, day, 90.0 - altitude, direction, with_refraction=False
    )


@pytest.mark.parametrize(("lat", "lon"), PLACES)
@pytest.mark.parametrize("event", sorted(SOLAR_EVENTS))
def test_solar_matches_astral_within_a_minute(
    event: str, lat: float, lon: float
) -> None:
    sched = solar(event, lat, lon)
    checked = 0
    for day in DATES:
        try:
            expected = astral_event(event, lat, lon, day)
        except ValueError:
            continue  # covered by the "no event" tests below
        got = sched.next_after(expected - timedelta(hours=2))
        assert got is not None
        assert abs((got - expected).total_seconds()) <= TOLERANCE, (day, got, expected)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(("lat", "lon"), PLACES)
def test_solar_sunrise_and_sunset_close_to_astral_public_api(
    lat: float, lon: float
) -> None:
    observer = Observer(lat, lon)
    for day in DATES:
        for event, reference in (
            ("sunrise", astral.sun.sunrise),
            ("sunset", astral.sun.sunset),
        ):
            expected = reference(observer, day)
            got = solar(event, lat, lon).next_after(expected - timedelta(hours=2))
            assert got is not None
            assert abs((got - expected).total_seconds()) <= TOLERANCE, (event, day, got)


@pytest.mark.parametrize(
    ("event", "lat", "lon", "day"),
    [
        ("dawn_astronomical", 51.5, -0.13, date(2024, 6, 21)),
        ("dusk_astronomical", 51.5, -0.13, date(2024, 6, 21)),
        ("dawn_nautical", 60.0, 10.75, date(2024, 6, 21)),
        ("dusk_astronomical", 60.0, 10.75, date(2024, 6, 21)),
        ("dawn_civil", 64.15, -21.94, date(2024, 6, 21)),
        ("dusk_civil", 64.15, -21.94, date(2024, 6, 21)),
        ("dawn_astronomical", -54.8, -68.3, date(2024, 12, 21)),
        ("sunset", *LONGYEARBYEN, date(2024, 6, 21)),
        ("sunrise", *LONGYEARBYEN, date(2024, 6, 21)),
        ("sunrise", *LONGYEARBYEN, date(2024, 12, 21)),
        ("dusk_civil", *LONGYEARBYEN, date(2024, 12, 21)),
    ],
)
def test_solar_has_no_event_when_astral_has_none(
    event: str, lat: float, lon: float, day: date
) -> None:
    with pytest.raises(ValueError):
        astral_event(event, lat, lon, day)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    got = solar(event, lat, lon).next_after(midnight)
    assert got is None or got >= midnight + timedelta(days=2)


def test_solar_polar_day_skips_to_first_sunset_of_season() -> None:
    sched = solar("sunset", *LONGYEARBYEN)
    got = sched.next_after(datetime(2024, 6, 1, tzinfo=UTC))
    assert got is not None
    assert datetime(2024, 8, 15, tzinfo=UTC) < got < datetime(2024, 9, 1, tzinfo=UTC)
    # The first evening the sun only grazes the horizon (the day either side
    # of it is a matter of convention); from the next evening on it must agree.
    following = sched.next_after(got)
    assert following is not None
    expected = astral_event("sunset", *LONGYEARBYEN, following.date())
    assert abs((following - expected).total_seconds()) <= TOLERANCE


def test_solar_polar_night_skips_to_first_sunrise_of_season() -> None:
    sched = solar("sunrise", *LONGYEARBYEN)
    got = sched.next_after(datetime(2024, 12, 1, tzinfo=UTC))
    assert got is not None
    assert datetime(2025, 2, 1, tzinfo=UTC) < got < datetime(2025, 3, 1, tzinfo=UTC)
    following = sched.next_after(got)
    assert following is not None
    expected = astral_event("sunrise", *LONGYEARBYEN, following.date())
    assert abs((following - expected).total_seconds()) <= TOLERANCE


def test_solar_noon_exists_during_polar_night() -> None:
    got = solar("solar_noon", *LONGYEARBYEN).next_after(
        datetime(2024, 12, 21, tzinfo=UTC)
    )
    expected = astral.sun.noon(Observer(*LONGYEARBYEN), date(2024, 12, 21))
    assert got is not None
    assert abs((got - expected).total_seconds()) <= TOLERANCE


def test_solar_at_pole_returns_none_without_looping() -> None:
    assert (
        solar("sunrise", 90.0, 0.0).next_after(datetime(2024, 1, 1, tzinfo=UTC)) is None
    )
    assert (
        solar("dusk_civil", -90.0, 0.0).next_after(datetime(2024, 1, 1, tzinfo=UTC))
        is None
    )


def test_solar_next_after_is_strictly_after_and_daily() -> None:
    sched = solar("sunrise", 51.5, -0.13)
    first = sched.next_after(datetime(2024, 4, 1, tzinfo=UTC))
    assert first is not None
    assert first.tzinfo is UTC and first.microsecond == 0
    assert sched.next_after(first - timedelta(seconds=1)) == first
    second = sched.next_after(first)
    assert second is not None
    assert timedelta(hours=23, minutes=50) < second - first < timedelta(hours=24)


def test_solar_far_east_and_west_longitudes_keep_order() -> None:
    for lon in (-179.9, 179.9):
        sched = solar("sunset", -10.0, lon)
        times = []
        current = datetime(2024, 2, 1, tzinfo=UTC)
        for _ in range(5):
            nxt = sched.next_after(current)
            assert nxt is not None
            times.append(nxt)
            current = nxt
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert all(86000 < gap < 86800 for gap in gaps), gaps


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("sunrise_ish", 0.0, 0.0), "valid events: dawn_astronomical, dawn_nautical"),
        (("sunrise", 90.5, 0.0), "lat 90.5 is out of range -90..90"),
        (("sunrise", -91, 0.0), "lat -91 is out of range"),
        (("sunrise", 0.0, 180.01), "lon 180.01 is out of range -180..180"),
        (("sunrise", 0.0, -200), "lon -200 is out of range"),
    ],
)
def test_solar_rejects_invalid_arguments(
    args: tuple[str, float, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        solar(*args)


def test_solar_rejects_non_numeric_coordinates() -> None:
    with pytest.raises(TypeError, match="lat"):
        solar("sunrise", "51.5", 0.0)  # type: ignore[arg-type]


def test_solar_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        solar("sunrise", 0.0, 0.0).next_after(datetime(2024, 1, 1))


def test_solar_value_semantics() -> None:
    sched = solar("dusk_nautical", -33.87, 151.21, tz="Australia/Sydney")
    assert sched.to_dict() == {
        "type": "solar",
        "event": "dusk_nautical",
        "lat": -33.87,
        "lon": 151.21,
        "tz": "Australia/Sydney",
    }
    assert schedule_from_dict(sched.to_dict()) == sched
    assert hash(schedule_from_dict(sched.to_dict())) == hash(sched)
    assert sched != solar("dusk_civil", -33.87, 151.21, tz="Australia/Sydney")
    assert repr(sched) == "<solar: dusk_nautical at latitude -33.87, longitude: 151.21>"
