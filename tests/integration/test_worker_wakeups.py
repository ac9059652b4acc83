"""Wake-ups, a locked database and fairness, with real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import states
from liteq.testing import wait_until
from tests.apps.workerproc import WorkerProcs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[WorkerProcs]:
    with WorkerProcs(tmp_path) as p:
        yield p


def test_idle_worker_wakes_on_a_commit_from_another_process_without_polling(
    procs: WorkerProcs,
) -> None:
    worker = procs.start(fallback_poll=30.0)
    procs.wait_ready(worker)
    assert procs.send("add", 1, 1).get(timeout=20) == 2
    # The worker is idle now and would not poll for 30 s.
    for i in range(3):
        sent = time.monotonic()
        assert procs.send("add", i, 10).get(timeout=5) == i + 10
        assert time.monotonic() - sent < 5


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").write("locked")
time.sleep(5)
conn.execute("COMMIT")
open(sys.argv[3], "w").write(repr(time.time()))
"""


@pytest.mark.parametrize("busy_timeout", [5.0, 0.5])
def test_worker_waits_for_a_write_lock_held_5s_then_drains_everything(
    procs: WorkerProcs, busy_timeout: float
) -> None:
    results = [procs.send("add", i, i) for i in range(50)]
    locked, released = procs.dir / "locked", procs.dir / "released"
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(procs.db), str(locked), str(released)]
    )
    try:
        wait_until(locked.exists, timeout=20)
        worker = procs.start(
            burst=True, concurrency=2, settings={"database_busy_timeout": busy_timeout}
        )
        assert procs.wait_exit(worker, timeout=60) == 0
    finally:
        locker.kill()
        locker.wait()
    assert released.exists()
    assert [r.get(timeout=1) for r in results] == [2 * i for i in range(50)]
    unlocked_at = float(released.read_text())
    done = procs.producer.storage.results.get_many([r.id for r in results])
    assert all(row.date_done >= unlocked_at - 0.01 for row in done.values())
    if busy_timeout < 5:
        assert "is locked" in procs.log(worker)


def test_two_workers_draining_one_queue_both_get_a_fair_share(
    procs: WorkerProcs,
) -> None:
    first = procs.start(concurrency=2, loglevel="WARNING")
    second = procs.start(concurrency=2, loglevel="WARNING")
    procs.wait_ready(first)
    procs.wait_ready(second)
    results = procs.producer.enqueue_many(
        "tests.apps.tasks.noop", ((i,) for i in range(4000))
    )
    ids = [r.id for r in results]
    wait_until(
        lambda: procs.producer.storage.broker.queue_stats(time.time()) == {},
        timeout=60,
    )
    rows = procs.producer.storage.results.get_many(ids)
    assert len(rows) == 4000
    assert {row.status for row in rows.values()} == {states.SUCCESS}
    share = Counter(str(row.worker).split("@")[0] for row in rows.values())
    assert set(share) == {"w1", "w2"}
    # Neither starves: each drained at least a quarter of the queue.
    assert min(share.values()) >= 4000 * 0.25, dict(share)


def _watches_on(pid: int, directory: Path) -> int:
    """How many inotify watches process ``pid`` holds on ``directory``."""
    inode = f"ino:{directory.stat().st_ino:x} "
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) != "anon_inode:inotify":
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text()
        except OSError:
            continue  # closed meanwhile
        count += sum(inode in line for line in info.splitlines())
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify, /proc")
def test_a_busy_worker_holds_no_watch_on_the_directory_and_finds_what_came_meanwhile(
    procs: WorkerProcs,
) -> None:
    # A watch costs every write to the directory an event, unread or not:
    # a worker with no free slot does not listen, so it holds none.
    worker = procs.start(concurrency=1, fallback_poll=30.0)
    procs.wait_ready(worker)
    wait_until(lambda: _watches_on(worker.pid, procs.dir) == 1, timeout=20)
    first = procs.send("block", str(procs.dir), "first")
    procs.marker("first")
    wait_until(lambda: _watches_on(worker.pid, procs.dir) == 0, timeout=20)
    second = procs.send("add", 2, 3)  # no event reaches the worker
    assert _watches_on(worker.pid, procs.dir) == 0
    procs.release("first")
    assert first.get(timeout=20) > 0
    assert second.get(timeout=20) == 5  # well before the 30 s poll
    wait_until(lambda: _watches_on(worker.pid, procs.dir) == 1, timeout=20)


def test_a_worker_that_other_queues_commits_keep_waking_still_runs_its_own_tasks(
    procs: WorkerProcs,
) -> None:
    # A stream of commits that are none of its business puts the worker in
    # short quiet spells (see QUIET_AFTER): its own tasks still run, sent
    # during the stream or after it, without waiting for its poll.
    worker = procs.start(queues=["mine"], fallback_poll=30.0)
    procs.wait_ready(worker)
    during = None
    for i in range(500):
        procs.send("add", i, 0, queue="celery")
        if i == 250:
            during = procs.send("add", 1, 1, queue="mine")
    assert during is not None
    assert during.get(timeout=20) == 2
    after = procs.send("add", 2, 2, queue="mine")
    assert after.get(timeout=20) == 4
    assert (
        procs.producer.storage.broker.queue_stats(time.time())["celery"]["ready"] == 500
    )
