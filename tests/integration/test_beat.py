"""``liteq beat`` and ``liteq schedule`` in real processes: one leader, exactly once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.storage import Storage
from liteq.storage.db import Database
from liteq.testing import wait_until

from .cli_procs import Procs, liteq_cmd, run, write

pytestmark = pytest.mark.slow

#: Leader lease of the beats under test: a dead leader is replaced this fast.
#: Renewed every second, so a leader killed right after a fire leaves at least
#: two occurrences unsent until the takeover (they must collapse into one).
LEASE_TTL = 3.0
#: Seconds a loaded machine may add to a takeover (a timing bound, not a target).
SLACK = 2.0


def fires(db: Database, task: str) -> list[tuple[float, float]]:
    """Return ``(occurrence time, enqueue time)`` of every task ``task`` beat sent."""
    rows = db.execute(
        "SELECT unique_key, created_at FROM liteq_task WHERE name = ? ORDER BY id",
        (task,),
    )
    return [(float(key.rsplit(":", 1)[1]), created) for key, created in rows]


def lease_owner(db: Database) -> str | None:
    row = db.query_one("SELECT owner, expires_at FROM liteq_lease WHERE name = 'beat'")
    return row[0] if row is not None and row[1] > time.time() else None


def owner_pid(owner: str) -> int:
    return int(owner.split(":")[-2])


def test_three_beats_send_each_second_once_and_survive_a_killed_leader(
    tmp_path: Path,
) -> None:
    path = tmp_path / "beat.db"
    db = Storage(str(path)).db
    args = ("beat", str(path), "-l", "info", "--lease-ttl", str(LEASE_TTL))
    with Procs() as procs:
        beats = [procs.start(liteq_cmd(*args), tmp_path) for _ in range(3)]
        first_owner = wait_until(lambda: lease_owner(db), timeout=20)
        wait_until(lambda: all("beat: Starting" in b.output for b in beats), timeout=20)
        setup = Liteq("setup", broker=str(path))
        setup.schedules.add("every-second", "tasks.tick", 1.0)
        setup.close()
        wait_until(lambda: len(fires(db, "tasks.tick")) >= 8, timeout=20)
        by_pid = {b.popen.pid: b for b in beats}
        leader = by_pid[owner_pid(first_owner)]
        leader.signal(signal.SIGKILL)
        killed_at = time.time()
        leader.wait(10)
        second_owner = wait_until(
            lambda: (o := lease_owner(db)) and o != first_owner and o, timeout=10
        )
        assert owner_pid(second_owner) in by_pid
        wait_until(
            lambda: (f := fires(db, "tasks.tick")) and f[-1][0] - f[0][0] >= 21,
            timeout=40,
        )
        survivors = [b for b in beats if b is not leader]
        for proc in survivors:
            proc.signal(signal.SIGTERM)
        for proc in survivors:
            assert proc.wait(15) == 0, proc.output
        assert all("beat: stopped" in p.output for p in survivors)
    sent = fires(db, "tasks.tick")
    runs = db.query_one(
        "SELECT total_run_count FROM liteq_schedule WHERE name = 'every-second'"
    )[0]
    # Every fire attempted was inserted: nothing was ever sent twice.
    assert runs == len(sent)
    times = [at for at, _ in sent]
    assert len(set(int(t) for t in times)) == len(times)
    steps = [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)]
    # The first fire after the kill is the new leader's takeover.
    takeover = next(k for k, (_, sent_at) in enumerate(sent) if sent_at > killed_at)
    taken_at, taken_sent = sent[takeover]
    # Within the lease plus the renew interval, with room for a loaded machine.
    assert taken_sent - killed_at <= LEASE_TTL + SLACK
    # catch_up="once": seconds missed meanwhile went out once, as the latest of them.
    assert 0 <= taken_sent - taken_at < 1.0
    # So the only gap between occurrences is at the takeover, no longer than the lease.
    for k, step in enumerate(steps):
        if k + 1 == takeover:
            assert 2.0 <= step <= LEASE_TTL + SLACK, steps
        else:
            assert step == 1.0, steps
    on_time = [sent_at - at for k, (at, sent_at) in enumerate(sent) if k != takeover]
    # Every other fire was enqueued before its next occurrence was due (on an
    # idle machine, within a few ms; the bound only leaves room for load).
    assert max(on_time) < 1.0, [(k, round(v, 3)) for k, v in enumerate(on_time)]
    assert min(on_time) >= 0
    assert times[-1] - times[0] >= 21
    db.close()


def test_three_beats_without_a_leader_still_send_each_occurrence_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "beat.db"
    db = Storage(str(path)).db
    args = ("beat", str(path), "-l", "info", "--lease-ttl", "0")
    with Procs() as procs:
        beats = [procs.start(liteq_cmd(*args), tmp_path) for _ in range(3)]
        wait_until(lambda: all("beat: Starting" in b.output for b in beats), timeout=20)
        setup = Liteq("setup", broker=str(path))
        setup.schedules.add("fast", "tasks.fast", 0.1)
        setup.close()
        wait_until(lambda: len(fires(db, "tasks.fast")) >= 40, timeout=20)
        for proc in beats:
            proc.signal(signal.SIGTERM)
        for proc in beats:
            assert proc.wait(15) == 0, proc.output
    sent = fires(db, "tasks.fast")
    runs = db.query_one("SELECT total_run_count FROM liteq_schedule")[0]
    # Every beat raced for every occurrence; the transaction let one win each time.
    assert runs == len(sent)
    times = [at for at, _ in sent]
    steps = {round(b - a, 6) for a, b in zip(times, times[1:], strict=False)}
    assert steps == {0.1}
    db.close()


def test_schedule_added_from_the_cli_fires_without_restart_and_disabled_stops(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tasks.db"
    db = Storage(str(path)).db
    with Procs() as procs:
        beat = procs.start(liteq_cmd("beat", str(path), "-l", "info"), tmp_path)
        wait_until(lambda: "now sends the scheduled tasks" in beat.output, timeout=20)
        added = run(
            liteq_cmd(
                "schedule", "add", str(path), "tick", "tasks.tick", "--every", "0.5s"
            ),
            tmp_path,
        )
        assert added.returncode == 0, added.stderr
        added_at = time.time()
        first = wait_until(lambda: fires(db, "tasks.tick"), timeout=10)
        assert first[0][1] - added_at < 1.5
        wait_until(lambda: len(fires(db, "tasks.tick")) >= 3, timeout=10)

        disabled = run(liteq_cmd("schedule", "disable", str(path), "tick"), tmp_path)
        assert disabled.returncode == 0, disabled.stderr
        count = len(fires(db, "tasks.tick"))
        control = run(
            liteq_cmd(
                "schedule", "add", str(path), "ctl", "tasks.ctl", "--every", "0.2s"
            ),
            tmp_path,
        )
        assert control.returncode == 0, control.stderr
        wait_until(lambda: len(fires(db, "tasks.ctl")) >= 5, timeout=10)
        assert len(fires(db, "tasks.tick")) == count

        listed = run(liteq_cmd("schedule", "list", str(path)), tmp_path)
        assert (
            "tick: tasks.tick <freq: 0.50 seconds>  [disabled, runtime]"
            in listed.stdout
        )
        enabled = run(liteq_cmd("schedule", "enable", str(path), "tick"), tmp_path)
        assert enabled.returncode == 0, enabled.stderr
        wait_until(lambda: len(fires(db, "tasks.tick")) > count, timeout=10)

        beat.signal(signal.SIGTERM)
        assert beat.wait(15) == 0, beat.output
    assert "Scheduler: Sending due task tick (tasks.tick)" in beat.output
    assert db.query_one("SELECT COUNT(*) FROM liteq_lease")[0] == 0
    db.close()


PROJ = {
    "proj/__init__.py": "",
    "proj/celery.py": """
        from __future__ import absolute_import
        from liteq import Celery

        app = Celery("proj", include=["proj.tasks"])
        app.config_from_object("proj.config")
        """,
    "proj/config.py": """
        from datetime import timedelta

        BROKER_URL = "sqlite:///proj.db"
        CELERY_TIMEZONE = "Asia/Shanghai"
        CELERYBEAT_SCHEDULE = {
            "add-every-second": {
                "task": "proj.tasks.add",
                "schedule": timedelta(seconds=1),
                "args": (16, 16),
            },
        }
        """,
    "proj/tasks.py": """
        from proj.celery import app

        @app.task
        def add(x, y):
            return x + y
        """,
}


def test_beat_runs_the_app_configuration_and_stops_on_sigint(tmp_path: Path) -> None:
    for relpath, text in PROJ.items():
        write(tmp_path, relpath, text)
    db = Storage(str(tmp_path / "proj.db")).db
    with Procs() as procs:
        beat = procs.start(liteq_cmd("-A", "proj", "beat", "-l", "info"), tmp_path)
        wait_until(
            lambda: (
                "Scheduler: Sending due task add-every-second (proj.tasks.add)"
                in beat.output
            ),
            timeout=20,
        )
        beat.signal(signal.SIGINT)
        assert beat.wait(15) == 0, beat.output
    assert "beat v" in beat.output and "timezone -> Asia/Shanghai" in beat.output
    assert fires(db, "proj.tasks.add")
    db.close()
