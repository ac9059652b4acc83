"""The web app's background work."""

import time

from liteq import Celery

app = Celery("tasks", broker="sqlite:///tasks.db")


@app.task
def make_thumbnail(name, size):
    time.sleep(0.2)  # stands in for slow work you keep out of the request
    return f"{name} resized to {size}x{size}"
