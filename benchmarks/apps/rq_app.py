"""RQ task module: queue ``bench`` on Redis (``BENCH_REDIS_URL``)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import Queue

connection = Redis.from_url(os.environ["BENCH_REDIS_URL"])
queue = Queue("bench", connection=connection)


def noop(i: int) -> int:
    """Return the argument unchanged; the result is stored."""
    return i


def enqueue_one(i: int) -> None:
    """One producer call."""
    queue.enqueue(noop, i)


def _bulk_enqueue_many(n: int) -> None:
    queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in range(n)])


BULK: dict[str, Callable[[int], None]] = {"enqueue_many": _bulk_enqueue_many}


def round_trip(i: int, timeout: float) -> None:
    """Submit one job and block on its result stream."""
    job = queue.enqueue(noop, i)
    result = job.latest_result(timeout=max(1, math.ceil(timeout)))
    if result is None or result.return_value != i:
        raise RuntimeError(f"noop({i}) gave {result!r}")


def info() -> dict[str, Any]:
    """Versions of the pieces in use."""
    from importlib.metadata import version

    return {name: version(name) for name in ("rq", "redis")}
