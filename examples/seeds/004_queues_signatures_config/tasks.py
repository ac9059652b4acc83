from liteq import Celery

# 保存结果 (storing results): the document's
#   app = Celery('tasks', backend='amqp', broker='amqp://')
#   app = Celery('tasks', backend='redis://localhost', broker='amqp://')
# become one SQLite file that is both broker and result backend:
app = Celery('tasks', backend='sqlite:///tasks.db', broker='sqlite:///tasks.db')
app.config_from_object('celeryconfig')


@app.task
def add(x, y, debug=False):  # debug: the document calls add.s(2, 2, debug=True)
    return x + y


@app.task
def task(arg1, arg2, kwarg1=None, kwarg2=None):  # the document's placeholder task
    return [arg1, arg2, kwarg1, kwarg2]
