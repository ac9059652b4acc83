# The document's promise example ran under gevent with backend='rpc'. liteq
# needs neither: then() callbacks run in a background thread that wakes when
# the database changes, and results always live in the broker's file.
import threading

from liteq import AsyncResult, Celery

app = Celery('promise', broker='sqlite:///tasks.db')  # was broker='amqp://', backend='rpc'

@app.task
def add(x, y):
    return x + y

done = threading.Event()

def on_result_ready(result):
    print('Received result for id %r: %r' % (result.id, result.result,))
    done.set()

if __name__ == '__main__':  # the worker imports this module to find add()
    result = add.delay(2, 2)
    result.then(on_result_ready)
    done.wait(timeout=60)  # liteq: keep the script alive until the callback ran

    # A result looked up by its task id (the tutorial's AsyncResult(task_id=xxx);
    # the parameter is named id, in Celery too).
    print(AsyncResult(result.id).get(timeout=10))
