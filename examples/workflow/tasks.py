"""Tasks for the workflow example: fetch pages, count their words, add up."""

from liteq import Celery

app = Celery("tasks", broker="sqlite:///tasks.db")

# Stands in for the network, so the example runs anywhere.
PAGES = {
    "https://example.com/a": "liteq keeps the queue in one file",
    "https://example.com/b": "no server to run",
    "https://example.com/c": "chords never hang",
}


@app.task
def fetch(url):
    return PAGES[url]


@app.task
def count_words(text):
    return len(text.split())


@app.task
def total(counts):
    return sum(counts)


@app.task
def report(words, label):
    return f"{label}: {words} words"
