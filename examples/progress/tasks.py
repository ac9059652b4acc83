"""A long task that reports its progress with a custom PROGRESS state."""

import time

from liteq import Celery

app = Celery("tasks", broker="sqlite:///tasks.db")


@app.task(bind=True)
def resize_photos(self, count):
    for done in range(1, count + 1):
        time.sleep(0.05)  # stands in for resizing one photo
        # Every update is stored in the database, in order; nothing is dropped
        # even if the client connects late or reads slowly.
        self.update_state(state="PROGRESS", meta={"done": done, "total": count})
    return f"resized {count} photos"
