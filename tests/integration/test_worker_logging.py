"""``liteq worker`` logging in real processes: redirected prints, per-process files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from liteq import Liteq, states

from .cli_procs import liteq_cmd, run, write

pytestmark = pytest.mark.slow

TASKS = """
import sys

from liteq import Liteq

app = Liteq("tasks", broker="sqlite:///tasks.db")

@app.task
def chatty(n):
    print("hello from task", n)
    sys.stdout.write("partial ")
    sys.stdout.write("line %d\\n" % n)
    print("complaint", n, file=sys.stderr)
    return n
"""


def send(path: Path, count: int) -> list[str]:
    producer = Liteq("producer", broker=str(path), set_as_current=False)
    try:
        return [producer.send_task("tasks.chatty", (i,)).id for i in range(count)]
    finally:
        producer.close()


def all_succeeded(path: Path, ids: list[str]) -> bool:
    app = Liteq("check", broker=str(path), set_as_current=False)
    try:
        return all(app.AsyncResult(task_id).state == states.SUCCESS for task_id in ids)
    finally:
        app.close()


@pytest.mark.parametrize(
    ("pool", "process"),
    [
        (["-P", "prefork", "-c", "2"], r"PoolWorker-[12]"),
        (["-P", "solo"], "MainProcess"),
    ],
)
def test_task_prints_land_in_the_logfile_as_warning_records(
    tmp_path: Path, pool: list[str], process: str
) -> None:
    write(tmp_path, "tasks.py", TASKS)
    ids = send(tmp_path / "tasks.db", 3)
    done = run(
        liteq_cmd("worker", "tasks.db", "--burst", "-f", "w.log", *pool), tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert all_succeeded(tmp_path / "tasks.db", ids)
    text = (tmp_path / "w.log").read_text()
    for n in range(3):
        for message in (f"hello from task {n}", f"partial line {n}", f"complaint {n}"):
            pattern = rf": WARNING/{process}\] {message}$"
            assert re.search(pattern, text, re.MULTILINE), (message, text)
    assert "hello from task" not in done.stdout + done.stderr


def test_task_prints_stay_on_stdout_when_redirect_is_off(tmp_path: Path) -> None:
    write(tmp_path, "quiet.py", TASKS + "\napp.config_from_object('celeryconfig')\n")
    write(tmp_path, "celeryconfig.py", "CELERY_REDIRECT_STDOUTS = False\n")
    producer = Liteq(
        "producer", broker=str(tmp_path / "tasks.db"), set_as_current=False
    )
    try:
        task_id = producer.send_task("quiet.chatty", (7,)).id
    finally:
        producer.close()
    done = run(
        liteq_cmd("-A", "quiet", "worker", "--burst", "-P", "solo", "-f", "w.log"),
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert all_succeeded(tmp_path / "tasks.db", [task_id])
    assert "hello from task 7" in done.stdout
    assert "complaint 7" in done.stderr
    assert "hello from task" not in (tmp_path / "w.log").read_text()


def test_logfile_process_index_gives_each_pool_process_its_own_file(
    tmp_path: Path,
) -> None:
    write(tmp_path, "tasks.py", TASKS)
    ids = send(tmp_path / "tasks.db", 4)
    (tmp_path / "logs").mkdir()
    done = run(
        liteq_cmd(
            "worker", "tasks.db", "--burst", "-l", "info", "-n", "w1@%h", "-c", "2",
            "-P", "prefork", "--logfile", str(tmp_path / "logs" / "%n-%i.log"),
        ),
        tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert all_succeeded(tmp_path / "tasks.db", ids)
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "w1-0.log",
        "w1-1.log",
        "w1-2.log",
    ]
    main = (logs / "w1-0.log").read_text()
    assert "INFO/MainProcess]" in main
    assert not re.search(r"/PoolWorker-\d+\]", main)
    children = ""
    for index in (1, 2):
        text = (logs / f"w1-{index}.log").read_text()
        # Each pool process logs only its own lines, to its own file.
        assert "/MainProcess]" not in text
        assert f"/PoolWorker-{3 - index}]" not in text
        children += text
    for n in range(4):
        pattern = rf": WARNING/PoolWorker-[12]\] hello from task {n}$"
        assert re.search(pattern, children, re.MULTILINE), children


SIGNALLED = """
import logging
import os

from liteq import Liteq
from liteq.signals import after_setup_logger, setup_logging

app = Liteq("signalled", broker="sqlite:///tasks.db")


def note(text):
    with open("signals.txt", "a") as fh:
        fh.write(f"{os.getpid()} {text}\\n")


if os.environ.get("OWN_LOGGING"):
    @setup_logging.connect
    def own(loglevel=None, logfile=None, **kwargs):
        note(f"setup_logging {logging.getLevelName(loglevel)}")
        logging.basicConfig(filename="own.log", format="OWN %(message)s", force=True)
else:
    @after_setup_logger.connect
    def more(logger=None, loglevel=None, **kwargs):
        note(f"after_setup_logger {logger.name}")


@app.task
def job():
    logging.getLogger("jobs").warning("from the job")
    return os.getpid()
"""


@pytest.mark.parametrize("own", [True, False])
def test_logging_signals_reach_the_worker_and_its_pool_process(
    tmp_path: Path, own: bool
) -> None:
    write(tmp_path, "signalled.py", SIGNALLED)
    producer = Liteq(
        "producer", broker=str(tmp_path / "tasks.db"), set_as_current=False
    )
    try:
        task_id = producer.send_task("signalled.job").id
    finally:
        producer.close()
    extra = {"OWN_LOGGING": "1"} if own else {}
    done = run(
        liteq_cmd("-A", "signalled", "worker", "--burst", "-c", "1", "-l", "info"),
        tmp_path,
        **extra,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    check = Liteq("check", broker=str(tmp_path / "tasks.db"), set_as_current=False)
    try:
        child_pid = check.AsyncResult(task_id).get(timeout=5)
    finally:
        check.close()
    lines = (tmp_path / "signals.txt").read_text().splitlines()
    expected = "setup_logging INFO" if own else "after_setup_logger root"
    pids = {int(line.split()[0]) for line in lines if line.endswith(expected)}
    assert child_pid in pids and len(pids) == 2, lines  # the worker and its child
    if own:
        # Their logging, not liteq's: the task's record is in their file.
        assert "OWN from the job" in (tmp_path / "own.log").read_text()
