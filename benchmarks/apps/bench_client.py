"""Producer/consumer client run as a subprocess by the benchmark driver.

Usage::

    python bench_client.py APP_MODULE OP [--n N] [--warmup W] [--variant V]
                           [--timeout S] --out RESULT.json

``APP_MODULE`` is one of the task modules in this directory; each exposes
``enqueue_one(i)``, ``BULK`` (variant name -> ``fn(n)``), ``round_trip(i,
timeout)`` and ``info()``. Timestamps are ``time.monotonic()`` values, which
on Linux share one clock across processes, so the driver can compare them
with its own.

Operations:

* ``enqueue``: N one-at-a-time calls; only the loop is timed.
* ``bulk``: one bulk call for N tasks (``--variant`` picks the API).
* ``roundtrip``: W warm-up then N sequential submit-and-wait; latencies in s.
* ``info``: versions/settings of the system.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from pathlib import Path
from typing import Any


def main() -> None:
    """Parse the command line, run one operation, write its JSON result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("module")
    parser.add_argument("op", choices=["enqueue", "bulk", "roundtrip", "info"])
    parser.add_argument("--n", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--variant", default="")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    mod = importlib.import_module(args.module)
    result: dict[str, Any] = {"op": args.op, "n": args.n, "pid": os.getpid()}

    if args.op == "enqueue":
        enqueue_one = mod.enqueue_one
        n = args.n
        t0 = time.monotonic()
        for i in range(n):
            enqueue_one(i)
        t1 = time.monotonic()
        result.update(t_start=t0, t_end=t1, elapsed=t1 - t0)
    elif args.op == "bulk":
        bulk = mod.BULK[args.variant]
        t0 = time.monotonic()
        bulk(args.n)
        t1 = time.monotonic()
        result.update(t_start=t0, t_end=t1, elapsed=t1 - t0, variant=args.variant)
    elif args.op == "roundtrip":
        round_trip = mod.round_trip
        for i in range(args.warmup):
            round_trip(i, args.timeout)
        latencies = []
        for i in range(args.n):
            t0 = time.perf_counter()
            round_trip(i, args.timeout)
            latencies.append(time.perf_counter() - t0)
        result.update(latencies=latencies)
    else:
        result.update(info=mod.info())

    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
