"""``liteq status/purge/revoke/result/call`` in real processes, errors included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import Liteq, states

from .cli_procs import Procs, liteq_cmd, run, write

pytestmark = pytest.mark.slow

TASKS = """
import time

from liteq import Liteq

app = Liteq("tasks", broker="sqlite:///tasks.db")

@app.task
def add(x, y):
    return x + y

@app.task
def boom():
    raise KeyError("boom")

@app.task(bind=True)
def crunch(self, n):
    for i in range(1, n + 1):
        self.update_state(state="PROGRESS", meta={"current": i, "total": n})
    return n
"""


@pytest.fixture
def procs() -> Iterator[Procs]:
    with Procs() as started:
        yield started


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, "tasks.py", TASKS)
    return tmp_path


def liteq(cwd: Path, *args: str) -> tuple[int, str, str]:
    done = run(liteq_cmd(*args), cwd)
    return done.returncode, done.stdout, done.stderr


def assert_clean_error(code: int, err: str, text: str) -> None:
    assert code == 1, err
    assert err.startswith("Error: ") and text in err
    assert "Traceback" not in err


def test_call_then_worker_then_result_and_status(project: Path) -> None:
    code, out, err = liteq(project, "call", "tasks.db", "tasks.add", "--args", "[2, 2]")
    assert code == 0, err
    task_id = out.strip()
    code, out, err = liteq(project, "call", "tasks.db", "tasks.boom")
    failed_id = out.strip()
    code, out, err = liteq(project, "status", "tasks.db")
    assert code == 0 and "celery" in out and "READY" in out
    assert liteq(project, "worker", "tasks.db", "--burst", "-c", "1")[0] == 0
    code, out, err = liteq(project, "result", "tasks.db", task_id)
    assert code == 0 and "SUCCESS" in out and "Result: 4" in out
    code, out, err = liteq(project, "result", "tasks.db", failed_id, "--traceback")
    assert code == 1 and "KeyError" in out and "Traceback" in out
    code, out, err = liteq(project, "status", "tasks.db")
    assert code == 0 and f"tasks.boom[{failed_id}]" in out


def test_result_follow_shows_progress_until_the_task_finishes(
    project: Path, procs: Procs
) -> None:
    code, out, err = liteq(project, "call", "tasks.db", "tasks.crunch", "--args", "[3]")
    task_id = out.strip()
    procs.start(liteq_cmd("worker", "tasks.db", "-c", "1"), project)
    code, out, err = liteq(
        project, "result", "tasks.db", task_id, "--follow", "--timeout", "60"
    )
    assert code == 0, err
    assert "tasks.crunch: PROGRESS 1/3 (33%)" in out
    assert "tasks.crunch: PROGRESS 3/3 (100%)" in out
    assert "Result: 3" in out


def test_revoke_and_purge_remove_waiting_tasks(project: Path) -> None:
    app = Liteq("p", broker=str(project / "tasks.db"), set_as_current=False)
    keep = app.send_task("tasks.add", (1, 1))
    drop = app.send_task("tasks.add", (1, 2))
    code, out, err = liteq(project, "revoke", "tasks.db", drop.id)
    assert code == 0 and "revoked" in out
    assert app.AsyncResult(drop.id).state == states.REVOKED
    code, out, err = liteq(project, "purge", "tasks.db", "-f")
    assert code == 0 and "Purged 1 task" in out
    assert app.AsyncResult(keep.id).state == states.PENDING
    assert not app.AsyncResult(keep.id).exists()


def test_commands_on_a_missing_database_fail_cleanly_and_create_nothing(
    tmp_path: Path,
) -> None:
    for args in (
        ["status", "nope.db"],
        ["purge", "nope.db", "-f"],
        ["revoke", "nope.db", "abc"],
        ["result", "nope.db", "abc"],
    ):
        code, out, err = liteq(tmp_path, *args)
        assert_clean_error(code, err, "does not exist")
    assert not (tmp_path / "nope.db").exists()


def test_unknown_ids_fail_with_a_clear_message(project: Path) -> None:
    liteq(project, "call", "tasks.db", "tasks.add", "--args", "[1, 1]")
    code, out, err = liteq(project, "result", "tasks.db", "no-such-id")
    assert_clean_error(code, err, "unknown task id 'no-such-id'")
    code, out, err = liteq(project, "revoke", "tasks.db", "no-such-id")
    assert code == 1 and "unknown task id" in err and "Traceback" not in err


def test_bad_usage_exits_2(project: Path) -> None:
    code, out, err = liteq(project, "call", "tasks.db", "tasks.add", "--args", "nope")
    assert code == 2 and "not valid JSON" in err
    code, out, err = liteq(project, "worker", "tasks.db", "-l", "shouty")
    assert code == 2 and "not a log level" in err
