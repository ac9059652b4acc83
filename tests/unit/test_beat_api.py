"""``app.schedules``: runtime entries, seen by running beats without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq
from liteq.beat import Beat, EmbeddedBeat
from liteq.exceptions import ScheduleNotFound
from liteq.schedules import crontab, schedule
from liteq.solar import solar
from liteq.testing import FakeClock, wait_until

UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def queued(app: Liteq) -> list[tuple[str, float]]:
    rows = app.storage.db.execute("SELECT name, created_at FROM liteq_task ORDER BY id")
    return [(r[0], r[1]) for r in rows]


def test_add_stores_a_runtime_entry(app: Liteq) -> None:
    entry = app.schedules.add(
        "report", "tasks.report", timedelta(minutes=5), args=(1,), queue="reports"
    )
    assert (entry.name, entry.task, entry.source, entry.enabled) == (
        "report",
        "tasks.report",
        "api",
        True,
    )
    assert entry.schedule == schedule(300)
    assert (entry.args, entry.options) == ((1,), {"queue": "reports"})
    assert entry.next_run_at == T0 + timedelta(minutes=5)
    assert [e.name for e in app.schedules.list()] == ["report"]
    assert "report" in app.schedules and len(app.schedules) == 1


def test_add_accepts_a_task_object(app: Liteq) -> None:
    @app.task(name="tasks.ping")
    def ping() -> None:
        return None

    assert app.schedules.add("ping", ping, 10).task == "tasks.ping"


def test_add_pins_the_app_zone_or_the_given_one(app: Liteq) -> None:
    app.conf.timezone = "Asia/Shanghai"
    cron = app.schedules.add("cron", "t", crontab(hour=7, minute=30))
    assert cron.next_run_at == datetime(2024, 1, 1, 23, 30, tzinfo=UTC)
    berlin = app.schedules.add(
        "berlin", "t", crontab(hour=7, minute=30), tz="Europe/Berlin"
    )
    assert berlin.next_run_at == datetime(2024, 1, 1, 6, 30, tzinfo=UTC)


def test_add_solar_entry(app: Liteq) -> None:
    entry = app.schedules.add(
        "lights", "tasks.lights_on", solar("sunset", 31.23, 121.47)
    )
    assert entry.next_run_at is not None
    # Sunset in Shanghai on 1 January 2024: 17:01:47 local (astral).
    sunset = datetime(2024, 1, 1, 9, 1, 47, tzinfo=UTC)
    assert abs(entry.next_run_at - sunset) < timedelta(minutes=1)


def test_add_again_replaces_the_definition_and_keeps_run_state(
    app: Liteq, clock: FakeClock
) -> None:
    app.schedules.add("x", "tasks.x", 10)
    beat = Beat(app)
    clock.advance(10)
    beat.tick()
    entry = app.schedules.add("x", "tasks.x", 10, args=(2,))
    assert (entry.args, entry.total_run_count, entry.next_run_at) == (
        (2,),
        1,
        T0 + timedelta(seconds=20),
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"schedule": "often"}, TypeError),
        ({"schedule": 10, "catch_up": "sometimes"}, ValueError),
        ({"schedule": 10, "args": "ab"}, ValueError),
        ({"schedule": 10, "kwargs": {"when": object()}}, ValueError),
        ({"schedule": 10, "nonsense_option": 1}, ValueError),
    ],
)
def test_add_rejects_bad_input_and_stores_nothing(
    app: Liteq, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        app.schedules.add("bad", "tasks.bad", **kwargs)
    assert app.schedules.get("bad") is None


def test_remove_and_unknown_names(app: Liteq) -> None:
    app.schedules.add("x", "tasks.x", 10)
    app.schedules.remove("x")
    assert app.schedules.get("x") is None
    for verb in (
        app.schedules.remove,
        app.schedules.enable,
        app.schedules.disable,
        app.schedules.run_now,
    ):
        with pytest.raises(ScheduleNotFound, match="no schedule entry named 'x'"):
            verb("x")
    with pytest.raises(KeyError):
        app.schedules["x"]


def test_disabled_entry_stops_and_enabled_one_resumes_from_now(
    app: Liteq, clock: FakeClock
) -> None:
    app.schedules.add("x", "tasks.x", 10)
    beat = Beat(app)
    clock.advance(10)
    beat.tick()
    assert not app.schedules.disable("x").enabled
    clock.advance(100)
    beat.tick()
    assert len(queued(app)) == 1
    entry = app.schedules.enable("x")
    # Missed while disabled: not caught up, the interval restarts from now.
    assert entry.next_run_at == T0 + timedelta(seconds=120)
    clock.advance(10)
    beat.tick()
    assert [when for _, when in queued(app)] == [
        (T0 + timedelta(seconds=s)).timestamp() for s in (10, 120)
    ]


def test_add_disabled_entry(app: Liteq, clock: FakeClock) -> None:
    assert not app.schedules.add("x", "tasks.x", 1, enabled=False).enabled
    clock.advance(5)
    Beat(app).tick()
    assert queued(app) == []


def test_run_now_sends_at_once_and_keeps_the_schedule(
    app: Liteq, clock: FakeClock
) -> None:
    app.schedules.add("x", "tasks.x", 60, args=(1, 2))
    result = app.schedules.run_now("x")
    assert queued(app) == [("tasks.x", T0.timestamp())]
    entry = app.schedules["x"]
    assert (entry.last_task_id, entry.next_run_at) == (
        result.id,
        T0 + timedelta(seconds=60),
    )


def test_runtime_entry_reaches_a_running_beat_on_its_next_tick(
    db_path: Path, clock: FakeClock
) -> None:
    beat_app = Liteq("beat", broker=str(db_path), clock=clock)
    api_app = Liteq("api", broker=str(db_path), clock=clock)
    try:
        beat = Beat(beat_app)
        beat.sync_config()
        assert beat.tick() == pytest.approx(10 / 3, abs=1e-6)
        api_app.schedules.add("new", "tasks.new", 2)
        delay = beat.tick()
        assert delay == 2.0
        clock.advance(delay)
        beat.tick()
        assert [name for name, _ in queued(api_app)] == ["tasks.new"]
    finally:
        beat_app.close()
        api_app.close()


@pytest.fixture
def real_app(db_path: Path) -> Iterator[Liteq]:
    application = Liteq("embedded", broker=str(db_path))
    yield application
    application.close()


def test_embedded_beat_sends_on_time_and_stops(real_app: Liteq) -> None:
    real_app.schedules.add("fast", "tasks.fast", 0.2)
    embedded = EmbeddedBeat(real_app)
    embedded.start()
    try:
        rows = wait_until(lambda: len(queued(real_app)) >= 3 and queued(real_app))
    finally:
        embedded.stop()
    assert not embedded.is_alive() and embedded.error is None
    fires = real_app.storage.db.execute(
        "SELECT created_at, unique_key FROM liteq_task ORDER BY id"
    )
    for created_at, key in fires:
        due = float(key.rsplit(":", 1)[1])
        # Enqueued before its next occurrence was due (on an idle machine,
        # within a few ms; the bound only leaves room for load).
        assert 0 <= created_at - due < 0.2
    assert len(rows) >= 3
    # The stopped beat gave its lease up.
    assert real_app.storage.db.query_one("SELECT COUNT(*) FROM liteq_lease")[0] == 0


def test_embedded_beat_sees_a_new_entry_within_a_second(real_app: Liteq) -> None:
    embedded = EmbeddedBeat(real_app)
    embedded.start()
    try:
        wait_until(
            lambda: real_app.storage.db.query_one("SELECT owner FROM liteq_lease")
        )
        other = Liteq("other", broker=real_app.storage.path)
        try:
            started = time.monotonic()
            other.schedules.add("soon", "tasks.soon", 0.3)
            wait_until(lambda: queued(real_app), timeout=5)
            assert time.monotonic() - started < 1.3
        finally:
            other.close()
    finally:
        embedded.stop()


def test_embedded_beat_with_a_bad_configuration_stops_with_its_error(
    real_app: Liteq,
) -> None:
    real_app.conf.beat_schedule = {"bad": {"task": "t"}}
    embedded = EmbeddedBeat(real_app)
    embedded.start()
    wait_until(lambda: not embedded.is_alive())
    embedded.stop()
    assert "lacks 'schedule'" in str(embedded.error)
