# tasks.py
from liteq import Celery
import time

app = Celery('tasks',  backend='sqlite:///tasks.db', broker='sqlite:///tasks.db') #配置好celery的backend和broker (liteq: one SQLite file; was redis://localhost:6379/0)

@app.task
def add(x, y):
    return x + y

@app.task(bind=True)
def test_mes(self):
    for i in range(1, 11):  # xrange in Python 2
        time.sleep(0.1)
        self.update_state(state="PROGRESS", meta={'p': i*10})
    return 'finish'
