"""The Celery tutorials' programs (examples/seeds/) run on liteq against real workers.

Each test copies one seed folder into tmp_path, runs the document's commands
(liteq's spelling) and checks what the programs and the worker print.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.examples.support import (
    burst,
    copy_example,
    liteq_command,
    live,
    python,
    run,
    succeeded,
    worker,
)

pytestmark = pytest.mark.examples

SEED_000 = "seeds/000_quickstart_proj_beat"
SEED_001 = "seeds/001_hooks_progress_beat_chain"
SEED_002 = "seeds/002_celery_app_imports_beat"
SEED_003 = "seeds/003_send_task_pickle"
SEED_004 = "seeds/004_queues_signatures_config"


def canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True)


def lines(text: str) -> list[str]:
    return [line.rstrip("\r") for line in text.splitlines()]


# -- 000: quick start, the proj package -----------------------------------------------


def test_seed_quickstart_client_gets_its_result_from_a_burst_worker(
    tmp_path: Path,
) -> None:
    folder = copy_example(f"{SEED_000}/quickstart", tmp_path)
    with live([sys.executable, "client.py"], cwd=folder) as client:
        # The client prints ready()/result before any worker exists, then waits in get().
        client.wait_for("None")
        log = burst("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder)
        client.proc.wait(30)
        out = client.output()
    assert client.proc.returncode == 0, out
    assert lines(out) == ["False", "None", "6"]
    assert succeeded(log, "tasks.add", "4"), log
    assert succeeded(log, "tasks.add", "6"), log


def test_seed_proj_package_runs_with_dash_a_proj(tmp_path: Path) -> None:
    folder = copy_example(f"{SEED_000}/package", tmp_path)
    python("-c", "from proj.tasks import add; print(add.delay(2, 3).id)", cwd=folder)
    log = burst("-A", "proj", "worker", "-l", "info", "-c", "1", cwd=folder)
    assert succeeded(log, "proj.tasks.add", "5"), log
    out = python(
        "-c",
        "from proj.celery import app\n"
        "from proj.tasks import add\n"
        "print(sorted(n for n in app.tasks if n.startswith('proj.')))",
        cwd=folder,
    ).stdout
    assert out.strip() == "['proj.tasks.add']"


def test_seed_proj_celery_module_starts_a_worker_with_app_start(tmp_path: Path) -> None:
    # celery.py ends with `if __name__ == '__main__': app.start()`.
    folder = copy_example(f"{SEED_000}/package", tmp_path)
    python("-c", "from proj.tasks import add; add.delay(20, 22)", cwd=folder)
    proc = python(
        "-m", "proj.celery", "worker", "-l", "info", "-c", "1", "--burst", cwd=folder
    )
    log = proc.stdout + proc.stderr
    assert succeeded(log, "proj.tasks.add", "42"), log


def test_seed_beat_config_sends_add_with_worker_dash_b(tmp_path: Path) -> None:
    folder = copy_example(f"{SEED_000}/scheduler", tmp_path)
    config = folder / "proj" / "config.py"
    text = config.read_text(encoding="utf-8")
    assert "timedelta(seconds=30)" in text
    # Same schedule, one second apart, so the test sees two runs quickly.
    config.write_text(text.replace("timedelta(seconds=30)", "timedelta(seconds=1)"))
    with worker("-A", "proj", "worker", "-B", "-l", "info", "-c", "1", cwd=folder) as w:
        w.wait_for("succeeded", count=2)
        log = w.stop()
    assert "Sending due task add-every-30-seconds (proj.tasks.add)" in log, log
    assert succeeded(log, "proj.tasks.add", "32"), log


def test_seed_crontab_entry_is_stored_for_next_monday_730_shanghai(
    tmp_path: Path,
) -> None:
    folder = copy_example(f"{SEED_000}/crontab", tmp_path)
    burst("-A", "proj", "worker", "-B", "-l", "info", "-c", "1", cwd=folder)
    listing = run([*liteq_command(), "-A", "proj", "schedule", "list"], cwd=folder)
    found = re.search(
        r"add-every-monday-morning: proj\.tasks\.add .*\n\s+next (\d{4}-\d\d-\d\d) "
        r"07:30:00\+08:00",
        listing.stdout,
    )
    assert found, listing.stdout
    assert date.fromisoformat(found.group(1)).weekday() == 0  # a Monday


# -- 001: hooks, bind, progress, beat, chains, then() -----------------------------------


def test_seed_trigger_polls_ready_until_the_worker_is_done(tmp_path: Path) -> None:
    folder = copy_example(f"{SEED_001}/quickstart", tmp_path)
    with worker("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder) as w:
        out = python("trigger.py", cwd=folder).stdout
        w.stop()
    assert lines(out) == ["task done: 8"]


def test_seed_custom_task_base_runs_on_success_and_on_failure_in_the_worker(
    tmp_path: Path,
) -> None:
    folder = copy_example(f"{SEED_001}/hooks", tmp_path)
    with worker("-A", "tasks", "worker", "--loglevel=info", "-c", "1", cwd=folder) as w:
        out = python("trigger.py", cwd=folder).stdout
        log = w.stop()
    assert lines(out) == ["task done: 8", "task failed: KeyError('x')"]
    # on_success/on_failure print in the worker; Celery logs prints as warnings.
    assert "task done: 8" in log, log
    assert "task fail, reason: 'x'" in log, log
    assert re.search(
        r"Task tasks\.add_fails\[[0-9a-f-]+\] raised unexpected: KeyError\('x'\)", log
    ), log


def test_seed_bound_task_logs_its_request(tmp_path: Path) -> None:
    folder = copy_example(f"{SEED_001}/bind", tmp_path)
    with worker("-A", "tasks", "worker", "--loglevel=info", "-c", "1", cwd=folder) as w:
        out = python("trigger.py", cwd=folder).stdout
        log = w.stop()
    assert lines(out) == ["task done: 8"]
    # logger.info(self.request.__dict__) shows the request's fields.
    assert re.search(r"'id': '[0-9a-f-]+'", log), log
    assert "'args': (4, 4)" in log or "'args': [4, 4]" in log, log


def test_seed_progress_updates_reach_on_message_in_order(tmp_path: Path) -> None:
    folder = copy_example(f"{SEED_001}/progress", tmp_path)
    with worker("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder) as w:
        out = python("trigger.py", cwd=folder).stdout
        w.stop()
    steps = re.findall(r"任务进度: (\d+)%", out)
    assert steps == [str(p) for p in range(10, 101, 10)], out
    assert lines(out)[-2:] == ["finish", "finish"], out


def test_seed_period_task_runs_from_celery_config_with_a_separate_beat(
    tmp_path: Path,
) -> None:
    folder = copy_example(f"{SEED_001}/periodic", tmp_path)
    config = folder / "celery_config.py"
    text = config.read_text(encoding="utf-8")
    assert "timedelta(seconds=5)" in text
    config.write_text(text.replace("timedelta(seconds=5)", "timedelta(seconds=1)"))
    with worker("-A", "tasks", "worker", "-l", "info", "-c", "1", cwd=folder) as w:
        with live(
            [*liteq_command(), "-A", "tasks", "beat", "-l", "info"], cwd=folder
        ) as beat:
            w.wait_for("period task done:", count=2)
            beat_log = beat.stop()
        log = w.stop()
    assert "Sending due task ptask (tasks.period_task)" in beat_log, beat_log
    assert re.search(r"period task done: [0-9a-f-]{36}", log), log


def test_seed_chain_and_link_examples_store_pages(tmp_path: Path) -> None:
    folder = copy_example(f"{SEED_001}/chain", tmp_path)
    python("client.py", cwd=folder)
    log = burst("worker", "tasks.db", "-l", "info", "-c", "2", cwd=folder)
    rows = [
        json.loads(line) for line in (folder / "pages.txt").read_text().splitlines()
    ]
    page = "<html><head><title>Page at http://example.com/</title></head></html>"
    parsed = {"title": "Page at http://example.com/", "length": len(page)}
    # The chain stores the parsed info; link=[...] gives store_page_info the raw page.
    expected: list[dict[str, Any]] = [
        {"url": "http://example.com/", "info": parsed},
        {"url": "http://example.com/", "info": page},
    ]
    assert sorted(rows, key=canonical) == sorted(expected, key=canonical), log
    assert len(re.findall(r"Task tasks\.parse_page\[\S+\] succeeded", log)) == 2, log


def test_seed_blocking_get_inside_a_task_fails_with_runtimeerror(
    tmp_path: Path,
) -> None:
    folder = copy_example(f"{SEED_001}/chain", tmp_path)
    out = python("wrong_way_client.py", cwd=folder).stdout
    task_id = out.split()[-1]
    log = burst("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder)
    assert re.search(
        rf"Task wrong_way\.update_page_info\[{task_id}\] raised unexpected: RuntimeError\(.Never call result\.get\(\) within a task",
        log,
    ), log
    assert "Task wrong_way.fetch_page[" in log, log


def test_seed_then_callback_fires_without_gevent(tmp_path: Path) -> None:
    folder = copy_example(f"{SEED_001}/promise", tmp_path)
    with worker("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder) as w:
        out = python("promise.py", cwd=folder).stdout
        w.stop()
    assert re.fullmatch(r"Received result for id '[0-9a-f-]{36}': 4\n4\n", out), out


# -- 002: the celery_app package with CELERY_IMPORTS ------------------------------------


def test_seed_celery_app_imports_task_modules_and_runs_client_tasks(
    tmp_path: Path,
) -> None:
    folder = copy_example(SEED_002, tmp_path)
    out = python("client.py", cwd=folder).stdout
    assert [line.split()[0] for line in lines(out)] == ["开始", "完成"], out
    # The document's order: `celery worker -A celery_app --loglevel=info`.
    log = burst("worker", "-A", "celery_app", "--loglevel=info", "-c", "2", cwd=folder)
    assert succeeded(log, "celery_app.task1.add", "5"), log
    assert succeeded(log, "celery_app.task2.multiply", "6"), log


def test_seed_celery_app_beat_sends_the_30_second_entry(tmp_path: Path) -> None:
    folder = copy_example(SEED_002, tmp_path)
    config = folder / "celery_app" / "celeryconfig.py"
    text = config.read_text(encoding="utf-8")
    assert "timedelta(seconds=30)" in text
    config.write_text(text.replace("timedelta(seconds=30)", "timedelta(seconds=1)"))
    for module in ("task1.py", "task2.py"):  # the tasks' 2-second naps, shortened
        path = folder / "celery_app" / module
        path.write_text(path.read_text().replace("time.sleep(2)", "time.sleep(0.1)"))
    # The document's `celery beat -A celery_app`, with -l info to see it send.
    with live(
        [*liteq_command(), "beat", "-A", "celery_app", "-l", "info"], cwd=folder
    ) as beat:
        beat.wait_for("Sending due task add-every-30-seconds (celery_app.task1.add)")
        beat.stop()
    # The document's one-process form: `celery -B -A celery_app worker -l info`.
    with worker(
        "-B", "-A", "celery_app", "worker", "-l", "info", "-c", "2", cwd=folder
    ) as w:
        w.wait_for("Sending due task add-every-30-seconds (celery_app.task1.add)")
        w.wait_for("succeeded in")
        log = w.stop()
    assert succeeded(log, "celery_app.task1.add", "5"), log


# -- 003: send_task from a program without the task code, pickle -------------------------


def test_seed_host_a_sends_a_pickled_task_by_name_to_host_b(tmp_path: Path) -> None:
    folder = copy_example(SEED_003, tmp_path)
    with worker("-A", "task", "worker", "--loglevel=info", "-c", "1", cwd=folder) as w:
        w.wait_for("ready")
        out = python("host_a.py", cwd=folder).stdout
        log = w.stop()
    assert lines(out) == ["True", "3"], out
    assert succeeded(log, "task.add", "3"), log


# -- 004: queues, signatures, configuration file ----------------------------------------


def test_seed_queue_routing_and_signatures_run_on_both_queues(tmp_path: Path) -> None:
    folder = copy_example(SEED_004, tmp_path)
    with worker(
        "worker",
        "tasks.db",
        "-l",
        "info",
        "-Q",
        "celery,priority.high",
        "-c",
        "2",
        cwd=folder,
    ) as w:
        out = python("client.py", cwd=folder).stdout
        log = w.stop()
    assert lines(out) == [
        "tasks.add(2, 2) {'countdown': 10}",
        "tasks.add(2, 2) {'countdown': 10}",
        "tasks.add(2, 2, debug=True) {}",
        "tasks.add(2, 2) {'countdown': 1}",
        "4",
        "['a', 'b', 'x', 'y']",
        "['a', 'b', 'x', 'y']",
        "4",
        "4",
        "4",
    ], out
    assert len(re.findall(r"Task tasks\.add\[\S+\] succeeded", log)) == 3, log


def test_seed_task_sent_to_priority_high_waits_for_a_worker_on_that_queue(
    tmp_path: Path,
) -> None:
    folder = copy_example(SEED_004, tmp_path)
    out = python(
        "-c",
        "from tasks import add\n"
        "print(add.apply_async((2, 2), queue='priority.high').id)",
        cwd=folder,
    ).stdout
    task_id = out.strip()
    log = burst("worker", "tasks.db", "-l", "info", "-c", "1", cwd=folder)
    assert task_id not in log, log
    log = burst(
        "worker",
        "tasks.db",
        "-l",
        "info",
        "-c",
        "1",
        "-Q",
        "celery,priority.high",
        cwd=folder,
    )
    assert succeeded(log, "tasks.add", "4", task_id=task_id), log
