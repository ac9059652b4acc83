"""The beat configurations of the Celery tutorials we port, run on a FakeClock.

Each configuration below is the tutorial's text with only the broker and
backend lines pointed at a SQLite file (and ``celery.schedules`` spelled
``liteq.schedules``). The assertions are the exact enqueue times.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from liteq import Celery
from liteq.beat import Beat
from liteq.messages import Message
from liteq.testing import FakeClock

UTC = timezone.utc
#: 08:00 in Shanghai, on a Monday.
T0 = datetime(2024, 1, 1, tzinfo=UTC)

SEED_000_INTERVAL = """\
#!/usr/bin/env python
# -*- coding:utf-8 -*-

from __future__ import absolute_import

CELERY_RESULT_BACKEND = 'sqlite:///{db}'
BROKER_URL = 'sqlite:///{db}'

CELERY_TIMEZONE = 'Asia/Shanghai'

from datetime import timedelta

CELERYBEAT_SCHEDULE = {{
    'add-every-30-seconds': {{
         'task': 'proj.tasks.add',
         'schedule': timedelta(seconds=30),
         'args': (16, 16)
    }},
}}
"""

SEED_000_CRONTAB = """\
#!/usr/bin/env python
# -*- coding:utf-8 -*-

from __future__ import absolute_import

CELERY_RESULT_BACKEND = 'sqlite:///{db}'
BROKER_URL = 'sqlite:///{db}'

CELERY_TIMEZONE = 'Asia/Shanghai'

from liteq.schedules import crontab

CELERYBEAT_SCHEDULE = {{
    # Executes every Monday morning at 7:30 A.M
    'add-every-monday-morning': {{
        'task': 'tasks.add',
        'schedule': crontab(hour=7, minute=30, day_of_week=1),
        'args': (16, 16),
    }},
}}
"""

SEED_002 = """\
# celerconfig.py代码如下：
from datetime import timedelta
from liteq.schedules import crontab

# 指定broker
BROKER_URL = 'sqlite:///{db}'
# 指定backend
CELERY_RESULT_BACKEND = 'sqlite:///{db}'

# 指定时区
CELERY_TIMEZONE = 'Asia/Shanghai'

# 指定导入的任务模块
CELERY_IMPORTS = (
    'celery_app.task1',
    'celery_app.task2'
)

# 定时调度schedules
CELERYBEAT_SCHEDULE={{
    'add-every-30-seconds':{{
        'task':'celery_app.task1.add',
        'schedule':timedelta(seconds=30),  # 每30秒执行一次
        'args':(2,3)                        # 任务函数参数
    }},

    'multiply-every-30-seconds':{{
        'task':'celery_app.task2.multiply',
        'schedule':crontab(hour=14,minute=30), # 每天下午2点30分执行一次
        'args':(2,3)                            # 任务函数参数
    }}

}}
"""


@pytest.fixture
def load(db_path: Path, clock: FakeClock) -> Iterator[object]:
    apps: list[Celery] = []

    def make(text: str) -> Celery:
        config = types.ModuleType("config")
        exec(compile(text.format(db=db_path), "config.py", "exec"), config.__dict__)
        app = Celery("proj", clock=clock)
        app.config_from_object(config)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def run_beat(app: Celery, clock: FakeClock, until: datetime) -> None:
    beat = Beat(app, lease_ttl=86400)
    beat.sync_config()
    while clock.now() < until:
        clock.advance(min(beat.tick(), (until - clock.now()).total_seconds()))
    beat.tick()


def enqueued(app: Celery) -> list[tuple[str, datetime, list[int]]]:
    rows = app.storage.db.execute(
        "SELECT name, created_at, message, content_type FROM liteq_task ORDER BY id"
    )
    return [
        (name, datetime.fromtimestamp(ts, UTC), list(Message.decode(data, ct).args))
        for name, ts, data, ct in rows
    ]


def test_seed_000_every_30_seconds(load: object, clock: FakeClock) -> None:
    app = load(SEED_000_INTERVAL)  # type: ignore[operator]
    run_beat(app, clock, T0 + timedelta(minutes=5))
    assert enqueued(app) == [
        ("proj.tasks.add", T0 + timedelta(seconds=30 * n), [16, 16])
        for n in range(1, 11)
    ]


def test_seed_000_every_monday_at_0730_shanghai(load: object, clock: FakeClock) -> None:
    app = load(SEED_000_CRONTAB)  # type: ignore[operator]
    run_beat(app, clock, T0 + timedelta(days=15))
    # Monday 1 January 07:30 had passed at 08:00; then 8 and 15 January, 07:30 CST.
    assert enqueued(app) == [
        ("tasks.add", datetime(2024, 1, 7, 23, 30, tzinfo=UTC), [16, 16]),
        ("tasks.add", datetime(2024, 1, 14, 23, 30, tzinfo=UTC), [16, 16]),
    ]


def test_seed_002_interval_and_daily_crontab(load: object, clock: FakeClock) -> None:
    app = load(SEED_002)  # type: ignore[operator]
    run_beat(app, clock, datetime(2024, 1, 1, 7, tzinfo=UTC))
    sent = enqueued(app)
    # 14:30 in Shanghai is 06:30 UTC.
    daily = [when for name, when, _ in sent if name == "celery_app.task2.multiply"]
    assert daily == [datetime(2024, 1, 1, 6, 30, tzinfo=UTC)]
    every = [when for name, when, _ in sent if name == "celery_app.task1.add"]
    assert every == [T0 + timedelta(seconds=30 * n) for n in range(1, 7 * 120 + 1)]
    assert {tuple(args) for _, _, args in sent} == {(2, 3)}
