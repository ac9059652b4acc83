#tasks.py
from liteq import Celery

app = Celery('tasks',  backend='sqlite:///tasks.db', broker='sqlite:///tasks.db') #配置好celery的backend和broker (liteq: one SQLite file; was redis://localhost:6379/0)

@app.task  #普通函数装饰为 celery task
def add(x, y):
    return x + y
