#!/usr/bin/env python
# -*- coding:utf-8 -*-

from __future__ import absolute_import

# liteq: both settings name the same SQLite file (was redis://127.0.0.1:6379/5 and /6).
CELERY_RESULT_BACKEND = 'sqlite:///tasks.db'
BROKER_URL = 'sqlite:///tasks.db'

CELERY_TIMEZONE = 'Asia/Shanghai'

from liteq.schedules import crontab

CELERYBEAT_SCHEDULE = {
    # Executes every Monday morning at 7:30 A.M
    'add-every-monday-morning': {
        # The document says 'tasks.add'; the task defined in proj/tasks.py is
        # registered as 'proj.tasks.add' (in Celery too).
        'task': 'proj.tasks.add',
        'schedule': crontab(hour=7, minute=30, day_of_week=1),
        'args': (16, 16),
    },
}
