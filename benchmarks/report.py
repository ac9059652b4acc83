"""Markdown tables and targets from a results document (see runner.run)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# (metric key, label, higher is better)
METRICS: list[tuple[str, str, bool]] = [
    ("w1_enqueue_tps", "W1 enqueue, one call each (tasks/s)", True),
    ("w1_bulk_*", "W1 bulk {variant} (tasks/s)", True),
    ("w2_drain_incl_tps", "W2 drain incl. start-up (tasks/s)", True),
    ("w2_drain_excl_tps", "W2 drain excl. start-up (tasks/s)", True),
    ("w2_startup_s", "W2 worker start to first result (s)", False),
    ("w3_p50_ms", "W3 round trip p50 (ms)", False),
    ("w3_p90_ms", "W3 round trip p90 (ms)", False),
    ("w3_p99_ms", "W3 round trip p99 (ms)", False),
    ("w3_tuned_p50_ms", "W3 tuned round trip p50 (ms)", False),
    ("w3_tuned_p90_ms", "W3 tuned round trip p90 (ms)", False),
    ("w3_tuned_p99_ms", "W3 tuned round trip p99 (ms)", False),
    ("w4_mixed_tps", "W4 mixed, first enqueue to last result (tasks/s)", True),
    ("w4_producer_tps", "W4 producer rate while draining (tasks/s)", True),
    (
        "w4_tuned_mixed_tps",
        "W4 tuned mixed, first enqueue to last result (tasks/s)",
        True,
    ),
    ("w4_tuned_producer_tps", "W4 tuned producer rate while draining (tasks/s)", True),
    ("idle_cpu_pct", "Idle worker CPU (% of one core)", False),
    ("peak_rss_mb", "Worker + children peak RSS during W2 (MiB)", False),
    ("deep_baseline_claim_p50_us", "Deep queue: claim p50, small queue (µs)", False),
    ("deep_baseline_claim_p99_us", "Deep queue: claim p99, small queue (µs)", False),
    ("deep_ready_claim_p50_us", "Deep queue: claim p50, 1M ready rows (µs)", False),
    ("deep_ready_claim_p99_us", "Deep queue: claim p99, 1M ready rows (µs)", False),
    ("deep_future_claim_p50_us", "Deep queue: claim p50, 1M future rows (µs)", False),
    ("deep_future_claim_p99_us", "Deep queue: claim p99, 1M future rows (µs)", False),
    (
        "deep_baseline_poll_p50_us",
        "Deep queue: empty poll p50, empty queue (µs)",
        False,
    ),
    (
        "deep_future_poll_p50_us",
        "Deep queue: empty poll p50, 1M future rows (µs)",
        False,
    ),
    (
        "deep_load_ready_tps",
        "Deep queue: storage enqueue_many, ready rows (rows/s)",
        True,
    ),
    (
        "deep_load_future_tps",
        "Deep queue: storage enqueue_many, future rows (rows/s)",
        True,
    ),
    (
        "bg_other_cpu_pct",
        "Other processes' CPU, busiest workload (% of machine)",
        False,
    ),
]

PEER_NA = "n/a (run with --peers)"
#: Background CPU (% of the machine) from which a workload is flagged as noisy.
NOISY_PCT = 10.0


def metric_rows(doc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The metrics present in ``doc``, in display order, bulk variants expanded."""
    present: set[str] = set()
    for entry in doc["systems"].values():
        present.update(entry["metrics"])
    rows = []
    for key, label, higher in METRICS:
        if key == "w1_bulk_*":
            for name in sorted(k for k in present if k.startswith("w1_bulk_")):
                variant = name[len("w1_bulk_") : -len("_tps")]
                rows.append((name, label.format(variant=variant), higher))
        elif key in present:
            rows.append((key, label, higher))
    return rows


def fmt(value: float) -> str:
    """Human number: thousands separators, 3 significant digits when small."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def cell(stats: dict[str, Any] | None) -> str:
    """``median [min–max]`` (just the value for a single repetition)."""
    if stats is None:
        return "—"
    if len(stats["values"]) == 1:
        return fmt(stats["median"])
    return f"{fmt(stats['median'])} [{fmt(stats['min'])}–{fmt(stats['max'])}]"


def table(header: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def median(doc: dict[str, Any], system: str, metric: str) -> float | None:
    """Median of a metric, None if the system or metric is absent."""
    entry = doc["systems"].get(system)
    if entry is None or metric not in entry["metrics"]:
        return None
    return float(entry["metrics"][metric]["median"])


def results_table(doc: dict[str, Any]) -> str:
    """Every metric for every system."""
    names = list(doc["systems"])
    header = ["Metric"] + [doc["systems"][n]["label"] for n in names]
    rows = []
    for key, label, _ in metric_rows(doc):
        rows.append(
            [label] + [cell(doc["systems"][n]["metrics"].get(key)) for n in names]
        )
    return table(header, rows)


def ratios(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """liteq/peer ratio of medians: ``{liteq variant: {peer: {metric: x}}}``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    systems = doc["systems"]
    mine = [n for n, e in systems.items() if not e["peer"]]
    peers = [n for n, e in systems.items() if e["peer"]]
    for own in mine:
        for peer in peers:
            for key, _, _ in metric_rows(doc):
                if key.startswith("bg_"):
                    continue
                a, b = median(doc, own, key), median(doc, peer, key)
                if a is not None and b:
                    out.setdefault(own, {}).setdefault(peer, {})[key] = a / b
    return out


def ratios_tables(doc: dict[str, Any]) -> list[str]:
    """One table per liteq variant: liteq / peer per metric."""
    found = ratios(doc)
    out = []
    for own, by_peer in found.items():
        peers = list(by_peer)
        header = [f"{doc['systems'][own]['label']} ÷ peer"] + [
            doc["systems"][p]["label"] for p in peers
        ]
        rows = []
        for key, label, higher in metric_rows(doc):
            values = [by_peer[p].get(key) for p in peers]
            if all(v is None for v in values):
                continue
            better = "higher is better" if higher else "lower is better"
            rows.append(
                [f"{label}, {better}"]
                + ["—" if v is None else f"{v:.2f}x" for v in values]
            )
        out.append(table(header, rows))
    return out


@dataclass(frozen=True)
class Target:
    """One target from the issue."""

    label: str
    metric: str
    kind: str  # "min", "max", "peer_ratio", "vs_metric", "below_peers"
    bound: float = 0.0
    other: tuple[str, ...] = ()


TARGETS = [
    Target("W1 enqueue, one call each ≥ 2.5x Huey-SQLite", "w1_enqueue_tps", "peer_ratio", 2.5, ("huey_sqlite",)),
    Target("W1 enqueue, one call each ≥ 15x Celery-Redis", "w1_enqueue_tps", "peer_ratio", 15, ("celery_redis",)),
    Target("W1 bulk (enqueue_many) ≥ 100,000 tasks/s", "w1_bulk_enqueue_many_tps", "min", 100_000),
    Target("W2 drain (excl. start-up) ≥ 5x Huey-SQLite", "w2_drain_excl_tps", "peer_ratio", 5, ("huey_sqlite",)),
    Target("W2 drain (excl. start-up) ≥ 20x Celery-Redis", "w2_drain_excl_tps", "peer_ratio", 20, ("celery_redis",)),
    Target("W3 round trip p50 ≤ 1 ms", "w3_p50_ms", "max", 1.0),
    Target("W3 round trip p99 ≤ 3 ms", "w3_p99_ms", "max", 3.0),
    Target("W4 mixed ≥ 10,000 tasks/s", "w4_mixed_tps", "min", 10_000),
    Target("Deep queue: claim p50 with 1M ready rows ≤ 2x small queue", "deep_ready_claim_p50_us", "vs_metric", 2, ("deep_baseline_claim_p50_us",)),
    Target("Deep queue: claim p50 with 1M future rows ≤ 2x small queue", "deep_future_claim_p50_us", "vs_metric", 2, ("deep_baseline_claim_p50_us",)),
    Target("Deep queue: empty poll p50 with 1M future rows ≤ 2x empty queue", "deep_future_poll_p50_us", "vs_metric", 2, ("deep_baseline_poll_p50_us",)),
    Target("Idle worker ≤ 0.5 % of one core", "idle_cpu_pct", "max", 0.5),
    Target("Worker + children peak RSS below Huey's (both Huey set-ups)", "peak_rss_mb", "below_peers", 1.0, ("huey_sqlite", "huey_redis")),
]  # fmt: skip


def evaluate(doc: dict[str, Any], system: str, target: Target) -> str:
    """``met``, ``not met (ratio x)`` or ``n/a (...)`` for one target."""
    peer_kind = target.kind in ("peer_ratio", "below_peers")
    if peer_kind and not any(p in doc["systems"] for p in target.other):
        if not any(e["peer"] for e in doc["systems"].values()):
            return PEER_NA
        return f"n/a ({' / '.join(target.other)} not run)"
    value = median(doc, system, target.metric)
    if value is None:
        return "n/a (no data)"
    if target.kind in ("min", "max"):
        ratio = value / target.bound
        ok = ratio >= 1 if target.kind == "min" else ratio <= 1
        return _status(ok, ratio, fmt(value))
    if target.kind == "vs_metric":
        base = median(doc, system, target.other[0])
        if not base:
            return "n/a (no baseline)"
        ratio = value / base
        return _status(ratio <= target.bound, ratio, f"{ratio:.2f}x")
    peers = [p for p in target.other if p in doc["systems"]]
    values = [median(doc, p, target.metric) for p in peers]
    if any(v is None for v in values):
        return "n/a (peer has no data)"
    if target.kind == "peer_ratio":
        ratio = value / float(values[0])  # type: ignore[arg-type]
        return _status(ratio >= target.bound, ratio, f"{ratio:.2f}x")
    lowest = min(float(v) for v in values if v is not None)
    ratio = value / lowest
    return _status(ratio < 1, ratio, f"{ratio:.2f}x")


def _status(ok: bool, ratio: float, shown: str) -> str:
    return f"met ({shown})" if ok else f"not met (ratio {ratio:.2f}x)"


def targets(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``{target label: {liteq variant: status}}``."""
    mine = [n for n, e in doc["systems"].items() if not e["peer"]]
    return {t.label: {n: evaluate(doc, n, t) for n in mine} for t in TARGETS}


def targets_table(doc: dict[str, Any]) -> str:
    """Targets from the issue with their status for each liteq variant."""
    found = targets(doc)
    mine = [n for n, e in doc["systems"].items() if not e["peer"]]
    if not mine:
        return "No liteq variant was run: targets not evaluated."
    header = ["Target"] + [doc["systems"][n]["label"] for n in mine]
    return table(
        header, ([label] + [row[n] for n in mine] for label, row in found.items())
    )


def notes(doc: dict[str, Any]) -> list[str]:
    """Settings worth knowing when reading the numbers, then errors."""
    out = []
    meta = doc["meta"]
    m = meta["machine"]
    out.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"Python {m['python']}, SQLite {m['sqlite_driver']}."
    )
    s = meta["sizes"]
    reps = meta["options"]["reps"]
    out.append(
        f"N={s['n']:,} tasks (W1, W2, W4), {s['round_trips']} round trips after "
        f"{s['warmup']} warm-up (W3), idle window {s['idle_seconds']:.0f} s, "
        f"{reps} repetition(s); cells are median [min–max]."
    )
    if "redis" in meta:
        out.append(f"Redis: {meta['redis']['version']} (no persistence, 127.0.0.1).")
    for entry in doc["systems"].values():
        info = entry["info"]
        if info:
            shown = ", ".join(f"{k}={v}" for k, v in info.items())
            out.append(f"{entry['label']}: {shown}.")
        sync = info.get("synchronous")
        if sync is not None:
            level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(int(sync), sync)
            out.append(
                f"{entry['label']} runs at SQLite's compile-time default "
                f"synchronous={level} (PRAGMA synchronous={sync} on Huey's connection)."
            )
        out.extend(entry["notes"])
    noisy = [
        f"{name} rep {b['rep']} {b['workload']} ({b['other_cpu_pct']:.0f} %)"
        for name, entry in doc["systems"].items()
        for b in entry.get("background", [])
        if b["other_cpu_pct"] >= NOISY_PCT
    ]
    if noisy:
        out.append(
            f"Other processes used ≥ {NOISY_PCT:.0f} % of the machine during: "
            + ", ".join(noisy)
            + ". Treat those numbers with care."
        )
    for name, entry in doc["systems"].items():
        for err in entry["errors"]:
            out.append(f"ERROR {name}: {err}")
    if meta.get("interrupted"):
        out.append("The run was interrupted: numbers are partial.")
    return out


def render(doc: dict[str, Any]) -> str:
    """The whole Markdown report."""
    parts = ["## Results", "", results_table(doc), ""]
    ratio_tables = ratios_tables(doc)
    if ratio_tables:
        parts += ["## Ratios liteq / peer (medians, same run)", ""]
        for t in ratio_tables:
            parts += [t, ""]
    parts += ["## Targets", "", targets_table(doc), "", "## Notes", ""]
    parts += [f"- {line}" for line in notes(doc)]
    return "\n".join(parts) + "\n"


def attach(doc: dict[str, Any]) -> dict[str, Any]:
    """Add computed ratios and target statuses to the document."""
    doc["ratios"] = ratios(doc)
    doc["targets"] = targets(doc)
    return doc
