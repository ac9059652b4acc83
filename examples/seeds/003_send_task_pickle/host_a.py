# file name: host_a.py -- sends a task by name; run it next to task.py's worker.
# liteq: "host A" and "host B" are two programs on the same machine sharing one
# SQLite file (liteq is one host; the document used a Redis server at 1.1.1.1).
from liteq import Celery
import time

broker = 'sqlite:///tasks.db'
backend = 'sqlite:///tasks.db'


app = Celery('tasks', broker=broker, backend=backend, task_serializer='pickle')
app.conf.update(CELERY_ACCEPT_CONTENT = ['pickle'], CELERY_RESULT_SERIALIZER = 'pickle')

@app.task(serializer="pickle")
def add(x, y):
    return x + y


result = app.send_task('task.add', [1,2])
time.sleep(1)
print(result.ready())
print(result.result)
