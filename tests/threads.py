"""Thread helpers for tests that make something happen while the test waits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liteq.worker import Worker


@contextmanager
def later(delay: float, action: Callable[[], Any]) -> Iterator[threading.Timer]:
    """Run ``action`` in a timer thread after ``delay`` seconds.

    On leaving the block the timer is cancelled if it has not fired, and
    joined if it has: a wait that returns as soon as the action *starts*
    (a file event comes with the first write of a commit) must not let the
    test close a connection the action is still using. Closing a sqlite3
    connection while another thread executes on it can crash the process.
    """
    timer = threading.Timer(delay, action)
    timer.start()
    try:
        yield timer
    finally:
        timer.cancel()
        timer.join(30)


def run_in_thread(
    worker: Worker, burst: bool = False
) -> tuple[threading.Thread, list[int]]:
    """Start ``worker.run(burst)`` in a thread; its exit code lands in the list."""
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(worker.run(burst=burst)))
    thread.start()
    return thread, codes
