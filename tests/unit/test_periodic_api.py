"""``app.add_periodic_task`` and the app signals it is usually called from, as in Celery."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq, chain
from liteq.beat import Beat
from liteq.schedules import crontab
from liteq.testing import FakeClock
from liteq.worker import Worker

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def periodic_app(db_path: Path, clock: FakeClock) -> Iterator[Liteq]:
    app = Liteq("proj", broker=str(db_path), clock=clock, set_as_current=False)
    yield app
    app.close()


def _sent(app: Liteq) -> list[tuple[str, float]]:
    rows = app.storage.db.execute("SELECT name, created_at FROM liteq_task ORDER BY id")
    return [(r[0], r[1] - T0.timestamp()) for r in rows]


def test_the_celery_guide_setup_sends_its_tasks_on_schedule(
    periodic_app: Liteq, clock: FakeClock
) -> None:
    app = periodic_app

    @app.task
    def test(arg: str) -> str:
        return arg

    @app.on_after_configure.connect
    def setup_periodic_tasks(sender: Liteq, **kwargs: Any) -> None:
        sender.add_periodic_task(10.0, test.s("hello"), name="add every 10")
        sender.add_periodic_task(30.0, test.s(), args=("world",), expires=10)
        sender.add_periodic_task(
            crontab(hour=7, minute=30, day_of_week=1), test.s("Happy Mondays!")
        )

    beat = Beat(app, lease_ttl=0)
    beat.sync_config()
    assert sorted(app.conf.beat_schedule) == [
        "add every 10",
        f"{test.name}('Happy Mondays!')",
        f"{test.name}('world')",
    ]
    assert app.conf.beat_schedule[f"{test.name}('world')"] == {
        "schedule": 30.0,
        "task": test.name,
        "args": ("world",),
        "kwargs": {},
        "options": {"expires": 10},
    }
    while clock.now() < T0 + timedelta(seconds=30):
        clock.advance(min(beat.tick(), 30))
    beat.tick()
    assert (
        _sent(app) == [(test.name, 10.0), (test.name, 20.0)] + [(test.name, 30.0)] * 2
    )
    assert app.schedules["add every 10"].args == ("hello",)


def test_app_signals_are_sent_once_in_celerys_order_when_a_worker_starts(
    periodic_app: Liteq,
) -> None:
    seen: list[str] = []
    for name in ("on_configure", "on_after_configure", "on_after_finalize"):
        getattr(periodic_app, name).connect(
            lambda sender, n=name, **kw: (
                seen.append(n) if sender is periodic_app else None
            )
        )
    worker = Worker(periodic_app, pool="solo", hostname="t@h")
    worker.step()
    worker.step()
    periodic_app.finalize()
    assert seen == ["on_configure", "on_after_configure", "on_after_finalize"]


def test_add_periodic_task_refuses_what_beat_cannot_send(periodic_app: Liteq) -> None:
    @periodic_app.task
    def step() -> None:
        pass

    with pytest.raises(TypeError, match="not a chain"):
        periodic_app.add_periodic_task(10, chain(step.s(), step.s()))
    with pytest.raises(TypeError, match="needs a signature"):
        periodic_app.add_periodic_task(10, step.name)
    # A task itself is accepted, as in Celery: its name, no arguments.
    assert periodic_app.add_periodic_task(5, step, name="tick") == "tick"
    assert periodic_app.conf.beat_schedule["tick"]["task"] == step.name


def test_beat_imports_the_included_modules_before_it_reads_the_schedule(
    db_path: Path,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolated_registry: None,
) -> None:
    # The guide's other spelling: the receiver lives in a tasks module the
    # app includes, and only beat runs (no worker imported it first).
    (tmp_path / "periodic_tasks_mod.py").write_text(
        "from liteq import current_app\n"
        "app = current_app()\n"
        "@app.task\n"
        "def ping():\n"
        "    return 'pong'\n"
        "@app.on_after_finalize.connect\n"
        "def setup(sender, **kwargs):\n"
        "    sender.add_periodic_task(60, ping.s(), name='ping')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Liteq(
        "proj", broker=str(db_path), clock=clock, include=["periodic_tasks_mod"]
    )
    try:
        Beat(app, lease_ttl=0).sync_config()
        assert app.schedules["ping"].task == "periodic_tasks_mod.ping"
    finally:
        app.close()


def test_an_unnamed_periodic_task_replacing_another_is_logged(
    periodic_app: Liteq, caplog: pytest.LogCaptureFixture
) -> None:
    @periodic_app.task
    def test(arg: str) -> str:
        return arg

    with caplog.at_level(logging.WARNING, logger="liteq.app"):
        first = periodic_app.add_periodic_task(30.0, test.s("world"))
        periodic_app.add_periodic_task(30.0, test.s("world"))  # the same: quiet
        assert "shadowed" not in caplog.text
        second = periodic_app.add_periodic_task(30.0, test.s("world"), expires=20)
    assert first == second
    assert "shadowed a previous unnamed periodic task" in caplog.text
    assert periodic_app.conf.beat_schedule[first]["options"] == {"expires": 20}
