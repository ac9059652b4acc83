"""The quick start in one command: queue tasks, run a worker until the queue is
empty, print the results.

    python examples/quickstart/run.py

It does what these two terminals would do:

    liteq worker tasks.db -l info                       # terminal 1
    python -c "from tasks import add; print(add.delay(2, 2).get())"   # terminal 2
"""

import os
import subprocess
import sys
from pathlib import Path

# tasks.db is created next to this file, whatever directory you run it from.
os.chdir(Path(__file__).resolve().parent)

from tasks import add  # noqa: E402 - after the chdir, so tasks.db lands here

results = {n: add.delay(n, n) for n in (2, 3, 4)}
print(f"queued {len(results)} tasks; add(2, 2) is {results[2].state}")

# `liteq worker tasks.db --burst` runs every task that is due, then exits.
print("$ liteq worker tasks.db --burst")
worker = subprocess.run(
    [sys.executable, "-m", "liteq", "worker", "tasks.db", "--burst", "-l", "warning"],
    capture_output=True,
    text=True,
)
if worker.returncode != 0:
    sys.exit(f"the worker failed:\n{worker.stdout}{worker.stderr}")

for n, result in results.items():
    print(f"add({n}, {n}) = {result.get(timeout=10)}  [{result.state}]")
