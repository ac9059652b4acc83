# tasks.py
from liteq import Celery
from liteq.utils.log import get_task_logger  # celery.utils.log in Celery

app = Celery('tasks',  backend='sqlite:///tasks.db', broker='sqlite:///tasks.db') #配置好celery的backend和broker (liteq: one SQLite file; was redis://localhost:6379/0)

logger = get_task_logger(__name__)
@app.task(bind=True)
def add(self, x, y):
    logger.info(self.request.__dict__)
    return x + y
