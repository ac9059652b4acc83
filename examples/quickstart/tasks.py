"""The quick start: one task, and one SQLite file as broker and result backend."""

from liteq import Celery

# Celery would say broker="redis://localhost:6379/0"; liteq needs only a file.
app = Celery("tasks", broker="sqlite:///tasks.db")


@app.task
def add(x, y):
    return x + y
