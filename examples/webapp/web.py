"""A web app that queues work in a request and shows the result later.

Standard library only (wsgiref); the same three calls work in Flask, Django or
FastAPI: ``task.delay()`` in the request, ``AsyncResult(id)`` to look it up.

    liteq worker tasks.db -l info      # in another terminal
    python web.py                      # then open http://127.0.0.1:8000/
"""

import json
import sys
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from tasks import app, make_thumbnail

from liteq.exceptions import TimeoutError  # celery.exceptions.TimeoutError

PAGE = """<!doctype html><title>thumbnails</title>
<form method="post" action="/thumbnails">
  <input name="name" value="cat.jpg"> <input name="size" value="128">
  <button>make thumbnail</button>
</form>"""


def respond(start_response, status, body, content_type="application/json"):
    if not isinstance(body, str):
        body = json.dumps(body)
    start_response(status, [("Content-Type", content_type)])
    return [body.encode()]


def application(environ, start_response):
    method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
    if method == "GET" and path == "/":
        return respond(start_response, "200 OK", PAGE, "text/html")
    if method == "POST" and path == "/thumbnails":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(size).decode())
        name, pixels = form["name"][0], int(form["size"][0])
        # Queued in the request; a worker does the slow part.
        result = make_thumbnail.delay(name, pixels)
        body = {"task_id": result.id, "status_url": f"/thumbnails/{result.id}"}
        return respond(start_response, "202 Accepted", body)
    if method == "GET" and path.startswith("/thumbnails/"):
        result = app.AsyncResult(path.rsplit("/", 1)[1])
        wait = parse_qs(environ.get("QUERY_STRING", "")).get("wait")
        if wait and not result.ready():
            # ?wait=5: hold the request until the task is done (or 5 s pass).
            try:
                result.get(timeout=float(wait[0]), propagate=False)
            except TimeoutError:
                pass
        if not result.exists():
            return respond(start_response, "404 Not Found", {"error": "no such task"})
        body = {"state": result.state}
        if result.successful():
            body["result"] = result.result
        elif result.failed():
            body["error"] = repr(result.result)
        return respond(start_response, "200 OK", body)
    return respond(start_response, "404 Not Found", {"error": "not found"})


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code="-", size="-"):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    with make_server(
        "127.0.0.1", port, application, handler_class=QuietHandler
    ) as server:
        print(f"serving on http://127.0.0.1:{server.server_port}/", flush=True)
        server.serve_forever()
