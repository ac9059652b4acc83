"""A Flask app that queues work in a request and shows the result later.

``make_thumbnail.delay()`` in the request, ``AsyncResult(id)`` to look it up:
the same two calls as with Celery.

    pip install flask
    liteq worker tasks.db -l info      # in another terminal
    python flask_app.py                # then open http://127.0.0.1:8000/
"""

import logging
import sys

from flask import Flask, request
from tasks import app as tasks_app
from tasks import make_thumbnail
from werkzeug.serving import make_server

from liteq.exceptions import TimeoutError  # celery.exceptions.TimeoutError

PAGE = """<!doctype html><title>thumbnails</title>
<form method="post" action="/thumbnails">
  <input name="name" value="cat.jpg"> <input name="size" value="128">
  <button>make thumbnail</button>
</form>"""

web = Flask(__name__)


@web.get("/")
def home():
    return PAGE


@web.post("/thumbnails")
def start():
    name, pixels = request.form["name"], int(request.form["size"])
    # Queued in the request; a worker does the slow part.
    result = make_thumbnail.delay(name, pixels)
    return {"task_id": result.id, "status_url": f"/thumbnails/{result.id}"}, 202


@web.get("/thumbnails/<task_id>")
def status(task_id):
    result = tasks_app.AsyncResult(task_id)
    wait = request.args.get("wait", type=float)
    if wait and not result.ready():
        # ?wait=5: hold the request until the task is done (or 5 s pass).
        try:
            result.get(timeout=wait, propagate=False)
        except TimeoutError:
            pass
    if not result.exists():
        return {"error": "no such task"}, 404
    body = {"state": result.state}
    if result.successful():
        body["result"] = result.result
    elif result.failed():
        body["error"] = repr(result.result)
    return body


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    # make_server instead of web.run(): port 0 picks a free port we can print.
    server = make_server("127.0.0.1", port, web, threaded=True)
    print(f"serving on http://127.0.0.1:{server.server_port}/", flush=True)
    server.serve_forever()
