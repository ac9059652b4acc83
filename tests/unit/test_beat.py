"""Beat driven by a FakeClock: due times, catch-up, DST, leadership, config sync."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from liteq import Liteq, signals
from liteq.beat import Beat, plan
from liteq.exceptions import ConfigurationError
from liteq.schedules import clocked, crontab, rrule, schedule
from liteq.testing import FakeClock

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(*args: int, tz: Any = UTC) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def sent(app: Liteq) -> list[tuple[str, datetime, str]]:
    """Return ``(task name, enqueue time, unique key)`` of every queued task."""
    rows = app.storage.db.execute(
        "SELECT name, created_at, unique_key FROM liteq_task ORDER BY id"
    )
    return [(r[0], datetime.fromtimestamp(r[1], UTC), r[2]) for r in rows]


def drive(beat: Beat, clock: FakeClock, until: datetime) -> None:
    """Tick, then advance by exactly the delay tick returned, until ``until``."""
    while clock.now() < until:
        delay = beat.tick()
        clock.advance(min(delay, (until - clock.now()).total_seconds()))
    beat.tick()


# -- plan: what one due entry sends -------------------------------------------------------
EVERY_10 = schedule(10)


@pytest.mark.parametrize(
    ("policy", "late", "fires", "following"),
    [
        ("once", 0.0, [0], 10),
        ("once", 0.05, [0], 10),
        ("once", 35.0, [30], 40),
        ("all", 35.0, [0, 10, 20, 30], 40),
        ("skip", 0.05, [0], 10),
        ("skip", 4.0, [0], 10),
        ("skip", 35.0, [30], 40),
        ("skip", 38.0, [], 40),
    ],
)
def test_plan_interval_follows_catch_up_policy(
    policy: str, late: float, fires: list[int], following: int
) -> None:
    due = T0
    got, nxt = plan(EVERY_10, due, due + timedelta(seconds=late), policy)
    assert got == [due + timedelta(seconds=s) for s in fires]
    assert nxt == due + timedelta(seconds=following)


def test_plan_all_sends_at_most_the_limit_and_stays_due() -> None:
    fires, nxt = plan(EVERY_10, T0, T0 + timedelta(hours=1), "all", limit=100)
    assert len(fires) == 100
    assert nxt == T0 + timedelta(seconds=1000)


@pytest.mark.parametrize(
    ("policy", "fires", "following"),
    [
        ("once", [at(2024, 1, 1, 3)], at(2024, 1, 1, 4)),
        ("all", [at(2024, 1, 1, h) for h in (1, 2, 3)], at(2024, 1, 1, 4)),
        ("skip", [], at(2024, 1, 1, 4)),
    ],
)
def test_plan_crontab_after_downtime_follows_catch_up_policy(
    policy: str, fires: list[datetime], following: datetime
) -> None:
    hourly = crontab(minute=0, tz="UTC")
    got, nxt = plan(hourly, at(2024, 1, 1, 1), at(2024, 1, 1, 3, 30), policy)
    assert (got, nxt) == (fires, following)


def test_plan_of_an_exhausted_schedule_has_no_next_time() -> None:
    once = clocked(T0)
    assert plan(once, T0, T0 + timedelta(seconds=1), "once") == ([T0], None)


# -- ticking -------------------------------------------------------------------------------
@pytest.fixture
def beat_app(db_path: Path, clock: FakeClock) -> Any:
    made: list[Liteq] = []

    def make(schedule_conf: dict[str, Any] | None = None, **conf: Any) -> Liteq:
        application = Liteq("beattests", broker=str(db_path), clock=clock, **conf)
        application.conf.beat_schedule = schedule_conf or {}
        made.append(application)
        return application

    yield make
    for application in made:
        application.close()


def test_tick_sends_an_interval_entry_every_interval(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app(
        {
            "add": {
                "task": "tasks.add",
                "schedule": timedelta(seconds=30),
                "args": (2, 3),
            }
        }
    )
    beat = Beat(app)
    beat.sync_config()
    drive(beat, clock, T0 + timedelta(seconds=95))
    assert [(name, when) for name, when, _ in sent(app)] == [
        ("tasks.add", T0 + timedelta(seconds=s)) for s in (30, 60, 90)
    ]
    entry = app.schedules["add"]
    assert entry.total_run_count == 3
    assert entry.last_run_at == T0 + timedelta(seconds=90)
    assert entry.next_run_at == T0 + timedelta(seconds=120)


def test_tick_returns_the_exact_delay_to_the_next_due_entry(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 7.25}})
    beat = Beat(app, lease_ttl=3600)
    beat.sync_config()
    assert beat.tick() == 7.25
    clock.advance(7.25)
    assert beat.tick() == 7.25
    assert len(sent(app)) == 1


def test_tick_takes_now_as_a_datetime_or_epoch_seconds(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 10}})
    beat = Beat(app, lease_ttl=0)
    beat.sync_config()
    assert beat.tick(T0 + timedelta(seconds=4)) == 6.0
    assert beat.tick((T0 + timedelta(seconds=10)).timestamp()) == 10.0
    assert len(sent(app)) == 1


def test_tick_delay_is_capped_by_max_loop_interval(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 3600}})
    beat = Beat(app, lease_ttl=0)
    beat.sync_config()
    assert beat.tick() == 300
    assert Beat(app, lease_ttl=0, max_interval=5).tick() == 5


def test_tick_sends_the_message_celery_would(beat_app: Any, clock: FakeClock) -> None:
    app = beat_app(
        {
            "add": {
                "task": "tasks.add",
                "schedule": 10,
                "args": [16, 16],
                "kwargs": {"z": 1},
                "options": {"queue": "periodic", "priority": 7, "expires": 5},
            }
        }
    )
    beat = Beat(app)
    beat.sync_config()
    drive(beat, clock, T0 + timedelta(seconds=10))
    row = app.storage.db.query_one(
        "SELECT task_id, queue, priority, expires, unique_key FROM liteq_task"
    )
    assert row[1:] == (
        "periodic",
        7,
        (T0 + timedelta(seconds=15)).timestamp(),
        f"beat:add:{(T0 + timedelta(seconds=10)).timestamp():.6f}",
    )
    claimed = app.storage.claim("w", ["periodic"], 1, clock.time(), 60)
    from liteq.messages import Message

    message = Message.decode(claimed[0].message, claimed[0].content_type)
    assert (message.task, message.args, message.kwargs) == (
        "tasks.add",
        (16, 16),
        {"z": 1},
    )
    assert app.schedules["add"].last_task_id == row[0]


def test_tick_logs_the_due_task_as_celery_does(
    beat_app: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = beat_app(
        {
            "add-every-30-seconds": {
                "task": "tasks.add",
                "schedule": timedelta(seconds=30),
            }
        }
    )
    beat = Beat(app)
    beat.sync_config()
    with caplog.at_level(logging.INFO, logger="liteq.beat"):
        drive(beat, clock, T0 + timedelta(seconds=30))
    assert (
        "liteq.beat",
        logging.INFO,
        "Scheduler: Sending due task add-every-30-seconds (tasks.add)",
    ) in caplog.record_tuples


def test_entry_of_a_task_known_only_by_name_needs_no_import(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "nowhere.to.be.found", "schedule": 1}})
    beat = Beat(app)
    beat.sync_config()
    drive(beat, clock, T0 + timedelta(seconds=1))
    assert [name for name, _, _ in sent(app)] == ["nowhere.to.be.found"]


def test_registered_task_routes_apply(beat_app: Any, clock: FakeClock) -> None:
    app = beat_app({"x": {"task": "beattests.ping", "schedule": 1}})

    @app.task(name="beattests.ping", queue="pings")
    def ping() -> None:
        return None

    beat = Beat(app)
    beat.sync_config()
    drive(beat, clock, T0 + timedelta(seconds=1))
    assert app.storage.db.query_one("SELECT queue FROM liteq_task")[0] == "pings"


def test_after_downtime_a_missed_interval_fires_once_by_default(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 60}})
    beat = Beat(app)
    beat.sync_config()
    clock.advance(3600 + 30)
    beat.tick()
    beat.tick()
    assert len(sent(app)) == 1
    entry = app.schedules["x"]
    assert entry.last_run_at == T0 + timedelta(seconds=3600)
    assert entry.next_run_at == T0 + timedelta(seconds=3660)


def test_catch_up_all_sends_every_missed_occurrence(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 10, "catch_up": "all"}})
    beat = Beat(app)
    beat.sync_config()
    clock.advance(1505)
    while beat.tick() == 0.0:
        pass
    keys = [key for _, _, key in sent(app)]
    assert len(keys) == len(set(keys)) == 150
    assert app.schedules["x"].next_run_at == T0 + timedelta(seconds=1510)


def test_catch_up_skip_drops_missed_occurrences(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": crontab(minute=0)}})
    app.conf.beat_catch_up = "skip"
    beat = Beat(app)
    beat.sync_config()
    clock.advance(timedelta(hours=2, minutes=30))
    beat.tick()
    assert sent(app) == []
    drive(beat, clock, T0 + timedelta(hours=3))
    assert [when for _, when, _ in sent(app)] == [T0 + timedelta(hours=3)]


def test_beat_catch_up_setting_rejects_unknown_policy(beat_app: Any) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 1, "catch_up": "twice"}})
    with pytest.raises(ConfigurationError, match="'x'.*catch_up"):
        Beat(app).sync_config()


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (
            at(2024, 3, 29, 12),
            [
                at(2024, 3, 30, 1, 30),  # 02:30 CET
                at(2024, 3, 31, 1, 0),  # 02:30 does not exist: 03:00 CEST
                at(2024, 4, 1, 0, 30),  # 02:30 CEST
            ],
        ),
        (
            at(2024, 10, 25, 12),
            [
                at(2024, 10, 26, 0, 30),  # 02:30 CEST
                at(2024, 10, 27, 0, 30),  # first 02:30 (CEST) only
                at(2024, 10, 28, 1, 30),  # 02:30 CET
            ],
        ),
    ],
)
def test_daily_0230_fires_once_on_each_berlin_dst_change_day(
    beat_app: Any, clock: FakeClock, start: datetime, expected: list[datetime]
) -> None:
    clock.set(start)
    app = beat_app(
        {"nightly": {"task": "tasks.nightly", "schedule": crontab(hour=2, minute=30)}},
        timezone="Europe/Berlin",
    )
    # A long lease: the leader has nothing to renew between the daily fires.
    beat = Beat(app, lease_ttl=86400)
    beat.sync_config()
    drive(beat, clock, start + timedelta(days=3))
    assert [when for _, when, _ in sent(app)] == expected


def test_rrule_entry_runs_in_the_entry_zone(beat_app: Any, clock: FakeClock) -> None:
    app = beat_app(
        {
            "standup": {
                "task": "tasks.standup",
                "schedule": rrule("FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9"),
                "tz": "America/New_York",
            }
        }
    )
    beat = Beat(app, lease_ttl=0)
    beat.sync_config()
    drive(beat, clock, T0 + timedelta(days=7))
    ny = ZoneInfo("America/New_York")
    assert [when for _, when, _ in sent(app)] == [
        at(2024, 1, 1, 9, tz=ny),
        at(2024, 1, 3, 9, tz=ny),
    ]


def test_clocked_entry_fires_once_then_never(beat_app: Any, clock: FakeClock) -> None:
    app = beat_app(
        {"once": {"task": "tasks.once", "schedule": clocked(T0 + timedelta(minutes=5))}}
    )
    beat = Beat(app)
    beat.sync_config()
    drive(beat, clock, T0 + timedelta(hours=1))
    assert [when for _, when, _ in sent(app)] == [T0 + timedelta(minutes=5)]
    assert app.schedules["once"].next_run_at is None
    Beat(app).sync_config()
    drive(beat, clock, T0 + timedelta(hours=2))
    assert len(sent(app)) == 1


# -- configuration sync ---------------------------------------------------------------------
def test_sync_config_adds_updates_and_removes(beat_app: Any, clock: FakeClock) -> None:
    app = beat_app(
        {
            "a": {"task": "tasks.a", "schedule": 10},
            "b": {"task": "tasks.b", "schedule": 10},
        }
    )
    report = Beat(app).sync_config()
    assert sorted(report.added) == ["a", "b"]
    app.conf.beat_schedule = {
        "a": {"task": "tasks.a", "schedule": 10, "args": [1]},
        "c": {"task": "tasks.c", "schedule": crontab()},
    }
    report = Beat(app).sync_config()
    assert (report.added, report.updated, report.removed) == (["c"], ["a"], ["b"])
    assert [e.name for e in app.schedules.list()] == ["a", "c"]
    assert app.schedules["a"].args == (1,)


def test_sync_config_pins_wall_clock_schedules_to_the_app_zone(
    beat_app: Any,
) -> None:
    app = beat_app(
        {
            "cron": {"task": "t", "schedule": crontab(hour=7, minute=30)},
            "every": {"task": "t", "schedule": 30},
            "own": {"task": "t", "schedule": crontab(), "tz": "Europe/Berlin"},
        },
        CELERY_TIMEZONE="Asia/Shanghai",
    )
    Beat(app).sync_config()
    zones = {e.name: e.schedule.tz for e in app.schedules.list()}
    assert zones == {
        "cron": ZoneInfo("Asia/Shanghai"),
        "every": None,
        "own": ZoneInfo("Europe/Berlin"),
    }


def test_sync_config_keeps_runtime_entries(beat_app: Any) -> None:
    app = beat_app({"a": {"task": "tasks.a", "schedule": 10}})
    Beat(app).sync_config()
    app.schedules.add("runtime", "tasks.r", 5)
    app.conf.beat_schedule = {}
    assert Beat(app).sync_config().removed == ["a"]
    assert [e.name for e in app.schedules.list()] == ["runtime"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"schedule": 10}, "lacks 'task'"),
        ({"task": "t"}, "lacks 'schedule'"),
        ({"task": "t", "schedule": "soon"}, "cannot make a schedule"),
        ({"task": "t", "schedule": 10, "every": 3}, "unknown keys"),
        ({"task": "t", "schedule": 10, "args": [object()]}, "JSON"),
        ({"task": "t", "schedule": 10, "options": {"bogus": 1}}, "bogus"),
        ({"task": "t", "schedule": 0}, "positive"),
        ("not a dict", "must be a dict"),
    ],
)
def test_sync_config_names_a_bad_entry(beat_app: Any, entry: Any, message: str) -> None:
    app = beat_app({"good": {"task": "t", "schedule": 1}, "bad": entry})
    with pytest.raises(ConfigurationError, match="'bad'") as info:
        Beat(app).sync_config()
    assert message in str(info.value)
    assert app.schedules.list() == []


# -- many beats on one file ------------------------------------------------------------------
def test_only_the_lease_holder_sends(beat_app: Any, clock: FakeClock) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 1}})
    first, second = Beat(app, owner="first"), Beat(app, owner="second")
    first.sync_config()
    for _ in range(5):
        clock.advance(1)
        first.tick()
        second.tick()
    assert (first.is_leader, second.is_leader) == (True, False)
    assert len(sent(app)) == 5


def test_follower_takes_over_when_the_lease_expires(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 1}})
    leader, follower = (
        Beat(app, owner="a", lease_ttl=3),
        Beat(app, owner="b", lease_ttl=3),
    )
    leader.sync_config()
    clock.advance(1)
    leader.tick()
    delay = follower.tick()
    assert not follower.is_leader
    # The leader dies here; the follower waits exactly until its lease ran out.
    assert delay == pytest.approx(3.001)
    clock.advance(delay)
    follower.tick()
    assert follower.is_leader
    # once: the missed seconds collapse into their latest occurrence.
    keys = [key for _, _, key in sent(app)]
    assert keys == [
        f"beat:x:{(T0 + timedelta(seconds=s)).timestamp():.6f}" for s in (1, 4)
    ]
    assert app.schedules["x"].next_run_at == T0 + timedelta(seconds=5)


def test_leader_that_stops_hands_over_at_once(beat_app: Any, clock: FakeClock) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 1}})
    leader, follower = Beat(app, owner="a"), Beat(app, owner="b")
    leader.tick()
    follower.tick()
    leader.close()
    follower.tick()
    assert follower.is_leader


def test_beats_without_a_lease_still_send_each_occurrence_once(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 1}})
    beats = [Beat(app, lease_ttl=0, owner=str(i)) for i in range(3)]
    beats[0].sync_config()
    for _ in range(10):
        clock.advance(1)
        for beat in beats:
            beat.tick()
    keys = [key for _, _, key in sent(app)]
    assert len(keys) == len(set(keys)) == 10


# -- the loop ---------------------------------------------------------------------------------
def test_run_sends_beat_init_and_stops_when_asked(
    beat_app: Any, clock: FakeClock
) -> None:
    app = beat_app({"x": {"task": "tasks.x", "schedule": 10}})
    beat = Beat(app)
    seen: list[Any] = []

    def on_init(sender: Any = None, **kwargs: Any) -> None:
        seen.append(sender)

    signals.beat_init.connect(on_init)
    original = beat.tick

    def counting_tick(now: Any = None) -> float:
        if len(sent(app)) == 3:
            beat.stop()
        return original(now)

    beat.tick = counting_tick  # type: ignore[method-assign]
    try:
        beat.run()
    finally:
        signals.beat_init.disconnect(on_init)
    assert seen == [beat]
    assert [when for _, when, _ in sent(app)] == [
        T0 + timedelta(seconds=s) for s in (10, 20, 30)
    ]
    assert not beat.is_leader


def test_sync_config_logs_how_many_entries_come_from_config_and_runtime(
    beat_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = beat_app(
        {"add-every-30-seconds": {"task": "tasks.add", "schedule": timedelta(30)}}
    )
    app.schedules.add("nightly", "tasks.add", crontab(hour=3, minute=0))
    app.schedules.add("hourly", "tasks.add", timedelta(hours=1))
    with caplog.at_level(logging.INFO, logger="liteq.beat"):
        Beat(app).sync_config()
    assert (
        "liteq.beat",
        logging.INFO,
        "beat: 1 entries in beat_schedule, 2 added at runtime (liteq schedule add); "
        "synced: added 1, updated 0, removed 0",
    ) in caplog.record_tuples


def test_sync_config_of_an_empty_schedule_says_so(
    beat_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = beat_app()
    with caplog.at_level(logging.INFO, logger="liteq.beat"):
        Beat(app).sync_config()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert messages == [
        "beat: 0 entries in beat_schedule, 0 added at runtime (liteq schedule add); "
        "synced: added 0, updated 0, removed 0",
        "beat: the schedule is empty: no periodic task will be sent",
    ]


def test_entry_arguments_keep_dates_decimals_and_uuids_as_delay_does(
    beat_app: Any, clock: FakeClock
) -> None:
    import uuid
    from datetime import date
    from decimal import Decimal

    from liteq.testing import drain
    from liteq.worker import Worker

    seen: list[Any] = []
    when, amount, key = date(2024, 2, 29), Decimal("1.10"), uuid.uuid4()
    app = beat_app(
        {
            "typed": {
                "task": "tests.typed",
                "schedule": 10,
                "args": (when, amount),
                "kwargs": {"key": key},
            }
        }
    )

    @app.task(name="tests.typed")
    def typed(day: date, value: Decimal, key: uuid.UUID) -> None:
        seen.append((day, value, key))

    beat = Beat(app, lease_ttl=0)
    beat.sync_config()
    drive(beat, clock, T0 + timedelta(seconds=10))
    drain(app, Worker(app, pool="solo", hostname="t@h"))
    assert seen == [(when, amount, key)]


def test_a_custom_schedule_class_is_refused_not_replaced_by_its_base(
    beat_app: Any,
) -> None:
    from liteq.schedules import schedule

    class every_other(schedule):  # noqa: N801 - as users name them
        def is_due(self, last_run_at: datetime) -> Any:
            return super().is_due(last_run_at)

    app = beat_app({"mine": {"task": "tests.x", "schedule": every_other(2)}})
    with pytest.raises(ConfigurationError, match="custom schedule class every_other"):
        Beat(app).sync_config()


def test_a_beat_without_configuration_keeps_the_entries_an_app_stored(
    beat_app: Any, db_path: Path, clock: FakeClock
) -> None:
    configured = beat_app({"tick": {"task": "tests.tick", "schedule": 5}})
    Beat(configured).sync_config()
    # ``liteq beat tasks.db``: an app built from the file alone.
    bare = Liteq(broker=str(db_path), clock=clock, set_as_current=False)
    bare._without_configuration = True
    report = Beat(bare).sync_config()
    assert report.removed == []
    assert [e.name for e in configured.schedules.list()] == ["tick"]
    # An app that is configured, with no entries, still removes them.
    emptied = beat_app({})
    assert Beat(emptied).sync_config().removed == ["tick"]
    bare.close()
