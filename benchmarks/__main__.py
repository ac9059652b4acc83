"""Command line: ``python -m benchmarks run [--peers] [--quick] ...``."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType

from .report import attach, render
from .runner import RESULTS_DIR, RunOptions, log, run
from .systems import LITEQ_SYSTEMS, PEER_SYSTEMS, SYSTEMS
from .workloads import WORKLOADS


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark liteq against Celery, Huey and RQ in one run.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the benchmarks and print a report")
    run_p.add_argument(
        "--peers",
        action="store_true",
        help="also run the peers (needs `bash benchmarks/setup_peers.sh`)",
    )
    run_p.add_argument(
        "--quick", action="store_true", help="1 repetition with smaller sizes"
    )
    run_p.add_argument(
        "--systems",
        help="comma-separated subset of: " + ", ".join(SYSTEMS),
    )
    run_p.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of: %(default)s",
    )
    run_p.add_argument(
        "--reps", type=int, help="repetitions (default 3, 1 with --quick)"
    )
    run_p.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / "latest.json",
        help="where to write the results (default: %(default)s)",
    )
    run_p.add_argument(
        "--workdir", type=Path, help="directory for database files (default: $TMPDIR)"
    )
    run_p.add_argument(
        "--keep-workdir", action="store_true", help="keep database files afterwards"
    )
    run_p.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="before each workload, wait up to this long for other processes to "
        "use < 10%% of the machine (0: don't wait; default %(default)s)",
    )
    report_p = sub.add_parser("report", help="print the report of a results file")
    report_p.add_argument(
        "json", type=Path, nargs="?", default=RESULTS_DIR / "latest.json"
    )
    return parser.parse_args(argv)


def _split(text: str, allowed: list[str] | tuple[str, ...], what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in allowed]
    if unknown:
        raise SystemExit(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(allowed)})"
        )
    return items


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    if args.command == "report":
        doc = attach(json.loads(args.json.read_text()))
        sys.stdout.write(render(doc))
        return 0

    if args.systems:
        systems = _split(args.systems, list(SYSTEMS), "system")
    else:
        systems = list(LITEQ_SYSTEMS) + (list(PEER_SYSTEMS) if args.peers else [])
    if not args.peers and any(SYSTEMS[s].is_peer for s in systems):
        log("note: --systems names a peer; running it as if --peers was given")
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    if reps < 1:
        raise SystemExit("--reps must be at least 1")
    opts = RunOptions(
        systems=systems,
        reps=reps,
        quick=args.quick,
        workloads=_split(args.workloads, list(WORKLOADS), "workload"),
        workdir=args.workdir,
        keep_workdir=args.keep_workdir,
        wait_quiet=args.wait_quiet,
    )
    # Ctrl-C even when started in the background, SIGTERM/SIGHUP alike: all
    # end up in the runner's clean-up, which stops every pid it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    doc = attach(run(opts))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    sys.stdout.write(render(doc))
    log(f"results written to {args.json}")
    return 130 if doc["meta"]["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
