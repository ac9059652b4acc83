# file name task.py -- host B: the worker runs these tasks.
from liteq import Celery
import time  # noqa: F401 - kept from the document

broker = 'sqlite:///tasks.db'  # liteq: a SQLite file (was redis://1.1.1.1:6379)
backend = 'sqlite:///tasks.db'


app = Celery('tasks', broker=broker, backend=backend, task_serializer='pickle')
app.conf.update(CELERY_ACCEPT_CONTENT = ['pickle'], CELERY_RESULT_SERIALIZER = 'pickle')

@app.task(serializer="pickle")
def add(x, y):
    return x + y
