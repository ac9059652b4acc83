"""Huey task module on ``SqliteHuey`` with its default storage options.

Environment: ``BENCH_DB`` (SQLite file). SqliteHuey does not set
``PRAGMA synchronous`` unless ``fsync=`` is given, so SQLite's compile-time
default applies (FULL in stock builds); :func:`info` reports what it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.environ["BENCH_DB"])


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
    """Huey version and the SQLite settings of Huey's own connection."""
    from importlib.metadata import version

    conn = huey.storage.conn
    return {
        "huey": version("huey"),
        "synchronous": conn.execute("pragma synchronous").fetchone()[0],
        "journal_mode": conn.execute("pragma journal_mode").fetchone()[0],
    }
