"""The seed documents' beat configurations, loaded unchanged and driven by a FakeClock.

Each configuration is imported from a copy of its folder in this process; a
:class:`liteq.beat.Beat` ticks on a fake clock and the tasks it sends run
through the worker's code path (``drain``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from liteq.beat import Beat
from liteq.testing import FakeClock, drain
from tests.examples.support import copy_example, imported

pytestmark = pytest.mark.examples

UTC = timezone.utc


def sent(app: Any, clock: FakeClock) -> int:
    """How many tasks are waiting in the app's database."""
    stats = app.storage.broker.queue_stats(clock.time())
    return sum(q["ready"] + q["scheduled"] for q in stats.values())


def start_beat(app: Any, clock: FakeClock) -> Beat:
    app.clock = clock
    beat = Beat(app, clock=clock, lease_ttl=0)
    beat.sync_config()
    return beat


def test_seed_interval_entry_sends_add_16_16_every_30_seconds(tmp_path: Path) -> None:
    folder = copy_example("seeds/000_quickstart_proj_beat/scheduler", tmp_path)
    clock = FakeClock(datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    with imported(folder, "proj.celery") as module:
        app = module.app
        app.import_modules()
        assert app.conf.timezone == "Asia/Shanghai"
        beat = start_beat(app, clock)
        task_ids = []
        for _ in range(5):
            beat.tick()
            entry = app.schedules.get("add-every-30-seconds")
            task_ids.append(entry.last_task_id)
            clock.advance(30)
        drain(app)
        values = [app.AsyncResult(tid).get(timeout=1) for tid in task_ids[1:]]
        counts = entry.total_run_count
    # As in Celery, the first run is one interval after beat starts; then one
    # task every 30 seconds, each proj.tasks.add(16, 16).
    assert task_ids[0] is None
    assert len(set(task_ids[1:])) == 4
    assert counts == 4
    assert values == [32, 32, 32, 32]


def test_seed_crontab_entry_fires_monday_730_in_shanghai_only(tmp_path: Path) -> None:
    folder = copy_example("seeds/000_quickstart_proj_beat/crontab", tmp_path)
    # Monday 2024-01-08 07:30 in Asia/Shanghai (UTC+8) is Sunday 23:30 UTC.
    clock = FakeClock(datetime(2024, 1, 7, 23, 0, tzinfo=UTC))
    with imported(folder, "proj.celery") as module:
        app = module.app
        beat = start_beat(app, clock)
        fired_at = []
        for _ in range(7 * 24 * 12 + 12):  # a week and an hour, in 5-minute steps
            before = sent(app, clock)
            beat.tick()
            if sent(app, clock) > before:
                fired_at.append(clock.now())
            clock.advance(timedelta(minutes=5))
    assert fired_at == [
        datetime(2024, 1, 7, 23, 30, tzinfo=UTC),
        datetime(2024, 1, 14, 23, 30, tzinfo=UTC),
    ]


def test_seed_celery_config_module_schedules_period_task_every_5_seconds(
    tmp_path: Path,
) -> None:
    folder = copy_example("seeds/001_hooks_progress_beat_chain/periodic", tmp_path)
    clock = FakeClock(datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    with imported(folder, "tasks") as module:
        app = module.app
        beat = start_beat(app, clock)
        counts = []
        for _ in range(21):
            beat.tick()
            counts.append(sent(app, clock))
            clock.advance(1)
        processed = drain(app)
    # One send every 5 seconds, the first 5 seconds after beat started.
    assert counts == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5 + [4]
    assert processed == 4


def test_seed_celeryconfig_has_both_entries_and_crontab_fires_at_1430_local(
    tmp_path: Path,
) -> None:
    folder = copy_example("seeds/002_celery_app_imports_beat", tmp_path)
    # 14:30 in Asia/Shanghai is 06:30 UTC.
    clock = FakeClock(datetime(2024, 3, 1, 6, 0, tzinfo=UTC))
    with imported(folder, "celery_app") as module:
        app = module.app
        beat = start_beat(app, clock)
        names = sorted(entry.name for entry in app.schedules.list())
        multiply_runs = []
        for _ in range(13):  # 06:00 .. 07:00 UTC in 5-minute steps
            beat.tick()
            entry = app.schedules.get("multiply-every-30-seconds")
            multiply_runs.append(entry.total_run_count)
            clock.advance(timedelta(minutes=5))
    assert names == ["add-every-30-seconds", "multiply-every-30-seconds"]
    # Fired exactly once, at the 06:30 UTC tick (index 6).
    assert multiply_runs[:6] == [0] * 6
    assert multiply_runs[6:] == [1] * 7
