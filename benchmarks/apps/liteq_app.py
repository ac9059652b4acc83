"""liteq task module for the benchmarks (imported by the worker and clients).

Environment: ``BENCH_DB`` (SQLite file), ``BENCH_DURABLE=1`` for
``durable=True`` (synchronous=FULL instead of the default NORMAL),
``BENCH_TUNED=1`` for the tuned rows (``worker_pool="solo"``: the worker runs
each task itself, with no hand-off to a pool process).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from liteq import Liteq

_options: dict[str, Any] = {}
if os.environ.get("BENCH_DURABLE") == "1":
    _options["durable"] = True

app = Liteq("bench", broker=f"sqlite:///{os.environ['BENCH_DB']}", **_options)
if os.environ.get("BENCH_TUNED") == "1":
    app.conf.worker_pool = "solo"


@app.task
def noop(i: int) -> int:
    """Return the argument unchanged; the result is stored."""
    return i


def enqueue_one(i: int) -> None:
    """One producer call."""
    noop.delay(i)


def _bulk_enqueue_many(n: int) -> None:
    results = app.enqueue_many(noop, ((i,) for i in range(n)))
    if len(results) != n:
        raise RuntimeError(f"enqueue_many returned {len(results)} results for {n}")


def _bulk_group(n: int) -> None:
    from liteq import group

    group(noop.s(i) for i in range(n)).apply_async()


BULK: dict[str, Callable[[int], None]] = {
    "enqueue_many": _bulk_enqueue_many,
    "group": _bulk_group,
}


def round_trip(i: int, timeout: float) -> None:
    """Submit one task and wait for its result."""
    value = noop.delay(i).get(timeout=timeout)
    if value != i:
        raise RuntimeError(f"noop({i}) returned {value!r}")


def info() -> dict[str, Any]:
    """Configuration facts worth printing next to the numbers."""
    import liteq

    return {
        "version": getattr(liteq, "__version__", "unknown"),
        "durable": bool(_options.get("durable")),
        "pool": app.conf.worker_pool or "prefork",
    }
