"""Claim latency of liteq's queue with a deep backlog (one scenario per run).

Uses liteq's storage layer directly (``liteq.storage.Storage``): rows are
bulk-loaded with ``storage.broker.enqueue_many`` and claimed one at a time
with ``storage.claim(worker_id, queues, limit=1, now, lease)`` — the same
transaction a worker runs (promote due rows, then lease the next ready one).
Nothing executes the tasks, so the messages are placeholders.

Scenarios, each on a fresh database file:

* ``baseline``: only the ready rows that get claimed (``--claims``, after a
  warm-up of 10 %), then as many claims on the now empty queue ("empty poll");
* ``ready``: ``--rows`` ready rows, then ``--claims`` claims;
* ``future``: ``--rows`` rows due in a day plus ``--claims`` ready rows, then
  the claims, then empty polls (1M rows present, none due).

Writes ``{"metrics": {...}, "notes": {...}, "plan": [...]}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

FUTURE = 86_400.0
QUEUE = "celery"
LEASE = 300.0
MESSAGE = b'{"args": [0], "kwargs": {}}'


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def new_tasks(new_task: Any, n: int, eta: float | None) -> Iterator[Any]:
    """``n`` placeholder rows for the bench task."""
    for _ in range(n):
        yield new_task(
            task_id=uuid.uuid4().hex,
            name="liteq_app.noop",
            message=MESSAGE,
            queue=QUEUE,
            eta=eta,
        )


def load(storage: Any, new_task: Any, n: int, eta: float | None) -> float:
    """Bulk-insert n rows in one call; returns rows/s."""
    t0 = time.perf_counter()
    inserted = storage.broker.enqueue_many(new_tasks(new_task, n, eta), time.time())
    elapsed = time.perf_counter() - t0
    if inserted != n:
        raise RuntimeError(f"enqueue_many inserted {inserted} rows of {n}")
    return n / elapsed


def timed(claim: Callable[[], list[Any]], count: int, expect: int) -> list[float]:
    """Call ``claim`` count times, checking it returns ``expect`` rows each."""
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        got = claim()
        out.append(time.perf_counter() - t0)
        if len(got) != expect:
            raise RuntimeError(f"claim returned {len(got)} rows, expected {expect}")
    return out


def plans(storage: Any) -> list[str]:
    """EXPLAIN QUERY PLAN of the lookups behind a claim."""
    queries = [
        ("promote", "SELECT id FROM liteq_task WHERE state = 0 AND eta <= ? ORDER BY eta LIMIT 1000", (0.0,)),
        ("claim", "SELECT id FROM liteq_task WHERE state = 1 AND queue = ? ORDER BY priority DESC, id LIMIT 1", (QUEUE,)),
    ]  # fmt: skip
    out = []
    for label, sql, params in queries:
        rows = storage.db.execute("EXPLAIN QUERY PLAN " + sql, params)
        out.append(f"{label}: " + "; ".join(str(r[-1]) for r in rows))
    return out


def main() -> None:
    """Run one scenario and write its metrics."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--scenario", choices=["baseline", "ready", "future"], required=True
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=1_000)
    parser.add_argument("--db", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    try:
        from liteq.storage import NewTask, Storage
    except ImportError as exc:
        raise SystemExit(f"liteq.storage is not importable: {exc}") from exc

    storage = Storage(args.db)
    key = args.scenario
    metrics: dict[str, float] = {}
    if key == "ready":
        metrics["deep_load_ready_tps"] = load(storage, NewTask, args.rows, None)
    elif key == "future":
        metrics["deep_load_future_tps"] = load(
            storage, NewTask, args.rows, time.time() + FUTURE
        )
    warmup = max(10, args.claims // 10)
    load(storage, NewTask, warmup + args.claims, None)

    def claim() -> list[Any]:
        return list(storage.claim("bench-deep-queue", [QUEUE], 1, time.time(), LEASE))

    timed(claim, warmup, expect=1)  # statement cache, page cache
    lat = timed(claim, args.claims, expect=1)
    metrics[f"deep_{key}_claim_p50_us"] = percentile(lat, 50) * 1e6
    metrics[f"deep_{key}_claim_p99_us"] = percentile(lat, 99) * 1e6
    if key in ("baseline", "future"):
        lat = timed(claim, args.claims, expect=0)
        metrics[f"deep_{key}_poll_p50_us"] = percentile(lat, 50) * 1e6
        metrics[f"deep_{key}_poll_p99_us"] = percentile(lat, 99) * 1e6

    notes = {"api": "liteq.storage.Storage: broker.enqueue_many, claim(limit=1)"}
    out = {"metrics": metrics, "notes": notes, "plan": plans(storage)}
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
