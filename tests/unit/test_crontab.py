from __future__ import annotations

import random
from calendar import monthrange
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from liteq.schedules import crontab

UTC = timezone.utc
MINUTE = timedelta(minutes=1)
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ALL_MINUTES = set(range(60))
ALL_HOURS = set(range(24))
ALL_DOW = set(range(7))
ALL_DOM = set(range(1, 32))
ALL_MONTHS = set(range(1, 13))


def fires(
    sched: crontab, start: datetime, end: datetime, limit: int = 100_000
) -> list[datetime]:
    out: list[datetime] = []
    current = start
    while len(out) < limit:
        nxt = sched.next_after(current)
        if nxt is None or nxt >= end:
            break
        out.append(nxt)
        current = nxt
    return out


def matches(sched: crontab, t: datetime) -> bool:
    return (
        t.minute in sched.minute
        and t.hour in sched.hour
        and t.day in sched.day_of_month
        and t.month in sched.month_of_year
        and (t.weekday() + 1) % 7 in sched.day_of_week
    )


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({}, "minute", ALL_MINUTES),
        ({"minute": 5}, "minute", {5}),
        ({"minute": "5"}, "minute", {5}),
        ({"minute": "1,2,3"}, "minute", {1, 2, 3}),
        ({"minute": [1, 2, "3"]}, "minute", {1, 2, 3}),
        ({"minute": {0, 30}}, "minute", {0, 30}),
        ({"minute": "*/15"}, "minute", {0, 15, 30, 45}),
        ({"minute": "1-30/7"}, "minute", {1, 8, 15, 22, 29}),
        ({"minute": "10/20"}, "minute", {10, 30, 50}),
        ({"minute": "0-4,50-59/5"}, "minute", {0, 1, 2, 3, 4, 50, 55}),
        ({"hour": "9-17"}, "hour", set(range(9, 18))),
        ({"hour": "22-2"}, "hour", {22, 23, 0, 1, 2}),
        ({"hour": "*/6"}, "hour", {0, 6, 12, 18}),
        ({"day_of_week": "mon-fri"}, "day_of_week", {1, 2, 3, 4, 5}),
        ({"day_of_week": "sun"}, "day_of_week", {0}),
        ({"day_of_week": "Sunday,saturday"}, "day_of_week", {0, 6}),
        ({"day_of_week": 0}, "day_of_week", {0}),
        ({"day_of_week": 7}, "day_of_week", {0}),
        ({"day_of_week": "7"}, "day_of_week", {0}),
        ({"day_of_week": "5-7"}, "day_of_week", {5, 6, 0}),
        ({"day_of_week": "7-7"}, "day_of_week", {0}),
        ({"day_of_week": "7-2"}, "day_of_week", {0, 1, 2}),
        ({"day_of_week": "0-7"}, "day_of_week", ALL_DOW),
        ({"day_of_week": "1-7/2"}, "day_of_week", {1, 3, 5, 0}),
        ({"day_of_week": ["mon", 7]}, "day_of_week", {1, 0}),
        ({"month_of_year": "nov-feb"}, "month_of_year", {11, 12, 1, 2}),
        ({"day_of_week": "fri-mon"}, "day_of_week", {5, 6, 0, 1}),
        ({"day_of_week": "sat-sun"}, "day_of_week", {6, 0}),
        ({"day_of_week": "*/2"}, "day_of_week", {0, 2, 4, 6}),
        ({"day_of_week": "*"}, "day_of_week", ALL_DOW),
        ({"day_of_month": "*/15"}, "day_of_month", {1, 16, 31}),
        ({"day_of_month": "28-31"}, "day_of_month", {28, 29, 30, 31}),
        ({"month_of_year": "*/3"}, "month_of_year", {1, 4, 7, 10}),
        ({"month_of_year": "jan,jul-sep"}, "month_of_year", {1, 7, 8, 9}),
        ({"month_of_year": "December"}, "month_of_year", {12}),
    ],
)
def test_crontab_parses_field(
    kwargs: dict[str, object], field: str, expected: set[int]
) -> None:
    assert getattr(crontab(**kwargs), field) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minute": 61}, "crontab: minute: 61 is out of range 0-59"),
        ({"minute": "61"}, "crontab: minute: 61 is out of range 0-59"),
        ({"minute": -1}, "crontab: minute: -1 is out of range 0-59"),
        ({"hour": 24}, "crontab: hour: 24 is out of range 0-23"),
        ({"hour": "1-24"}, "crontab: hour: 24 is out of range 0-23"),
        ({"day_of_week": 8}, "crontab: day_of_week: 8 is out of range 0-7"),
        ({"day_of_week": "funday"}, "crontab: day_of_week: invalid value"),
        ({"day_of_month": 0}, "crontab: day_of_month: 0 is out of range 1-31"),
        ({"day_of_month": "32"}, "crontab: day_of_month: 32 is out of range 1-31"),
        ({"month_of_year": 13}, "crontab: month_of_year: 13 is out of range 1-12"),
        ({"month_of_year": "mon"}, "crontab: month_of_year: invalid value"),
        ({"minute": "jan"}, "crontab: minute: invalid value"),
        ({"minute": "*/0"}, "crontab: minute: invalid step"),
        ({"minute": "*/x"}, "crontab: minute: invalid step"),
        ({"minute": "1,,2"}, "crontab: minute: invalid value"),
        ({"minute": ""}, "crontab: minute: invalid value"),
        ({"hour": []}, "crontab: hour: no values"),
    ],
)
def test_crontab_invalid_value_names_field(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("*", r"\*")):
        crontab(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, 1.5, None, [1.0]])
def test_crontab_rejects_wrong_types(value: object) -> None:
    with pytest.raises(TypeError, match="crontab: minute"):
        crontab(minute=value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("*/5 * * * *", crontab(minute="*/5")),
        ("30 7 1 * *", crontab(minute=30, hour=7, day_of_month=1)),
        ("0 9 * * mon-fri", crontab(minute=0, hour=9, day_of_week="mon-fri")),
        ("0 0 29 2 *", crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)),
        (
            "15 3 * jan,jun 7",
            crontab(minute=15, hour=3, month_of_year="1,6", day_of_week=0),
        ),
        ("  1  2  3  4  5 ", crontab(1, 2, 5, 3, 4)),
        ("@hourly", crontab(minute=0)),
        ("@daily", crontab(minute=0, hour=0)),
        ("@weekly", crontab(minute=0, hour=0, day_of_week=0)),
        ("@monthly", crontab(minute=0, hour=0, day_of_month=1)),
        ("@yearly", crontab(minute=0, hour=0, day_of_month=1, month_of_year=1)),
    ],
)
def test_crontab_from_string_uses_cron_field_order(
    line: str, expected: crontab
) -> None:
    assert crontab.from_string(line) == expected


@pytest.mark.parametrize(
    "line", ["* * * *", "* * * * * *", "", "@reboot", "61 * * * *"]
)
def test_crontab_from_string_rejects_bad_lines(line: str) -> None:
    with pytest.raises(ValueError, match="crontab"):
        crontab.from_string(line)


def test_crontab_from_string_passes_tz() -> None:
    sched = crontab.from_string("0 9 * * *", tz="Europe/Berlin")
    assert sched.tz == BERLIN


def test_crontab_repr_matches_celery() -> None:
    sched = crontab(minute=30, hour=7, day_of_month=1)
    assert repr(sched) == "<crontab: 30 7 1 * * (m/h/dM/MY/d)>"
    assert repr(crontab(minute=[15, 0], day_of_week="mon-fri")) == (
        "<crontab: 0,15 * * * mon-fri (m/h/dM/MY/d)>"
    )


def test_crontab_equality_uses_expanded_sets() -> None:
    assert crontab(minute="*/15") == crontab(minute=[0, 15, 30, 45])
    assert crontab(day_of_week=7) == crontab(day_of_week="sun")
    assert hash(crontab(minute="*/15")) == hash(crontab(minute="0,15,30,45"))
    assert crontab(minute=1) != crontab(minute=2)
    assert crontab(minute=1, tz="UTC") != crontab(minute=1, tz="Europe/Berlin")


# ---------------------------------------------------------------- oracle

ORACLE_CASES: list[tuple[crontab, Callable[[datetime], bool]]] = [
    (
        crontab(minute=0, hour=0, day_of_month=29, month_of_year=2),
        lambda t: t.minute == 0 and t.hour == 0 and t.day == 29 and t.month == 2,
    ),
    (
        crontab(minute=15, hour=12, day_of_month=31),
        lambda t: t.minute == 15 and t.hour == 12 and t.day == 31,
    ),
    (
        crontab(minute="0,30", hour="6,18", day_of_month="28-31"),
        lambda t: t.minute in (0, 30) and t.hour in (6, 18) and t.day >= 28,
    ),
    (
        crontab(minute=0, hour=9, day_of_week="fri", day_of_month=13),
        lambda t: t.minute == 0 and t.hour == 9 and t.day == 13 and t.weekday() == 4,
    ),
    (
        crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
        lambda t: t.minute % 15 == 0 and 9 <= t.hour <= 17 and t.weekday() < 5,
    ),
    (
        crontab(minute=5, hour="1,13,22", day_of_week="sun,6", month_of_year="1-3,11"),
        lambda t: (
            t.minute == 5
            and t.hour in (1, 13, 22)
            and t.weekday() in (5, 6)
            and t.month in (1, 2, 3, 11)
        ),
    ),
    (
        crontab(
            minute="1-30/7", hour="*/6", day_of_month="1-10/3", month_of_year="*/4"
        ),
        lambda t: (
            t.minute in (1, 8, 15, 22, 29)
            and t.hour % 6 == 0
            and t.day in (1, 4, 7, 10)
            and t.month in (1, 5, 9)
        ),
    ),
]


@pytest.fixture(scope="module")
def leap_year_minutes() -> list[datetime]:
    start = datetime(2024, 1, 1)
    return [start + timedelta(minutes=i) for i in range(366 * 1440)]


@pytest.mark.parametrize(
    ("sched", "predicate"),
    ORACLE_CASES,
    ids=lambda v: repr(v) if isinstance(v, crontab) else "oracle",
)
def test_crontab_next_after_matches_brute_force_over_leap_year(
    sched: crontab,
    predicate: Callable[[datetime], bool],
    leap_year_minutes: list[datetime],
) -> None:
    expected = [t.replace(tzinfo=UTC) for t in leap_year_minutes if predicate(t)]
    assert expected, "oracle case never matches in 2024"
    got = fires(
        sched,
        datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert got == expected


def _random_crontab(rng: random.Random) -> crontab:
    return crontab(
        minute=rng.choice(["*", "0", "*/15", "7,37", "59", "1-30/7", "0-4"]),
        hour=rng.choice(["*", "0", "9-17", "*/6", "23", "3,15", "22-2"]),
        day_of_week=rng.choice(["*", "*", "mon-fri", "sun", "sat,sun", "3", "fri-mon"]),
        day_of_month=rng.choice(["*", "*", "1", "13", "28-31", "31", "*/10", "29"]),
        month_of_year=rng.choice(["*", "*", "2", "*/3", "6-8", "12", "feb,nov"]),
    )


def _no_match_between(sched: crontab, after: datetime, before: datetime) -> bool:
    """Brute force: no whole minute in (after, before) matches.

    Days that fail the day fields are skipped whole, which is exact because
    a minute matches only if its day matches.
    """
    t = after.replace(second=0, microsecond=0) + MINUTE
    while t < before:
        day_ok = (
            t.day in sched.day_of_month
            and t.month in sched.month_of_year
            and (t.weekday() + 1) % 7 in sched.day_of_week
        )
        if not day_ok:
            t = datetime.combine(t.date() + timedelta(days=1), datetime.min.time(), UTC)
            continue
        if matches(sched, t):
            return False
        t += MINUTE
    return True


def test_crontab_next_after_random_pairs_are_first_match() -> None:
    rng = random.Random(20240229)
    low = datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    high = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    for _ in range(200):
        sched = _random_crontab(rng)
        dt = datetime.fromtimestamp(rng.uniform(low, high), UTC)
        if rng.random() < 0.3:
            dt = dt.replace(second=0, microsecond=0)
        result = sched.next_after(dt)
        if result is None:  # e.g. 31 February: no valid (month, day) pair
            assert not any(
                day <= monthrange(2024, month)[1]
                for month in sched.month_of_year
                for day in sched.day_of_month
            ), sched
            continue
        assert result > dt
        assert result.tzinfo is UTC
        assert result.second == 0 and result.microsecond == 0
        assert matches(sched, result), (sched, dt, result)
        assert _no_match_between(sched, dt, result), (sched, dt, result)


def test_crontab_next_after_is_strictly_after_a_matching_instant() -> None:
    sched = crontab(minute=30, hour=7)
    at = datetime(2024, 5, 1, 7, 30, tzinfo=UTC)
    assert sched.next_after(at) == datetime(2024, 5, 2, 7, 30, tzinfo=UTC)
    assert sched.next_after(at - timedelta(microseconds=1)) == at


def test_crontab_impossible_date_never_fires() -> None:
    assert (
        crontab(day_of_month=30, month_of_year=2).next_after(
            datetime(2024, 1, 1, tzinfo=UTC)
        )
        is None
    )
    assert (
        crontab(day_of_month=31, month_of_year="4,6,9,11").next_after(
            datetime(2024, 1, 1, tzinfo=UTC)
        )
        is None
    )


def test_crontab_leap_day_on_weekday_looks_years_ahead() -> None:
    sched = crontab(
        minute=0, hour=0, day_of_month=29, month_of_year=2, day_of_week="mon"
    )
    assert sched.next_after(datetime(2021, 1, 1, tzinfo=UTC)) == datetime(
        2044, 2, 29, tzinfo=UTC
    )


def test_crontab_accepts_any_aware_zone_for_dt() -> None:
    sched = crontab(minute=0, hour=12)
    dt = datetime(2024, 5, 1, 13, 0, tzinfo=ZoneInfo("Asia/Tokyo"))  # 04:00 UTC
    assert sched.next_after(dt) == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_crontab_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        crontab().next_after(datetime(2024, 1, 1))


# ---------------------------------------------------------------- time zones


def test_crontab_seed_monday_morning_in_shanghai() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    sched = crontab(hour=7, minute=30, day_of_week=1, tz="Asia/Shanghai")
    got = sched.next_after(datetime(2024, 1, 3, tzinfo=UTC))
    assert got == datetime(2024, 1, 8, 7, 30, tzinfo=shanghai)
    assert got is not None
    local = got.astimezone(shanghai)
    assert (local.weekday(), local.hour, local.minute) == (0, 7, 30)
    assert local.utcoffset() == timedelta(hours=8)


def test_crontab_tz_can_be_assigned_later() -> None:
    sched = crontab(hour=9, minute=0)
    start = datetime(2024, 7, 1, tzinfo=UTC)
    assert sched.next_after(start) == datetime(2024, 7, 1, 9, 0, tzinfo=UTC)
    sched.tz = "Europe/Berlin"
    assert sched.next_after(start) == datetime(2024, 7, 1, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "change_day", "expected"),
    [
        (
            BERLIN,
            date(2024, 3, 31),
            datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
        ),  # 03:00 CEST
        (
            BERLIN,
            date(2024, 10, 27),
            datetime(2024, 10, 27, 0, 30, tzinfo=UTC),
        ),  # 02:30 CEST
        (
            NEW_YORK,
            date(2024, 3, 10),
            datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
        ),  # 03:00 EDT
        (
            NEW_YORK,
            date(2024, 11, 3),
            datetime(2024, 11, 3, 7, 30, tzinfo=UTC),
        ),  # 02:30 EST
    ],
)
def test_crontab_daily_0230_fires_once_on_dst_change_days(
    zone: ZoneInfo, change_day: date, expected: datetime
) -> None:
    sched = crontab(minute=30, hour=2, tz=zone)
    start = datetime.combine(change_day - timedelta(days=2), datetime.min.time(), zone)
    got = fires(sched, start, start + timedelta(days=5))
    on_day = [t for t in got if t.astimezone(zone).date() == change_day]
    assert on_day == [expected]
    assert len(got) == 5
    for t in got:
        if t != expected:
            assert t.astimezone(zone).time().isoformat() == "02:30:00"


def test_crontab_daily_in_new_york_overlap_fires_first_occurrence() -> None:
    sched = crontab(minute=30, hour=1, tz=NEW_YORK)
    start = datetime(2024, 11, 2, 12, 0, tzinfo=UTC)
    got = fires(sched, start, start + timedelta(days=2))
    assert got == [
        datetime(2024, 11, 3, 5, 30, tzinfo=UTC),  # 01:30 EDT; 01:30 EST is skipped
        datetime(2024, 11, 4, 6, 30, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        (
            BERLIN,
            datetime(2024, 10, 26, 22, 0, tzinfo=UTC),
            ["22:30", "23:30", "00:30", "02:30", "03:30"],  # 01:30Z = 02:30 CET skipped
        ),
        (
            NEW_YORK,
            datetime(2024, 11, 3, 3, 0, tzinfo=UTC),
            ["03:30", "04:30", "05:30", "07:30", "08:30"],  # 06:30Z = 01:30 EST skipped
        ),
        (
            BERLIN,
            datetime(2024, 3, 30, 23, 0, tzinfo=UTC),
            ["23:30", "00:30", "01:00", "01:30", "02:30"],  # 02:30 CET -> 03:00 CEST
        ),
        (
            NEW_YORK,
            datetime(2024, 3, 10, 5, 0, tzinfo=UTC),
            ["05:30", "06:30", "07:00", "07:30", "08:30"],
        ),
    ],
)
def test_crontab_hourly_across_dst_changes(
    zone: ZoneInfo, start: datetime, expected: list[str]
) -> None:
    got = fires(crontab(minute=30, tz=zone), start, start + timedelta(hours=6), limit=5)
    assert [t.strftime("%H:%M") for t in got] == expected


def test_crontab_from_second_pass_of_overlap_resumes_after_it() -> None:
    second_pass = datetime(2024, 11, 3, 1, 15, fold=1, tzinfo=NEW_YORK)  # 06:15Z
    assert crontab(minute=30, tz=NEW_YORK).next_after(second_pass) == datetime(
        2024, 11, 3, 7, 30, tzinfo=UTC
    )
    assert crontab(minute="*", tz=NEW_YORK).next_after(second_pass) == datetime(
        2024, 11, 3, 7, 0, tzinfo=UTC
    )


def test_crontab_minutes_inside_gap_fire_once_at_gap_end() -> None:
    sched = crontab(minute="*", hour=2, tz=BERLIN)
    start = datetime(2024, 3, 30, 23, 0, tzinfo=UTC)
    got = fires(sched, start, datetime(2024, 4, 1, 0, 2, tzinfo=UTC))
    assert got == [
        datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
        datetime(2024, 4, 1, 0, 0, tzinfo=UTC),
        datetime(2024, 4, 1, 0, 1, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("zone", "first_day"), [(BERLIN, date(2024, 3, 28)), (NEW_YORK, date(2024, 10, 31))]
)
def test_crontab_local_time_is_kept_across_dst_change(
    zone: ZoneInfo, first_day: date
) -> None:
    sched = crontab(minute=30, hour=7, tz=zone)
    start = datetime.combine(first_day, datetime.min.time(), zone)
    got = fires(sched, start, start + timedelta(days=7))
    assert len(got) == 7
    assert {t.astimezone(zone).strftime("%H:%M") for t in got} == {"07:30"}
    assert len({t.astimezone(zone).utcoffset() for t in got}) == 2


def _is_fire_instant(sched: crontab, instant: datetime, zone: ZoneInfo) -> bool:
    """Brute-force statement of the DST rules for one whole-minute instant."""
    local = instant.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if matches(sched, wall) and not local.fold:
        return True
    before = (instant - timedelta(seconds=1)).astimezone(zone)
    offset, previous = local.utcoffset(), before.utcoffset()
    assert offset is not None and previous is not None
    if previous < offset:  # the instant a spring-forward gap ends
        missing = before.replace(tzinfo=None, second=0) + MINUTE
        while missing < wall:
            if matches(sched, missing):
                return True
            missing += MINUTE
    return False


@pytest.mark.parametrize("zone", [BERLIN, NEW_YORK], ids=str)
def test_crontab_random_pairs_around_dst_follow_the_rules(zone: ZoneInfo) -> None:
    rng = random.Random(str(zone))
    changes = [
        datetime(2024, 3, 31, 1, tzinfo=UTC),
        datetime(2024, 10, 27, 1, tzinfo=UTC),
        datetime(2024, 3, 10, 7, tzinfo=UTC),
        datetime(2024, 11, 3, 6, tzinfo=UTC),
    ]
    for _ in range(60):
        sched = crontab(
            minute=rng.choice(["*", "0", "30", "*/15", "59", "0-5"]),
            hour=rng.choice(["*", "1", "2", "3", "1-3", "0,2,4"]),
            tz=zone,
        )
        dt = rng.choice(changes) + timedelta(seconds=rng.uniform(-4 * 3600, 4 * 3600))
        result = sched.next_after(dt)
        assert result is not None and result > dt
        assert _is_fire_instant(sched, result, zone), (sched, dt, result)
        t = dt.replace(second=0, microsecond=0) + MINUTE
        while t < result:
            assert not _is_fire_instant(sched, t, zone), (sched, dt, result, t)
            t += MINUTE
