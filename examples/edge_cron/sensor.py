"""An edge box that records readings and uploads them when it can.

Recording never waits for the network: it queues an upload in edge.db and
returns. A cron job drains the queue every few minutes with a worker that
exits once nothing is due (``liteq worker edge.db --burst``); uploads that fail
are retried by a later run, and nothing is lost across reboots.

    python sensor.py 21.5            # record a reading (e.g. from another cron job)
    ./drain.sh                       # what cron runs: see crontab.txt
"""

import json
import os
import sys
import time

from liteq import Celery

app = Celery("sensor", broker="sqlite:///edge.db")

#: Where uploads go; a real box would POST to a server instead.
OUTBOX = os.environ.get("SENSOR_OUTBOX", "uploaded.jsonl")


@app.task(autoretry_for=(OSError,), retry_backoff=True, max_retries=10)
def upload(reading):
    # A network error (an OSError) leaves the upload queued for a later run.
    with open(OUTBOX, "a", encoding="utf-8") as f:
        f.write(json.dumps(reading, sort_keys=True) + "\n")
    return f"uploaded {reading['celsius']} C"


def record(celsius):
    upload.delay({"celsius": celsius, "at": time.time()})


if __name__ == "__main__":
    record(float(sys.argv[1]))
