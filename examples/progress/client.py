"""Start the long task and draw a progress bar while it runs.

Run in this folder:

    liteq worker tasks.db -l info      # in another terminal
    python client.py
"""

import sys

from tasks import resize_photos

WIDTH = 30


def show(meta):
    """Called with every state change of the task, in order."""
    if meta["status"] == "PROGRESS":
        done, total = meta["result"]["done"], meta["result"]["total"]
        bar = "#" * (WIDTH * done // total)
        sys.stdout.write(f"\r[{bar:<{WIDTH}}] {done}/{total}")
        sys.stdout.flush()


result = resize_photos.delay(20)
print(f"task {result.id}")
value = result.get(on_message=show, timeout=120)
print()
print(value)
