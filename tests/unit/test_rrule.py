from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule as du

from liteq.schedules import BaseSchedule, rrule, schedule_from_dict

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def fires(sched: BaseSchedule, start: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    current = start
    for _ in range(count):
        nxt = sched.next_after(current)
        if nxt is None:
            break
        out.append(nxt)
        current = nxt
    return out


def test_rrule_weekly_byhour_fires_on_the_hour_local() -> None:
    sched = rrule("FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", tz="Europe/Berlin")
    got = fires(sched, datetime(2024, 7, 1, tzinfo=UTC), 4)
    local = [t.astimezone(BERLIN) for t in got]
    assert [t.strftime("%a %Y-%m-%d %H:%M:%S") for t in local] == [
        "Mon 2024-07-01 09:00:00",
        "Wed 2024-07-03 09:00:00",
        "Mon 2024-07-08 09:00:00",
        "Wed 2024-07-10 09:00:00",
    ]
    assert all(t.tzinfo is UTC for t in got)


@pytest.mark.parametrize(
    "text",
    [
        "FREQ=DAILY;BYHOUR=9",
        "RRULE:FREQ=DAILY;BYHOUR=9",
        "  freq=daily;byhour=9  ",
        "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
    ],
)
def test_rrule_string_forms_default_minutes_and_seconds_to_zero(text: str) -> None:
    got = rrule(text).next_after(datetime(2024, 5, 5, 12, 34, 56, tzinfo=UTC))
    assert got == datetime(2024, 5, 6, 9, 0, 0, tzinfo=UTC)


def test_rrule_dtstart_line_sets_start_and_time() -> None:
    sched = rrule("DTSTART:20240105T081500\nRRULE:FREQ=DAILY;INTERVAL=2", tz="UTC")
    assert sched.next_after(datetime(2024, 1, 1, tzinfo=UTC)) == datetime(
        2024, 1, 5, 8, 15, tzinfo=UTC
    )
    assert sched.next_after(datetime(2024, 1, 5, 8, 15, tzinfo=UTC)) == datetime(
        2024, 1, 7, 8, 15, tzinfo=UTC
    )


def test_rrule_dtstart_with_tzid_is_an_instant() -> None:
    sched = rrule(
        "DTSTART;TZID=America/New_York:20240105T080000\nRRULE:FREQ=DAILY",
        tz="America/New_York",
    )
    got = sched.next_after(datetime(2024, 7, 1, tzinfo=UTC))
    assert got is not None
    assert got.astimezone(NEW_YORK).strftime("%H:%M") == "08:00"


def test_rrule_dtstart_argument_overrides_and_is_local_wall_time() -> None:
    sched = rrule(
        "FREQ=MONTHLY;BYMONTHDAY=-1",
        dtstart=datetime(2024, 1, 1, 18, 30),
        tz="Asia/Tokyo",
    )
    got = fires(sched, datetime(2024, 1, 1, tzinfo=UTC), 3)
    assert [
        t.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%m-%d %H:%M") for t in got
    ] == [
        "01-31 18:30",
        "02-29 18:30",
        "03-31 18:30",
    ]


def test_rrule_count_is_exhausted() -> None:
    sched = rrule("FREQ=DAILY;COUNT=3", dtstart=datetime(2024, 1, 1, 6, 0))
    got = fires(sched, datetime(2023, 12, 1, tzinfo=UTC), 10)
    assert got == [datetime(2024, 1, d, 6, 0, tzinfo=UTC) for d in (1, 2, 3)]
    assert sched.next_after(datetime(2024, 1, 3, 6, 0, tzinfo=UTC)) is None


def test_rrule_until_in_utc_is_exhausted() -> None:
    sched = rrule("FREQ=DAILY;BYHOUR=9;UNTIL=20240110T083000Z", tz="Europe/Berlin")
    got = fires(sched, datetime(2024, 1, 7, tzinfo=UTC), 10)
    assert got == [datetime(2024, 1, d, 8, 0, tzinfo=UTC) for d in (7, 8, 9, 10)]
    assert sched.next_after(datetime(2024, 1, 10, 8, 0, tzinfo=UTC)) is None


def test_rrule_count_without_dtstart_counts_from_epoch() -> None:
    assert (
        rrule("FREQ=DAILY;COUNT=5").next_after(datetime(2024, 1, 1, tzinfo=UTC)) is None
    )


def test_rrule_accepts_dateutil_rule_objects() -> None:
    source = du.rrule(du.WEEKLY, byweekday=du.FR, dtstart=datetime(2024, 3, 1, 17, 45))
    sched = rrule(source, tz="Europe/Berlin")
    assert sched.rule == "RRULE:FREQ=WEEKLY;BYDAY=FR"
    assert sched.dtstart == datetime(2024, 3, 1, 17, 45)
    got = sched.next_after(datetime(2024, 4, 1, tzinfo=UTC))
    assert got == datetime(2024, 4, 5, 17, 45, tzinfo=BERLIN)
    assert schedule_from_dict(sched.to_dict()) == sched


def test_rrule_object_with_aware_until_round_trips() -> None:
    source = du.rrule(
        du.DAILY,
        dtstart=datetime(2024, 1, 1, 9, 0, tzinfo=UTC),
        until=datetime(2024, 1, 3, 9, 0, tzinfo=UTC),
    )
    sched = rrule(source)
    assert "UNTIL=20240103T090000Z" in sched.rule
    copy = schedule_from_dict(sched.to_dict())
    assert copy == sched
    assert fires(copy, datetime(2023, 1, 1, tzinfo=UTC), 10) == [
        datetime(2024, 1, d, 9, 0, tzinfo=UTC) for d in (1, 2, 3)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "FREQ=SOMETIMES",
        "FREQ=DAILY;BYHOUR=25",
        "NOPE",
        "RRULE:FREQ=DAILY\nRRULE:FREQ=WEEKLY",
    ],
)
def test_rrule_rejects_invalid_rules(text: str) -> None:
    with pytest.raises(ValueError, match="rrule"):
        rrule(text)


def test_rrule_rejects_wrong_types() -> None:
    with pytest.raises(TypeError, match="rule"):
        rrule(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtstart"):
        rrule("FREQ=DAILY", dtstart="2024-01-01")  # type: ignore[arg-type]


def test_rrule_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rrule("FREQ=DAILY").next_after(datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("zone", "change_day", "expected"),
    [
        (BERLIN, date(2024, 3, 31), datetime(2024, 3, 31, 1, 0, tzinfo=UTC)),
        (BERLIN, date(2024, 10, 27), datetime(2024, 10, 27, 0, 30, tzinfo=UTC)),
        (NEW_YORK, date(2024, 3, 10), datetime(2024, 3, 10, 7, 0, tzinfo=UTC)),
        (NEW_YORK, date(2024, 11, 3), datetime(2024, 11, 3, 7, 30, tzinfo=UTC)),
    ],
)
def test_rrule_daily_0230_fires_once_on_dst_change_days(
    zone: ZoneInfo, change_day: date, expected: datetime
) -> None:
    sched = rrule("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", tz=zone)
    start = datetime.combine(change_day - timedelta(days=2), datetime.min.time(), zone)
    got = fires(sched, start, 5)
    assert [t for t in got if t.astimezone(zone).date() == change_day] == [expected]
    assert len({t.astimezone(zone).date() for t in got}) == 5


@pytest.mark.parametrize(
    ("zone", "start", "expected"),
    [
        (
            BERLIN,
            datetime(2024, 10, 26, 22, 0, tzinfo=UTC),
            ["22:30", "23:30", "00:30", "02:30"],
        ),
        (
            NEW_YORK,
            datetime(2024, 11, 3, 3, 0, tzinfo=UTC),
            ["03:30", "04:30", "05:30", "07:30"],
        ),
        (
            BERLIN,
            datetime(2024, 3, 30, 23, 0, tzinfo=UTC),
            ["23:30", "00:30", "01:00", "01:30"],
        ),
    ],
)
def test_rrule_hourly_across_dst_changes(
    zone: ZoneInfo, start: datetime, expected: list[str]
) -> None:
    sched = rrule("FREQ=HOURLY;BYMINUTE=30", tz=zone)
    assert [t.strftime("%H:%M") for t in fires(sched, start, len(expected))] == expected


@pytest.mark.parametrize(
    ("zone", "first_day"), [(BERLIN, date(2024, 3, 28)), (NEW_YORK, date(2024, 10, 31))]
)
def test_rrule_local_time_is_kept_across_dst_change(
    zone: ZoneInfo, first_day: date
) -> None:
    sched = rrule("FREQ=DAILY;BYHOUR=7;BYMINUTE=30", tz=zone)
    got = fires(sched, datetime.combine(first_day, datetime.min.time(), zone), 7)
    assert {t.astimezone(zone).strftime("%H:%M") for t in got} == {"07:30"}
    assert len({t.astimezone(zone).utcoffset() for t in got}) == 2


RULE_POOL = [
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=6",
    "FREQ=YEARLY;INTERVAL=3;BYWEEKNO=20;BYDAY=TU",
    "FREQ=MONTHLY;BYDAY=+1MO,-1FR;BYHOUR=8,20",
    "FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=31",
    "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    "FREQ=WEEKLY;INTERVAL=3;BYDAY=SA,SU;BYHOUR=10;BYMINUTE=15",
    "FREQ=WEEKLY;INTERVAL=2;WKST=SU;BYDAY=MO,SU",
    "FREQ=DAILY;INTERVAL=9;BYHOUR=23;BYMINUTE=59;BYSECOND=30",
    "FREQ=HOURLY;INTERVAL=7;BYMINUTE=5,35",
    "FREQ=HOURLY;INTERVAL=5;BYHOUR=1,2,3,4,5,6",
    "FREQ=MINUTELY;INTERVAL=97;BYHOUR=9,10,11",
    "FREQ=SECONDLY;INTERVAL=7919;BYMINUTE=0,1,2",
    "DTSTART:20010307T134711\nRRULE:FREQ=WEEKLY;INTERVAL=2",
    "DTSTART:20010131T101010\nRRULE:FREQ=MONTHLY",
    "DTSTART:20000229T061500\nRRULE:FREQ=YEARLY",
    "DTSTART:20010307T134711\nRRULE:FREQ=HOURLY;INTERVAL=5",
    "DTSTART:20010307T134711\nRRULE:FREQ=MINUTELY;INTERVAL=45;BYSECOND=0,30",
]


@pytest.mark.parametrize("text", RULE_POOL)
def test_rrule_matches_plain_dateutil_iteration_from_epoch(text: str) -> None:
    """The start-advancing shortcut must not change any occurrence."""
    rng = random.Random(text)
    sched = rrule(text)
    reference = du.rrulestr(text, dtstart=datetime(2000, 1, 1))
    assert isinstance(reference, du.rrule)
    sub_daily = any(f in text for f in ("HOURLY", "MINUTELY", "SECONDLY"))
    span = 3 * 365 if sub_daily else 40 * 365
    for _ in range(8):
        naive = datetime(2000, 1, 1) + timedelta(seconds=rng.uniform(0, span * 86400))
        expected = reference.after(naive)
        got = sched.next_after(naive.replace(tzinfo=UTC))
        assert got == (None if expected is None else expected.replace(tzinfo=UTC)), (
            naive
        )


def test_rrule_value_semantics() -> None:
    sched = rrule(
        "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9",
        dtstart=datetime(2024, 1, 1),
        tz="Europe/Berlin",
    )
    assert sched.to_dict() == {
        "type": "rrule",
        "rule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9",
        "dtstart": "2024-01-01T00:00:00",
        "tz": "Europe/Berlin",
    }
    assert schedule_from_dict(sched.to_dict()) == sched
    assert hash(schedule_from_dict(sched.to_dict())) == hash(sched)
    assert sched != rrule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", tz="Europe/Berlin")
    assert (
        repr(sched) == "<rrule: FREQ=WEEKLY;BYDAY=MO;BYHOUR=9 from 2024-01-01T00:00:00>"
    )
