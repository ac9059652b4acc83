# tasks.py
from liteq import Celery

app = Celery('tasks', backend='sqlite:///tasks.db', broker='sqlite:///tasks.db')  # liteq: one SQLite file
app.config_from_object('celery_config')

@app.task(bind=True)
def period_task(self):
    print('period task done: {0}'.format(self.request.id))
