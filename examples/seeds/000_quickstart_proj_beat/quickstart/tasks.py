from liteq import Celery

# liteq: the broker and the result backend are one SQLite file (the document
# used redis://127.0.0.1:6379/5 and /6, and spelled the first name "brokers").
broker = 'sqlite:///tasks.db'
backend = 'sqlite:///tasks.db'

app = Celery('tasks', broker=broker, backend=backend)

@app.task
def add(x, y):
    return x + y
