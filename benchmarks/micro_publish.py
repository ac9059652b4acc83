"""Micro-benchmark of the producer hot path, against raw SQLite in the same run.

Measures, in one process and on fresh database files:

* ``floor_one``: a plain ``sqlite3`` loop inserting liteq's own queue row (same
  connection settings, schema, SQL and message bytes) one autocommit INSERT at
  a time: what one ``.delay()`` can at best cost;
* ``delay``: ``noop.delay(i)``, each committed on return;
* ``apply_async_opts``: ``noop.apply_async((i,), queue=..., priority=...,
  countdown=0, expires=...)``;
* ``floor_bulk``: the same rows in one ``executemany`` transaction;
* ``enqueue_many``: ``app.enqueue_many(noop, ((i,) for i in range(n)))``;
* ``group``: ``group(noop.s(i) for i in range(n)).apply_async()``.

Cases run interleaved, in reversed order every other repetition, so a busy
machine slows them alike; the ``x floor`` column (median of per-repetition
ratios to the matching floor) is the number to compare between runs.

Usage (from the repository root)::

    python -m benchmarks.micro_publish -n 20000 --reps 5
    python -m benchmarks.micro_publish --baseline /path/to/other/checkout
    python -m benchmarks.micro_publish --profile delay

``--baseline DIR`` runs every repetition twice, once with this tree's
``liteq`` and once with the one in ``DIR``, alternating, and adds the
speed-up of this tree for each case.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Case name, and the floor case its ratio is taken against.
CASES: dict[str, str] = {
    "floor_one": "floor_one",
    "delay": "floor_one",
    "apply_async_opts": "floor_one",
    "floor_bulk": "floor_bulk",
    "enqueue_many": "floor_bulk",
    "group": "floor_bulk",
}

ROOT = Path(__file__).resolve().parents[1]


def _make_app(path: str, durable: bool) -> tuple[Any, Any]:
    from liteq import Liteq

    app = Liteq("micro", broker=path, durable=durable, set_as_current=False)

    @app.task(name="micro.noop")
    def noop(i: int) -> int:
        return i

    app.storage.db.connection()  # create the file and schema outside the timer
    return app, noop


def _floor_rows(app: Any, noop: Any, n: int) -> tuple[str, list[tuple[Any, ...]]]:
    """liteq's INSERT and ``n`` of its rows for ``noop(i)``, built untimed."""
    from liteq.storage.broker import _INSERT, Broker

    now = time.time()
    rows = []
    for i in range(n):
        _, row = app.build_message(noop.name, (i,), {}, task_type=noop, now=now)
        rows.append(Broker._row(row, now))
    return _INSERT, rows


def _case(name: str, app: Any, noop: Any, n: int) -> Callable[[], None]:
    """Return the timed body of case ``name`` (set-up done here, untimed)."""
    if name in ("floor_one", "floor_bulk"):
        sql, rows = _floor_rows(app, noop, n)
        conn = app.storage.db.connection()
        if name == "floor_one":

            def floor_one() -> None:
                execute = conn.execute
                for row in rows:
                    execute(sql, row)

            return floor_one

        def floor_bulk() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")

        return floor_bulk
    if name == "delay":

        def delay() -> None:
            for i in range(n):
                noop.delay(i)

        return delay
    if name == "apply_async_opts":

        def apply_async_opts() -> None:
            for i in range(n):
                noop.apply_async(
                    (i,), queue="bulk", priority=5, countdown=0, expires=3600
                )

        return apply_async_opts
    if name == "enqueue_many":

        def enqueue_many() -> None:
            app.enqueue_many(noop, ((i,) for i in range(n)))

        return enqueue_many
    if name == "group":
        from liteq import group

        def group_apply() -> None:
            group(noop.s(i) for i in range(n)).apply_async()

        return group_apply
    raise ValueError(f"unknown case {name!r}")


def run_once(
    cases: list[str], n: int, workdir: str, durable: bool, reverse: bool
) -> dict[str, dict[str, float]]:
    """Run every case once on a fresh file each.

    Returns:
        Per case: ``wall_us`` and ``cpu_us`` per task.
    """
    found: dict[str, dict[str, float]] = {}
    for name in reversed(cases) if reverse else cases:
        directory = tempfile.mkdtemp(prefix=f"micro-{name}-", dir=workdir)
        app, noop = _make_app(os.path.join(directory, "micro.db"), durable)
        try:
            body = _case(name, app, noop, n)
            wall, cpu = time.perf_counter(), time.process_time()
            body()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            count = app.storage.db.query_one("SELECT COUNT(*) FROM liteq_task")[0]
            if count != n:
                raise RuntimeError(f"{name}: {count} rows queued, expected {n}")
        finally:
            app.close()
            shutil.rmtree(directory, ignore_errors=True)
        found[name] = {"wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6}
    return found


def _table(
    runs: list[dict[str, dict[str, float]]], cases: list[str], title: str
) -> list[str]:
    lines = [
        f"### {title}",
        "",
        "| case | us/task (median [min-max]) | tasks/s | CPU us/task | x floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in cases:
        walls = [r[name]["wall_us"] for r in runs if name in r]
        cpus = [r[name]["cpu_us"] for r in runs if name in r]
        if not walls:
            continue
        floor = CASES[name]
        ratios = [
            r[name]["wall_us"] / r[floor]["wall_us"]
            for r in runs
            if name in r and floor in r
        ]
        wall = statistics.median(walls)
        ratio = f"{statistics.median(ratios):.2f}" if ratios else "-"
        lines.append(
            f"| {name} | {wall:.1f} [{min(walls):.1f}-{max(walls):.1f}] "
            f"| {1e6 / wall:,.0f} | {statistics.median(cpus):.1f} | {ratio} |"
        )
    return lines


def _speedups(
    current: list[dict[str, dict[str, float]]],
    baseline: list[dict[str, dict[str, float]]],
    cases: list[str],
) -> list[str]:
    lines = [
        "### Speed-up of this tree over the baseline (same run)",
        "",
        "| case | baseline us/task | this tree us/task | speed-up (median of reps) |",
        "|---|---:|---:|---:|",
    ]
    for name in cases:
        pairs = [
            (b[name]["wall_us"], c[name]["wall_us"])
            for b, c in zip(baseline, current, strict=False)
            if name in b and name in c
        ]
        if not pairs:
            continue
        lines.append(
            f"| {name} | {statistics.median(p[0] for p in pairs):.1f} "
            f"| {statistics.median(p[1] for p in pairs):.1f} "
            f"| {statistics.median(p[0] / p[1] for p in pairs):.2f}x |"
        )
    return lines


def _run_tree(tree: Path, args: argparse.Namespace, reverse: bool) -> Any:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tree), *filter(None, [env.get("PYTHONPATH")])]
    )
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--emit-json",
        "-n",
        str(args.n),
        "--cases",
        ",".join(args.cases),
        "--workdir",
        args.workdir,
    ]
    if args.durable:
        command.append("--durable")
    if reverse:
        command.append("--reverse")
    done = subprocess.run(
        command, env=env, cwd=tree, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"run with {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def _profile(case: str, args: argparse.Namespace) -> None:
    directory = tempfile.mkdtemp(prefix="micro-profile-", dir=args.workdir)
    app, noop = _make_app(os.path.join(directory, "micro.db"), args.durable)
    try:
        body = _case(case, app, noop, args.n)
        profiler = cProfile.Profile()
        profiler.runcall(body)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    finally:
        app.close()
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print Markdown tables (and write JSON with --json)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.micro_publish",
        description="Producer hot path against raw SQLite, in the same run.",
    )
    parser.add_argument("-n", type=int, default=20000, help="tasks per case")
    parser.add_argument("--reps", type=int, default=5, help="repetitions")
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated subset of {','.join(CASES)}",
    )
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--durable", action="store_true", help="synchronous=FULL files")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout to compare (its liteq/)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument(
        "--profile", metavar="CASE", help="cProfile one run of CASE instead"
    )
    parser.add_argument("--emit-json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--reverse", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    for name in list(args.cases):
        floor = CASES[name]
        if floor not in args.cases:
            args.cases.insert(0, floor)
    args.cases = [c for c in CASES if c in args.cases]

    if args.profile:
        _profile(args.profile, args)
        return 0
    if args.emit_json:
        print(
            json.dumps(
                run_once(args.cases, args.n, args.workdir, args.durable, args.reverse)
            )
        )
        return 0

    current: list[dict[str, dict[str, float]]] = []
    baseline: list[dict[str, dict[str, float]]] = []
    for rep in range(args.reps):
        reverse = rep % 2 == 1
        if args.baseline is None:
            current.append(
                run_once(args.cases, args.n, args.workdir, args.durable, reverse)
            )
        else:
            trees = [(ROOT, current), (args.baseline.resolve(), baseline)]
            for tree, into in reversed(trees) if reverse else trees:
                into.append(_run_tree(tree, args, reverse))
        print(f"repetition {rep + 1}/{args.reps} done", file=sys.stderr)

    import liteq

    mode = (
        "durable (synchronous=FULL)" if args.durable else "default (synchronous=NORMAL)"
    )
    print(
        f"n={args.n}, {args.reps} repetitions, {mode}, Python "
        f"{sys.version.split()[0]}, SQLite {__import__('sqlite3').sqlite_version}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, liteq {liteq.__version__}"
    )
    print()
    print("\n".join(_table(current, args.cases, "This tree")))
    if args.baseline is not None:
        print()
        print("\n".join(_table(baseline, args.cases, f"Baseline {args.baseline}")))
        print()
        print("\n".join(_speedups(current, baseline, args.cases)))
    if args.json:
        args.json.write_text(
            json.dumps({"n": args.n, "current": current, "baseline": baseline})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
