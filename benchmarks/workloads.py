"""The workloads. Each takes an adapter and returns ``{metric: value}``.

Metric names are the keys used by :mod:`benchmarks.report`; a workload that
fails raises, and the runner records the error and moves on.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .adapter import System
from .procs import RssSampler, poll_until, tree_cpu_seconds
from .systems import Liteq

Metrics = dict[str, float]


@dataclass
class Remarks:
    """Non-fatal errors and informational notes gathered by the workloads."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sizes:
    """How big each workload is."""

    n: int = 20_000
    round_trips: int = 300
    warmup: int = 20
    idle_seconds: float = 10.0
    deep_rows: int = 1_000_000
    deep_claims: int = 1_000
    poll_interval: float = 0.05

    @classmethod
    def quick(cls) -> Sizes:
        """Smaller sizes for a smoke run."""
        return cls(
            n=2_000,
            round_trips=50,
            warmup=5,
            idle_seconds=5.0,
            deep_rows=100_000,
            deep_claims=200,
        )

    def drain_timeout(self, n: int) -> float:
        """Deadline for draining ``n`` tasks (generous: slow peers must finish)."""
        return 120.0 + n / 20.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _prefill(system: System, n: int) -> None:
    """Queue N tasks as fast as the system allows (not timed)."""
    for variant in system.bulk_variants():
        try:
            system.bulk_enqueue(n, variant)
            return
        except RuntimeError:
            system.reset(system.tag)
    system.enqueue(n)


def _drain_size(system: System, sizes: Sizes, remarks: Remarks) -> int:
    """N for W2 and W4, capped for a slow system (and said so in the notes)."""
    n = system.drain_size(sizes.n)
    if n < sizes.n:
        remarks.notes.append(
            f"{system.label}: W2 and W4 with {n:,} tasks instead of {sizes.n:,} "
            "(its worker is too slow to drain N in minutes; rates compare as they are)."
        )
    return n


def _wait_ready(system: System, sizes: Sizes) -> None:
    """Block until the worker has answered a few round trips."""
    system.round_trips(0, warmup=min(3, sizes.warmup), timeout=120)


def w1_enqueue(system: System, sizes: Sizes, remarks: Remarks) -> Metrics:
    """W1: N one-at-a-time calls, then each bulk API, from fresh producers."""
    out: Metrics = {}
    system.reset("w1")
    data = system.enqueue(sizes.n)
    out["w1_enqueue_tps"] = sizes.n / data["elapsed"]
    for variant in system.bulk_variants():
        system.reset(f"w1-{variant}")
        try:
            data = system.bulk_enqueue(sizes.n, variant)
        except RuntimeError as exc:
            remarks.errors.append(f"W1 bulk {variant}: {exc}")
            continue
        out[f"w1_bulk_{variant}_tps"] = sizes.n / data["elapsed"]
    return out


def w2_drain(system: System, sizes: Sizes, remarks: Remarks) -> Metrics:
    """W2: N queued, start the worker, time until every result is stored.

    Also samples the worker tree's summed RSS every 100 ms (peak memory).
    """
    n = _drain_size(system, sizes, remarks)
    system.reset("w2")
    _prefill(system, n)
    first: list[tuple[float, int]] = []

    def seen(ts: float, count: int) -> None:
        if count > 0 and not first:
            first.append((ts, count))

    t0 = time.monotonic()
    pid = system.start_worker()
    with RssSampler(pid, interval=0.1) as rss:
        t_done, _ = poll_until(
            system.count_done,
            lambda c: c >= n,
            timeout=sizes.drain_timeout(n),
            interval=sizes.poll_interval,
            what=f"{n} results",
            on_value=seen,
            alive=system.worker_problem,
        )
    system.stop_worker()
    t1, c1 = first[0]
    return {
        "w2_drain_incl_tps": n / (t_done - t0),
        "w2_drain_excl_tps": (n - c1) / max(t_done - t1, sizes.poll_interval),
        "w2_startup_s": t1 - t0,
        "peak_rss_mb": rss.peak / 2**20,
    }


def w3_round_trip_idle(system: System, sizes: Sizes, remarks: Remarks) -> Metrics:
    """Idle CPU of a warmed-up worker, then W3 sequential round trips.

    Variants other than "default" (documented tunings) restart the worker
    with their settings and only repeat the round trips.
    """
    out: Metrics = {}
    for variant, env in system.w3_variants():
        system.reset(f"w3-{variant}")
        pid = system.start_worker(env)
        try:
            system.round_trips(
                0, warmup=min(3, sizes.warmup), timeout=120, extra_env=env
            )
            if variant == "default":
                out["idle_cpu_pct"] = _idle_cpu_pct(pid, sizes.idle_seconds)
                problem = system.worker_problem()
                if problem:
                    raise RuntimeError(problem)
            lat = system.round_trips(sizes.round_trips, sizes.warmup, extra_env=env)
        finally:
            system.stop_worker()
        prefix = "w3" if variant == "default" else f"w3_{variant}"
        for q in (50, 90, 99):
            out[f"{prefix}_p{q}_ms"] = percentile(lat, q) * 1000.0
    return out


def _idle_cpu_pct(pid: int, seconds: float) -> float:
    """CPU used by the worker tree over ``seconds``, in % of one core."""
    before = tree_cpu_seconds(pid)
    t0 = time.monotonic()
    time.sleep(seconds)  # measurement window, not synchronisation
    after = tree_cpu_seconds(pid)
    elapsed = time.monotonic() - t0
    used = sum(after[p] - before.get(p, 0.0) for p in after)
    return 100.0 * used / elapsed


def w4_mixed(system: System, sizes: Sizes, remarks: Remarks) -> Metrics:
    """W4: a producer enqueues N at full speed while the worker drains.

    Variants other than "default" (documented tunings) start the worker with
    their settings.
    """
    out: Metrics = {}
    for variant, env in system.w4_variants():
        prefix = "w4" if variant == "default" else f"w4_{variant}"
        mixed, producer = _w4_once(system, sizes, variant, env, remarks)
        out[f"{prefix}_mixed_tps"] = mixed
        out[f"{prefix}_producer_tps"] = producer
    return out


def _w4_once(
    system: System,
    sizes: Sizes,
    variant: str,
    env: dict[str, str],
    remarks: Remarks,
) -> tuple[float, float]:
    """One W4 run: (first enqueue to last result, producer rate), tasks/s."""
    n = _drain_size(system, sizes, remarks)
    system.reset("w4" if variant == "default" else f"w4-{variant}")
    system.start_worker(env)
    try:
        _wait_ready(system, sizes)
        base = system.count_done()
        producer, out_path = system.start_client("enqueue", n=n)

        def problems() -> str | None:
            worker = system.worker_problem()
            if worker:
                return worker
            if producer.poll() not in (None, 0):
                return system.ctx.registry.problem(producer)
            return None

        t_done, _ = poll_until(
            system.count_done,
            lambda c: c >= base + n,
            timeout=sizes.drain_timeout(n),
            interval=sizes.poll_interval,
            what=f"{n} results",
            alive=problems,
        )
        poll_until(
            producer.poll,
            lambda rc: rc is not None,
            timeout=60,
            what="the producer to exit",
        )
        system.ctx.registry.stop(producer.pid)
        data: dict[str, Any] = json.loads(out_path.read_text())
    finally:
        system.stop_worker()
    return n / (t_done - data["t_start"]), n / data["elapsed"]


def deep_queue(system: System, sizes: Sizes, remarks: Remarks) -> Metrics:
    """liteq only: claim latency with a deep ready / future-ETA backlog."""
    if not isinstance(system, Liteq):
        return {}
    data = system.deep_queue(sizes.deep_rows, sizes.deep_claims)
    for key, value in data["notes"].items():
        remarks.notes.append(f"deep queue {key}: {value}")
    remarks.notes.extend(f"deep queue plan: {line}" for line in data["plan"])
    return {key: float(value) for key, value in data["metrics"].items()}


WORKLOADS: dict[str, Callable[[System, Sizes, Remarks], Metrics]] = {
    "w1": w1_enqueue,
    "w2": w2_drain,
    "w3": w3_round_trip_idle,
    "w4": w4_mixed,
    "deep": deep_queue,
}


def summarize(values: list[float]) -> dict[str, float | list[float]]:
    """Median, min and max of one metric over repetitions."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }
