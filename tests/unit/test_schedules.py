from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from dateutil import rrule as du

from liteq import schedules
from liteq.schedules import (
    NEVER,
    BaseSchedule,
    clocked,
    crontab,
    maybe_schedule,
    rrule,
    schedstate,
    schedule,
    schedule_from_dict,
    solar,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2024, 6, 3, 10, 0, 0, tzinfo=UTC)


def fixed(now: datetime) -> Callable[[], datetime]:
    return lambda: now


# ---------------------------------------------------------------- interval


def test_schedule_next_after_adds_interval() -> None:
    sched = schedule(timedelta(seconds=30))
    assert sched.next_after(NOW) == NOW + timedelta(seconds=30)
    assert sched.run_every == timedelta(seconds=30)
    assert sched.seconds == 30.0


def test_schedule_accepts_seconds_and_returns_utc() -> None:
    dt = datetime(2024, 6, 3, 12, 0, tzinfo=BERLIN)
    got = schedule(90.5).next_after(dt)
    assert got == dt + timedelta(seconds=90.5)
    assert got is not None and got.tzinfo is UTC


@pytest.mark.parametrize(
    ("every", "dt", "expected"),
    [
        (timedelta(hours=1), NOW.replace(minute=17, second=5), NOW.replace(hour=11)),
        (timedelta(minutes=90), NOW.replace(minute=59), NOW.replace(hour=12)),
        (timedelta(minutes=5), NOW.replace(minute=3, second=59), NOW.replace(minute=8)),
        (timedelta(seconds=10), NOW.replace(microsecond=999), NOW.replace(second=10)),
        (
            timedelta(days=1),
            NOW.replace(hour=23, minute=59),
            datetime(2024, 6, 4, tzinfo=UTC),
        ),
    ],
)
def test_schedule_relative_rounds_to_interval_resolution(
    every: timedelta, dt: datetime, expected: datetime
) -> None:
    assert schedule(every, relative=True).next_after(dt) == expected


def test_schedule_relative_days_round_to_local_midnight() -> None:
    sched = schedule(timedelta(days=1), relative=True, tz="Europe/Berlin")
    got = sched.next_after(datetime(2024, 6, 3, 15, 0, tzinfo=BERLIN))
    assert got == datetime(2024, 6, 4, 0, 0, tzinfo=BERLIN)


def test_schedule_relative_sub_second_interval_never_goes_back() -> None:
    dt = NOW.replace(microsecond=700_000)
    assert schedule(0.2, relative=True).next_after(dt) == dt + timedelta(seconds=0.2)


@pytest.mark.parametrize(
    "every", [0, -1, timedelta(0), timedelta(seconds=-5), float("inf"), float("nan")]
)
def test_schedule_rejects_non_positive_interval(every: timedelta | float) -> None:
    with pytest.raises(ValueError, match="run_every"):
        schedule(every)


@pytest.mark.parametrize("every", ["10", None, True])
def test_schedule_rejects_non_numeric_interval(every: object) -> None:
    with pytest.raises(TypeError, match="run_every"):
        schedule(every)  # type: ignore[arg-type]


def test_schedule_repr_like_celery() -> None:
    assert repr(schedule(30)) == "<freq: 30.00 seconds>"
    assert repr(schedule(timedelta(minutes=5))) == "<freq: 5.00 minutes>"
    assert repr(schedule(timedelta(hours=1))) == "<freq: 1.00 hour>"


# ---------------------------------------------------------------- clocked


def test_clocked_fires_once() -> None:
    at = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
    sched = clocked(at)
    assert sched.next_after(at - timedelta(seconds=1)) == at
    assert sched.next_after(at) is None
    assert sched.next_after(at + timedelta(days=1)) is None


def test_clocked_naive_time_uses_tz_assigned_later() -> None:
    sched = clocked(datetime(2024, 6, 3, 12, 0))
    assert sched.clocked_time == datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
    sched.tz = "Europe/Berlin"
    assert sched.clocked_time == datetime(2024, 6, 3, 10, 0, tzinfo=UTC)


def test_clocked_naive_time_in_dst_gap_fires_at_gap_end() -> None:
    sched = clocked(datetime(2024, 3, 31, 2, 30), tz="Europe/Berlin")
    assert sched.clocked_time == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)


def test_clocked_rejects_non_datetime() -> None:
    with pytest.raises(TypeError, match="clocked_time"):
        clocked("2024-01-01")  # type: ignore[arg-type]


# ---------------------------------------------------------------- is_due


def test_is_due_interval_overdue_like_celery() -> None:
    sched = schedule(30, nowfun=fixed(NOW))
    assert sched.is_due(NOW - timedelta(seconds=40)) == schedstate(True, 30.0)
    assert sched.remaining_estimate(NOW - timedelta(seconds=40)) == timedelta(
        seconds=-10
    )


def test_is_due_interval_not_yet_due() -> None:
    sched = schedule(30, nowfun=fixed(NOW))
    assert sched.is_due(NOW - timedelta(seconds=10)) == schedstate(False, 20.0)
    assert sched.remaining_estimate(NOW - timedelta(seconds=10)) == timedelta(
        seconds=20
    )


def test_is_due_exactly_on_time() -> None:
    sched = schedule(30, nowfun=fixed(NOW))
    assert sched.is_due(NOW - timedelta(seconds=30)) == schedstate(True, 30.0)


def test_is_due_crontab_after_downtime_runs_once() -> None:
    sched = crontab(minute=0, nowfun=fixed(NOW.replace(minute=0, second=5)))
    state = sched.is_due(NOW - timedelta(days=3))
    assert state == schedstate(True, 3595.0)
    assert sched.is_due(NOW.replace(minute=0, second=5)) == schedstate(False, 3595.0)


def test_is_due_crontab_not_due_reports_wait() -> None:
    sched = crontab(minute=0, nowfun=fixed(NOW.replace(minute=30)))
    assert sched.is_due(NOW) == schedstate(False, 1800.0)
    assert sched.remaining_estimate(NOW) == timedelta(minutes=30)


def test_is_due_clocked_states() -> None:
    at = NOW + timedelta(minutes=5)
    before = clocked(at, nowfun=fixed(NOW))
    assert before.is_due(NOW - timedelta(days=1)) == schedstate(False, 300.0)
    after = clocked(at, nowfun=fixed(at + timedelta(seconds=1)))
    assert after.is_due(NOW - timedelta(days=1)) == schedstate(True, NEVER)
    assert after.is_due(at) == schedstate(False, NEVER)
    assert after.remaining_estimate(at) == timedelta(seconds=NEVER)


def test_is_due_default_nowfun_is_aware_utc() -> None:
    now = schedule(1).now()
    assert now.tzinfo is UTC


def test_is_due_rejects_naive_now_and_last_run() -> None:
    with pytest.raises(ValueError, match="nowfun"):
        schedule(1, nowfun=lambda: datetime(2024, 1, 1)).is_due(NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule(1, nowfun=fixed(NOW)).is_due(datetime(2024, 1, 1))


@pytest.mark.parametrize(
    "sched",
    [
        schedule(1),
        crontab(),
        clocked(NOW),
        rrule("FREQ=DAILY"),
        solar("sunrise", 0.0, 0.0),
    ],
    ids=lambda s: type(s).__name__,
)
def test_next_after_rejects_naive_datetime(sched: BaseSchedule) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sched.next_after(datetime(2024, 1, 1))
    with pytest.raises(TypeError):
        sched.next_after("2024-01-01")  # type: ignore[arg-type]


# ---------------------------------------------------------------- tz


def test_tz_accepts_names_tzinfo_and_none() -> None:
    sched = crontab(hour=9, minute=0)
    assert sched.tz is None
    sched.tz = BERLIN
    assert sched.tz is BERLIN
    sched.tz = "UTC+05:30"
    assert sched.tz == timezone(timedelta(hours=5, minutes=30))
    assert sched.to_dict()["tz"] == "UTC+05:30"
    sched.tz = None
    assert sched.next_after(NOW) == datetime(2024, 6, 4, 9, 0, tzinfo=UTC)


def test_tz_rejects_unknown_names_and_types() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        crontab(tz="Mars/Olympus")
    with pytest.raises(TypeError, match="tz"):
        crontab(tz=5)  # type: ignore[arg-type]


class _Anonymous(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "anonymous"


def test_to_dict_rejects_unnamed_tzinfo() -> None:
    sched = crontab(minute=0, tz=_Anonymous())
    assert sched.next_after(NOW) == datetime(2024, 6, 3, 11, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="zone name"):
        sched.to_dict()


# ---------------------------------------------------------------- values

ROUND_TRIP = [
    schedule(30),
    schedule(timedelta(hours=1, microseconds=7), relative=True, tz="Europe/Berlin"),
    schedule(0.25, tz="UTC"),
    crontab(),
    crontab(minute="*/15", hour="9-17", day_of_week="mon-fri", tz="America/New_York"),
    crontab(minute=[0, 30], day_of_month=31, month_of_year="jan,jul", tz="UTC-03:00"),
    crontab.from_string("0 9 * * 1-5", tz="Asia/Shanghai"),
    clocked(datetime(2024, 6, 3, 12, 0)),
    clocked(datetime(2024, 6, 3, 12, 0, tzinfo=BERLIN), tz="Europe/Berlin"),
    rrule("FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", tz="Europe/Berlin"),
    rrule("DTSTART:20240101T090000\nRRULE:FREQ=DAILY"),
    rrule("FREQ=DAILY;COUNT=3", dtstart=datetime(2024, 1, 1, 6, tzinfo=BERLIN)),
    rrule(du.rrule(du.MONTHLY, bymonthday=-1, dtstart=datetime(2024, 1, 1, 18))),
    solar("sunrise", 51.5, -0.13),
    solar("dusk_civil", -33.9, 151.2, tz="Australia/Sydney"),
]


@pytest.mark.parametrize("sched", ROUND_TRIP, ids=repr)
def test_to_dict_round_trips_through_json(sched: BaseSchedule) -> None:
    data = sched.to_dict()
    assert data["type"] == sched.type_name
    assert "tz" in data
    copy = schedule_from_dict(json.loads(json.dumps(data)))
    assert copy == sched
    assert hash(copy) == hash(sched)
    assert type(copy) is type(sched)
    assert copy.to_dict() == data
    probe = datetime(2024, 5, 1, tzinfo=UTC)
    assert copy.next_after(probe) == sched.next_after(probe)


def test_values_of_different_classes_are_unequal() -> None:
    assert schedule(60) != crontab()
    assert schedule(60) == schedule(timedelta(minutes=1))
    assert schedule(60) != schedule(60, relative=True)
    assert schedule(60) != schedule(60, tz="Europe/Berlin")
    assert len({schedule(60), schedule(60.0), crontab(), crontab(minute="*")}) == 2


def test_schedule_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="unknown schedule type 'weekly'"):
        schedule_from_dict({"type": "weekly"})
    with pytest.raises(ValueError, match="lacks 'every'"):
        schedule_from_dict({"type": "interval"})
    with pytest.raises(ValueError, match="lacks 'lat'"):
        schedule_from_dict({"type": "solar", "event": "sunrise", "lon": 0.0})
    with pytest.raises(TypeError, match="mapping"):
        schedule_from_dict([("type", "interval")])  # type: ignore[arg-type]


# ---------------------------------------------------------------- maybe_schedule


def test_maybe_schedule_conversions() -> None:
    assert maybe_schedule(timedelta(seconds=10)) == schedule(10)
    assert maybe_schedule(10) == schedule(10)
    assert maybe_schedule(2.5) == schedule(2.5)
    assert maybe_schedule(3600, relative=True) == schedule(3600, relative=True)
    existing = crontab(minute=5)
    assert maybe_schedule(existing) is existing
    assert maybe_schedule(NOW) == clocked(NOW)
    rule = du.rrule(du.DAILY, dtstart=datetime(2024, 1, 1, 8))
    converted = maybe_schedule(rule)
    assert isinstance(converted, rrule)
    assert converted.next_after(NOW) == datetime(2024, 6, 4, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "name"),
    [("*/5 * * * *", "str"), (None, "NoneType"), (True, "bool"), ([1], "list")],
)
def test_maybe_schedule_rejects_other_types(value: object, name: str) -> None:
    with pytest.raises(TypeError, match=name):
        maybe_schedule(value)


def test_maybe_schedule_rejects_bad_interval() -> None:
    with pytest.raises(ValueError):
        maybe_schedule(0)


def test_module_exposes_solar_lazily() -> None:
    assert schedules.solar is solar
    with pytest.raises(AttributeError):
        schedules.no_such_name  # noqa: B018
