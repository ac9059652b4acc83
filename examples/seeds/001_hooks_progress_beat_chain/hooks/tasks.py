# tasks.py
from liteq import Celery, Task

app = Celery('tasks',  backend='sqlite:///tasks.db', broker='sqlite:///tasks.db') #配置好celery的backend和broker (liteq: one SQLite file; was redis://localhost:6379/0)


class MyTask(Task):
    def on_success(self, retval, task_id, args, kwargs):
        print('task done: {0}'.format(retval))
        return super(MyTask, self).on_success(retval, task_id, args, kwargs)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        print('task fail, reason: {0}'.format(exc))
        return super(MyTask, self).on_failure(exc, task_id, args, kwargs, einfo)

@app.task(base=MyTask)
def add(x, y):
    return x + y


# The document's second run edits add() to raise KeyError; here it is a second
# task so both runs fit in one file. (The document also dropped base=MyTask
# there, which would skip on_failure; it is kept.)
@app.task(base=MyTask)
def add_fails(x, y):
    raise KeyError('x')
    return x + y
