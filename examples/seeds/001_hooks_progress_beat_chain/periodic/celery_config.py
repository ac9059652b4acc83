# celery_config.py
from datetime import timedelta
from liteq.schedules import crontab  # noqa: F401 - celery.schedules in Celery

CELERYBEAT_SCHEDULE = {
    'ptask': {
        'task': 'tasks.period_task',
        'schedule': timedelta(seconds=5),
    },
}

CELERY_RESULT_BACKEND = 'sqlite:///tasks.db'  # liteq: the broker's file (was redis://localhost:6379/0)

CELERY_TIMEZONE = 'Asia/Shanghai'
