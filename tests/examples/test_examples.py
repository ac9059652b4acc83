"""The examples users ask for (examples/*/) run against real worker subprocesses."""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from liteq.beat import Beat
from liteq.testing import FakeClock, drain
from tests.examples.support import (
    burst,
    copy_example,
    imported,
    liteq_command,
    live,
    program_env,
    python,
    run,
    worker,
)

pytestmark = pytest.mark.examples


def test_quickstart_run_prints_the_results_of_a_burst_worker(tmp_path: Path) -> None:
    folder = copy_example("quickstart", tmp_path)
    out = python("quickstart/run.py", cwd=tmp_path).stdout
    assert out.splitlines() == [
        "queued 3 tasks; add(2, 2) is PENDING",
        "$ liteq worker tasks.db --burst",
        "add(2, 2) = 4  [SUCCESS]",
        "add(3, 3) = 6  [SUCCESS]",
        "add(4, 4) = 8  [SUCCESS]",
    ]
    # run.py works from any directory: the database is next to it.
    assert (folder / "tasks.db").exists()


def test_progress_client_draws_every_step_of_the_bar(tmp_path: Path) -> None:
    folder = copy_example("progress", tmp_path)
    with worker("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder) as w:
        out = python("client.py", cwd=folder).stdout
        w.stop()
    steps = re.findall(r"\[(#*) *\] (\d+)/20", out)
    assert [int(done) for _, done in steps] == list(range(1, 21)), out
    assert steps[-1][0] == "#" * 30
    assert out.rstrip().endswith("resized 20 photos"), out


def test_periodic_schedule_fires_check_disk_every_10_seconds_on_a_fake_clock(
    tmp_path: Path,
) -> None:
    folder = copy_example("periodic", tmp_path)
    clock = FakeClock(datetime(2024, 3, 4, 5, 0, tzinfo=timezone.utc))  # a Monday
    with imported(folder, "tasks") as module:
        app = module.app
        app.clock = clock
        beat = Beat(app, clock=clock, lease_ttl=0)
        beat.sync_config()
        for _ in range(6 * 100 + 1):  # 05:00 .. 06:40 UTC, 10-second steps
            beat.tick()
            clock.advance(10)
        disk = app.schedules.get("check-disk-every-10-seconds")
        report = app.schedules.get("report-on-weekday-mornings")
        drain(app)
        report_result = app.AsyncResult(report.last_task_id).get(timeout=1)
    assert disk.total_run_count == 600
    # 07:30 in Europe/Berlin (UTC+1 in March) is 06:30 UTC; next: Tuesday.
    assert report.total_run_count == 1
    assert report.last_run_at == datetime(2024, 3, 4, 6, 30, tzinfo=timezone.utc)
    assert report.next_run_at == datetime(2024, 3, 5, 6, 30, tzinfo=timezone.utc)
    assert report_result == "daily report sent"


def test_periodic_worker_with_embedded_beat_runs_the_interval_task(
    tmp_path: Path,
) -> None:
    folder = copy_example("periodic", tmp_path)
    tasks_py = folder / "tasks.py"
    text = tasks_py.read_text(encoding="utf-8")
    assert "timedelta(seconds=10)" in text
    tasks_py.write_text(text.replace("timedelta(seconds=10)", "timedelta(seconds=1)"))
    with worker(
        "-A", "tasks", "worker", "-B", "-l", "info", "-c", "1", cwd=folder
    ) as w:
        w.wait_for("succeeded", count=2)
        log = w.stop()
    assert re.search(r"succeeded in [0-9.]+s: 'disk \d+% used'", log), log


def test_flask_app_queues_in_a_request_and_shows_the_result(tmp_path: Path) -> None:
    folder = copy_example("webapp", tmp_path)
    with (
        worker("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder) as w,
        live([sys.executable, "flask_app.py", "0"], cwd=folder) as server,
    ):
        line = server.wait_for("serving on")
        base = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", line)
        assert base, line
        url = base.group(1)
        home = urllib.request.urlopen(f"{url}/", timeout=10).read().decode()
        assert "<form" in home
        form = urllib.parse.urlencode({"name": "cat.jpg", "size": "64"}).encode()
        with urllib.request.urlopen(f"{url}/thumbnails", data=form, timeout=10) as resp:
            assert resp.status == 202
            started = json.load(resp)
        status_url = f"{url}{started['status_url']}?wait=30"
        done = json.load(urllib.request.urlopen(status_url, timeout=40))
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(f"{url}/thumbnails/no-such-id", timeout=10)
        w.stop()
        server.kill()
    assert done == {"state": "SUCCESS", "result": "cat.jpg resized to 64x64"}
    assert unknown.value.code == 404
    assert json.load(unknown.value) == {"error": "no such task"}


def test_webapp_queues_in_a_request_and_shows_the_result(tmp_path: Path) -> None:
    folder = copy_example("webapp", tmp_path)
    with (
        worker("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder) as w,
        live([sys.executable, "web.py", "0"], cwd=folder) as server,
    ):
        line = server.wait_for("serving on")
        base = re.search(r"serving on (http://127\.0\.0\.1:\d+)/", line)
        assert base, line
        url = base.group(1)
        home = urllib.request.urlopen(f"{url}/", timeout=10).read().decode()
        assert "<form" in home
        form = urllib.parse.urlencode({"name": "cat.jpg", "size": "64"}).encode()
        with urllib.request.urlopen(f"{url}/thumbnails", data=form, timeout=10) as resp:
            assert resp.status == 202
            started = json.load(resp)
        status_url = f"{url}{started['status_url']}?wait=30"
        done = json.load(urllib.request.urlopen(status_url, timeout=40))
        w.stop()
        server.kill()
    assert done == {"state": "SUCCESS", "result": "cat.jpg resized to 64x64"}


def test_transactional_enqueue_commits_or_rolls_back_with_the_order(
    tmp_path: Path,
) -> None:
    folder = copy_example("transactional", tmp_path)
    out = python("shop.py", cwd=folder).stdout
    assert out.splitlines() == [
        "order 1 placed; its confirmation task is PENDING",
        "payment for pear declined: the order and its task were rolled back together",
        "orders in the database: 1",
    ]
    log = burst("worker", "shop.db", "-l", "info", "-c", "1", cwd=folder)
    assert (
        len(re.findall(r"Task shop\.send_confirmation\[\S+\] succeeded", log)) == 1
    ), log
    assert "'order 1: 3 x apple confirmed'" in log, log
    report = python("shop.py", "report", cwd=folder).stdout
    assert report.splitlines() == ["order 1: 3 x apple (confirmed)"]


def test_retries_back_off_and_end_in_success_or_failure(tmp_path: Path) -> None:
    folder = copy_example("retries", tmp_path)
    with worker("worker", "tasks.db", "-l", "info", "-c", "2", cwd=folder) as w:
        out = python("client.py", cwd=folder).stdout
        log = w.stop()
    assert out.splitlines() == [
        "fetch_rate: retrying after ConnectionError('rates service unreachable (USD)')",
        "fetch_rate: retrying after ConnectionError('rates service unreachable (USD)')",
        "fetch_rate: SUCCESS {'currency': 'USD', 'rate': 1.08}",
        "charge: retrying after TimeoutError('payment gateway timed out')",
        "charge: SUCCESS 'charged 9.50 EUR'",
        "always_down: retrying after ConnectionError('still unreachable')",
        "always_down: retrying after ConnectionError('still unreachable')",
        "always_down: FAILURE ConnectionError('still unreachable')",
    ]
    # Exponential backoff: 1 s, then 2 s.
    assert re.search(r"tasks\.fetch_rate\[[0-9a-f-]+\] retry: Retry in 1s", log), log
    assert re.search(r"tasks\.fetch_rate\[[0-9a-f-]+\] retry: Retry in 2s", log), log


def test_workflow_chain_group_and_chord_print_their_results(tmp_path: Path) -> None:
    folder = copy_example("workflow", tmp_path)
    with worker("worker", "tasks.db", "-l", "info", "-c", "2", cwd=folder) as w:
        out = python("client.py", cwd=folder).stdout
        w.stop()
    assert out.splitlines() == [
        "chain: 7",
        "group: [7, 4, 3]",
        "chord: 14",
        "chord | report: all pages: 14 words",
    ]


def test_edge_cron_script_drains_the_queue_and_exits(tmp_path: Path) -> None:
    folder = copy_example("edge_cron", tmp_path)
    for celsius in ("21.5", "22.0", "22.5"):
        python("sensor.py", celsius, cwd=folder)
    env = program_env(LITEQ=liteq_command()[0]) if len(liteq_command()) == 1 else None
    drained = run(["sh", "drain.sh"], cwd=folder, env=env)
    log = drained.stdout + drained.stderr
    assert len(re.findall(r"Task sensor\.upload\[\S+\] succeeded", log)) == 3, log
    rows = [
        json.loads(line)
        for line in (folder / "uploaded.jsonl").read_text().splitlines()
    ]
    assert [row["celsius"] for row in rows] == [21.5, 22.0, 22.5]
    # The next cron run finds nothing to do and exits at once.
    again = run(["sh", "drain.sh"], cwd=folder, env=env)
    assert "Task sensor.upload[" not in again.stdout + again.stderr
