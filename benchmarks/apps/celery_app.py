"""Celery 5 task module: Redis as broker (db 0) and result backend (db 1).

Environment: ``BENCH_REDIS_URL`` (broker), ``BENCH_RESULT_URL`` (backend).
Everything else is left at Celery's defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from celery import Celery, group

app = Celery(
    "bench",
    broker=os.environ["BENCH_REDIS_URL"],
    backend=os.environ["BENCH_RESULT_URL"],
)
app.conf.broker_connection_retry_on_startup = True


@app.task(name="bench.noop")
def noop(i: int) -> int:
    """Return the argument unchanged; the result is stored."""
    return i


def enqueue_one(i: int) -> None:
    """One producer call."""
    noop.delay(i)


def _bulk_group(n: int) -> None:
    group(noop.s(i) for i in range(n)).apply_async()


BULK: dict[str, Callable[[int], None]] = {"group": _bulk_group}


def round_trip(i: int, timeout: float) -> None:
    """Submit one task and wait for its result."""
    value = noop.delay(i).get(timeout=timeout)
    if value != i:
        raise RuntimeError(f"noop({i}) returned {value!r}")


def info() -> dict[str, Any]:
    """Versions of the pieces in use."""
    from importlib.metadata import version

    return {name: version(name) for name in ("celery", "kombu", "redis")}
