"""Workflows on real worker processes: a prefork worker with two children.

The producer (this test) publishes on a file in ``tmp_path``; a worker
subprocess running :mod:`tests.apps.canvas_tasks` executes. Calls of the
recording tasks are counted through files, across processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.apps.canvas_tasks  # noqa: F401 - registers its shared tasks on every app
from liteq import Liteq, states
from liteq.app import _current
from liteq.canvas import Signature, chord, group
from liteq.exceptions import ChordError
from liteq.testing import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.apps.canvas_tasks"
WORKER = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(processName)s %(message)s')\n"
    "from liteq.worker import Worker\n"
    f"from {MODULE} import app\n"
    "sys.exit(Worker(app, pool='prefork', concurrency=2, hostname='canvas@%h',\n"
    f"    app_path='{MODULE}:app').run(burst=sys.argv[1] == 'burst'))\n"
)


@pytest.fixture
def producer(tmp_path: Path) -> Iterator[Liteq]:
    app = Liteq("producer", broker=str(tmp_path / "canvas.db"))
    yield app
    app.close()
    if app in _current:
        _current.remove(app)


def sig(app: Liteq, name: str, *args: Any) -> Signature:
    return app.signature(f"{MODULE}.{name}", args=args)


def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("LITEQ_")}
    out.update(
        LITEQ_TEST_DB=str(tmp_path / "canvas.db"),
        LITEQ_TEST_DIR=str(tmp_path),
        PYTHONUNBUFFERED="1",
    )
    return out


def run_worker(tmp_path: Path, timeout: float = 120) -> str:
    """Run a burst worker to its end; return its log (shown if it fails or hangs)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, "burst"],
        cwd=ROOT,
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the worker did not finish within {timeout}s:\n{out}")
    assert proc.returncode == 0, out
    return out


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_workflows_run_on_a_prefork_worker(tmp_path: Path, producer: Liteq) -> None:
    chained = (
        sig(producer, "add", 2, 2) | sig(producer, "add", 4) | sig(producer, "add", 8)
    )()
    grouped = group(sig(producer, "add", i, i) for i in range(10))()
    chorded = chord(
        (sig(producer, "add", i, i) for i in range(100)), sig(producer, "tsum")
    )()
    chunked = chord(
        [
            sig(producer, "add", 1, 1)
            | group(sig(producer, "add", 1), sig(producer, "add", 2))
        ],
        sig(producer, "collect"),
    )()
    add = producer.tasks[f"{MODULE}.add"]
    starred = add.starmap([(1, 2), (3, 4)]).delay()
    chunks = add.chunks(zip(range(20), range(20), strict=True), 5).group()()
    immutable = (add.s(1, 1) | add.si(2, 2))()
    linked = producer.send_task(
        f"{MODULE}.add",
        (2, 3),
        link=[sig(producer, "identity"), sig(producer, "add", 10)],
    )
    failing = chord(
        [sig(producer, "add", 1, 1), sig(producer, "explode", 1)],
        sig(producer, "tsum").on_error(producer.signature(f"{MODULE}.on_chord_error")),
    )()
    run_worker(tmp_path)
    assert chained.get(timeout=10) == 16
    assert chained.parent.get(timeout=10) == 8
    assert grouped.get(timeout=10) == [2 * i for i in range(10)]
    assert chorded.get(timeout=10) == 9900
    assert chunked.get(timeout=10) == [3, 4]
    assert starred.get(timeout=10) == [3, 7]
    assert chunks.get(timeout=10) == [
        [2 * i for i in range(j, j + 5)] for j in (0, 5, 10, 15)
    ]
    assert immutable.get(timeout=10) == 4
    assert linked.get(timeout=10) == 5
    assert sorted(c.get(timeout=10) for c in linked.children) == [5, 15]
    assert failing.state == states.FAILURE
    assert isinstance(failing.get(timeout=10, propagate=False), ChordError)
    assert lines(tmp_path / "errback.calls") == [f"{failing.id} ChordError"]
    assert [line.split()[1] for line in lines(tmp_path / "tsum.calls")] == ["100"]


def test_replaced_tasks_hand_their_place_over_on_a_prefork_worker(
    tmp_path: Path, producer: Liteq
) -> None:
    alone = sig(producer, "replaced", 1).delay()
    in_chain = (sig(producer, "replaced", 2) | sig(producer, "add", 1))()
    in_chord = chord(
        [sig(producer, "replaced", 3), sig(producer, "replaced_by_group", 3)],
        sig(producer, "collect"),
    )()
    run_worker(tmp_path)
    assert alone.get(timeout=10) == 101
    assert in_chain.get(timeout=10) == 103
    assert in_chord.get(timeout=10) == [103, [0, 2, 4]]


def test_thousand_part_chord_on_two_processes_runs_its_body_once_in_order(
    tmp_path: Path, producer: Liteq
) -> None:
    result = chord(
        (sig(producer, "add", i, 0) for i in range(1000)), sig(producer, "collect")
    )()
    run_worker(tmp_path)
    assert result.get(timeout=10) == list(range(1000))
    assert [line.split()[1] for line in lines(tmp_path / "collect.calls")] == ["1000"]


def test_chord_completes_once_when_its_worker_is_killed_during_the_header(
    tmp_path: Path, producer: Liteq
) -> None:
    release = tmp_path / "release"
    parts = 20
    result = chord(
        (sig(producer, "slow_part", i, str(release)) for i in range(parts)),
        sig(producer, "collect"),
    )()
    started = tmp_path / "slow_part.started"
    first = subprocess.Popen(
        [sys.executable, "-c", WORKER, "run"],
        cwd=ROOT,
        env=env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        # Both children are inside a header part (acks_late) when the worker dies.
        wait_until(lambda: len(lines(started)) >= 2, timeout=30)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    killed = {line.split()[1] for line in lines(started)}
    release.write_text("go")
    run_worker(tmp_path)
    assert result.get(timeout=10) == list(range(parts))
    assert [line.split()[1] for line in lines(tmp_path / "collect.calls")] == [
        str(parts)
    ]
    ran = [line.split()[1] for line in lines(started)]
    # The killed parts ran again; every part ran at least once.
    assert set(ran) == {str(i) for i in range(parts)}
    assert all(ran.count(i) == 2 for i in killed)
