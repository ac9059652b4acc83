# 错误示范 (the wrong way): waiting for a task inside a task.
# Celery refuses this with RuntimeError, and so does liteq: the blocked task
# holds a worker slot that the task it waits for may need.
from liteq import Celery

import myhttplib
import myparser
from models import PageInfo

app = Celery('wrong_way', backend='sqlite:///tasks.db', broker='sqlite:///tasks.db')


@app.task
def update_page_info(url):
    page = fetch_page.delay(url).get()
    info = parse_page.delay(url, page).get()
    store_page_info.delay(url, info)

@app.task
def fetch_page(url):
    return myhttplib.get(url)

@app.task
def parse_page(url, page):
    return myparser.parse_document(page)

@app.task
def store_page_info(url, info):
    return PageInfo.objects.create(url, info)
