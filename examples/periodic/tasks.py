"""Periodic jobs: the schedule lives in the same SQLite file as the queue.

    liteq -A tasks worker -B -l info     # a worker with beat embedded

``-A tasks`` names the app, so beat sees its ``beat_schedule``. Start as many
``-B`` workers (or ``liteq -A tasks beat`` processes) as you like: each
occurrence is still sent exactly once. In Celery, two beats send every task
twice.
"""

import shutil
from datetime import timedelta

from liteq import Celery
from liteq.schedules import crontab

app = Celery("tasks", broker="sqlite:///tasks.db")
app.conf.timezone = "Europe/Berlin"  # crontab entries use this zone
app.conf.beat_schedule = {
    "check-disk-every-10-seconds": {
        "task": "tasks.check_disk",
        "schedule": timedelta(seconds=10),
    },
    "report-on-weekday-mornings": {
        "task": "tasks.send_report",
        "schedule": crontab(hour=7, minute=30, day_of_week="mon-fri"),
        "args": ("daily",),
    },
}


@app.task
def check_disk():
    usage = shutil.disk_usage(".")
    return f"disk {100 * usage.used // usage.total}% used"


@app.task
def send_report(kind):
    return f"{kind} report sent"
