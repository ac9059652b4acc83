"""Huey task module on ``RedisHuey``.

Environment: ``BENCH_REDIS_URL``; ``BENCH_TUNED=1`` turns on
``notify_result=True`` (result waits use BLPOP instead of polling), the
latency option Huey documents. Consumer and clients must agree on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from huey import RedisHuey

huey = RedisHuey(
    "bench",
    url=os.environ["BENCH_REDIS_URL"],
    notify_result=os.environ.get("BENCH_TUNED") == "1",
)


@huey.task()
def noop(i: int) -> int:
    """Return the argument unchanged; the result is stored."""
    return i


def enqueue_one(i: int) -> None:
    """One producer call (calling a Huey task enqueues it)."""
    noop(i)


def _bulk_map(n: int) -> None:
    noop.map(range(n))


BULK: dict[str, Callable[[int], None]] = {"map": _bulk_map}


def round_trip(i: int, timeout: float) -> None:
    """Submit one task and wait for its result."""
    value = noop(i).get(blocking=True, timeout=timeout)
    if value != i:
        raise RuntimeError(f"noop({i}) returned {value!r}")


def info() -> dict[str, Any]:
    """Versions of the pieces in use."""
    from importlib.metadata import version

    return {name: version(name) for name in ("huey", "redis")}
