"""Run the selected workloads on the selected systems, ``reps`` times.

Repetitions are interleaved (every system once per repetition, order
reversed on every other one) so that drift on a noisy machine hits all
systems alike. Every process started is stopped by pid on the way out.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .adapter import BENCH_DIR, Context, RedisSystem, System, SystemUnavailable
from .procs import BackgroundLoad, ProcessRegistry, become_subreaper, wait_quiet
from .redis_server import RedisServer
from .systems import SYSTEMS
from .workloads import WORKLOADS, Remarks, Sizes, summarize

RESULTS_DIR = BENCH_DIR / "results"


@dataclass
class RunOptions:
    """What to run; filled from the command line."""

    systems: list[str]
    reps: int
    quick: bool
    workloads: list[str] = field(default_factory=lambda: list(WORKLOADS))
    workdir: Path | None = None
    keep_workdir: bool = False
    #: Before each workload, wait up to this many seconds for other processes
    #: to use less than ``quiet_pct`` % of the machine (0: do not wait).
    wait_quiet: float = 120.0
    quiet_pct: float = 10.0


def log(message: str) -> None:
    """Progress line on stderr (stdout carries the report)."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def applies(system: System, workload: str) -> bool:
    """Whether a workload is run on a system (deep queue: liteq default only)."""
    if workload == "deep":
        return system.name == "liteq"
    return True


def machine_info() -> dict[str, Any]:
    """Facts about the host that help compare runs."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite_driver": sqlite3.sqlite_version,
    }


def run(opts: RunOptions) -> dict[str, Any]:
    """Run everything and return the results document (see report.py)."""
    sizes = Sizes.quick() if opts.quick else Sizes()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS_DIR / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir()
    subreaper = become_subreaper()
    workdir = Path(tempfile.mkdtemp(prefix="liteq-bench-", dir=opts.workdir))
    registry = ProcessRegistry(log_dir)
    ctx = Context(registry=registry, workdir=workdir)
    adapters = {name: SYSTEMS[name](ctx) for name in opts.systems}
    doc: dict[str, Any] = {
        "meta": {
            "started": datetime.datetime.now()
            .astimezone()
            .isoformat(timespec="seconds"),
            "machine": machine_info(),
            "options": {**asdict(opts), "workdir": str(workdir)},
            "sizes": asdict(sizes),
            "logs": str(log_dir),
            "subreaper": subreaper,
            "interrupted": False,
        },
        "systems": {
            name: {
                "label": a.label,
                "peer": a.is_peer,
                "info": {},
                "notes": list(a.notes),
                "errors": [],
                "background": [],
                "raw": {},
                "metrics": {},
            }
            for name, a in adapters.items()
        },
    }
    runnable: dict[str, list[str]] = {}
    try:
        if any(isinstance(a, RedisSystem) for a in adapters.values()):
            ctx.redis = _start_redis(ctx, doc)
        for name, adapter in adapters.items():
            log(f"checking {name}")
            workloads = [w for w in opts.workloads if applies(adapter, w)]
            try:
                doc["systems"][name]["info"] = adapter.check()
            except SystemUnavailable as exc:
                workloads = [w for w in workloads if w in exc.still_runs]
                extra = f" (running only: {', '.join(workloads)})" if workloads else ""
                doc["systems"][name]["errors"].append(f"not run{extra}: {exc}")
                log(f"{name}: not run{extra}: {exc}")
            if workloads:
                runnable[name] = workloads
        order = list(runnable)
        for rep in range(opts.reps):
            for name in order if rep % 2 == 0 else order[::-1]:
                _run_system(
                    adapters[name],
                    runnable[name],
                    opts,
                    sizes,
                    rep,
                    doc["systems"][name],
                )
    except KeyboardInterrupt:
        doc["meta"]["interrupted"] = True
        log("interrupted: stopping every process started")
    finally:
        for adapter in adapters.values():
            adapter.stop()
        if ctx.redis is not None:
            ctx.redis.stop()
        registry.stop_all()
        if not opts.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    doc["meta"]["finished"] = (
        datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    )
    for entry in doc["systems"].values():
        entry["metrics"] = {k: summarize(v) for k, v in entry["raw"].items()}
    return doc


def _start_redis(ctx: Context, doc: dict[str, Any]) -> RedisServer | None:
    redis = RedisServer(ctx.registry, ctx.workdir)
    try:
        redis.start()
    except RuntimeError as exc:
        log(f"redis-server: {exc}")
        return None
    doc["meta"]["redis"] = {"version": redis.version(), "port": redis.port}
    log(f"redis-server pid {redis.pid} on 127.0.0.1:{redis.port}")
    return redis


def _run_system(
    adapter: System,
    workloads: list[str],
    opts: RunOptions,
    sizes: Sizes,
    rep: int,
    entry: dict[str, Any],
) -> None:
    busiest = 0.0
    for workload in workloads:
        label = f"rep {rep + 1}/{opts.reps} {adapter.name} {workload}"
        if opts.wait_quiet > 0:
            before = wait_quiet(opts.quiet_pct, opts.wait_quiet)
            if before >= opts.quiet_pct:
                log(f"{label}: machine still busy ({before:.0f} % used by others)")
        log(f"{label} ...")
        remarks = Remarks()
        t0 = time.monotonic()
        with BackgroundLoad() as load:
            try:
                metrics = WORKLOADS[workload](adapter, sizes, remarks)
            except Exception as exc:  # record, clean up, go on with the next one
                metrics = {}
                remarks.errors.append(f"{workload}: {type(exc).__name__}: {exc}")
            finally:
                adapter.stop()
        busiest = max(busiest, load.other_pct)
        entry["background"].append(
            {"rep": rep + 1, "workload": workload, "other_cpu_pct": load.other_pct}
        )
        for key, value in metrics.items():
            entry["raw"].setdefault(key, []).append(value)
        for message in remarks.errors:
            entry["errors"].append(f"rep {rep + 1} {message}")
            log(f"{adapter.name}: {message}")
        for note in remarks.notes:
            if note not in entry["notes"]:
                entry["notes"].append(note)
        shown = ", ".join(f"{k}={v:,.1f}" for k, v in metrics.items())
        log(
            f"{label} done in {time.monotonic() - t0:.1f} s "
            f"(others used {load.other_pct:.0f} % of the machine): {shown or 'no data'}"
        )
    entry["raw"].setdefault("bg_other_cpu_pct", []).append(busiest)
