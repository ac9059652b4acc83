# tasks.py -- 正确示范 (the right way): callbacks, not blocking calls
from liteq import Celery

import myhttplib
import myparser
from models import PageInfo

app = Celery('tasks', backend='sqlite:///tasks.db', broker='sqlite:///tasks.db')  # liteq: one SQLite file


# 正确示范1
def update_page_info(url):
    # fetch_page -> parse_page -> store_page
    chain = fetch_page.s(url) | parse_page.s() | store_page_info.s(url)
    chain()

@app.task()
def fetch_page(url):
    return myhttplib.get(url)

@app.task()
def parse_page(page):
    return myparser.parse_document(page)

@app.task(ignore_result=True)
def store_page_info(info, url):
    PageInfo.objects.create(url=url, info=info)
