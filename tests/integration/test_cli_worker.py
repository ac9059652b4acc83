"""``liteq worker`` in real processes: the seed programs' command lines."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import Liteq, states
from liteq.testing import wait_until

from .cli_procs import Procs, console_script, liteq_cmd, run, write

pytestmark = pytest.mark.slow

TASKS = """
from liteq import Liteq

app = Liteq("tasks", broker="sqlite:///tasks.db")

@app.task
def add(x, y):
    return x + y

@app.task
def where():
    import os
    return os.getpid()
"""

PROJ = {
    "proj/__init__.py": "",
    "proj/celery.py": """
        from __future__ import absolute_import
        from liteq import Celery

        app = Celery("proj", include=["proj.tasks"])
        app.config_from_object("proj.config")

        if __name__ == "__main__":
            app.start()
        """,
    "proj/config.py": """
        CELERY_RESULT_BACKEND = "sqlite:///proj.db"
        BROKER_URL = "sqlite:///proj.db"
        CELERY_TIMEZONE = "Asia/Shanghai"
        """,
    "proj/tasks.py": """
        from __future__ import absolute_import
        from proj.celery import app

        @app.task
        def add(x, y):
            return x + y

        @app.task(bind=True)
        def fanout(self, x):
            self.update_state(state="PROGRESS", meta={"p": 50})
            return add.delay(x, x).id
        """,
}


@pytest.fixture
def procs() -> Iterator[Procs]:
    with Procs() as started:
        yield started


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    for relpath, text in PROJ.items():
        write(tmp_path, relpath, text)
    return tmp_path


def producer(path: Path) -> Liteq:
    return Liteq("producer", broker=str(path), set_as_current=False)


def outcome(app: Liteq, task_id: str) -> tuple[str, object]:
    res = app.AsyncResult(task_id)
    return res.state, res.result


def test_worker_with_only_the_database_imports_task_modules_by_name(
    tmp_path: Path,
) -> None:
    write(tmp_path, "tasks.py", TASKS)
    app = producer(tmp_path / "tasks.db")
    good = app.send_task("tasks.add", (2, 2))
    unknown_module = app.send_task("no_such_module.job")
    unknown_task = app.send_task("tasks.nope")
    after = app.send_task("tasks.add", (3, 4))
    done = run(
        [console_script(), "worker", "tasks.db", "-l", "info", "--burst"], tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(app, good.id) == (states.SUCCESS, 4)
    assert outcome(app, after.id) == (states.SUCCESS, 7)
    for bad in (unknown_module, unknown_task):
        state, exc = outcome(app, bad.id)
        assert state == states.FAILURE and type(exc).__name__ == "NotRegistered"
    assert f"Task tasks.add[{good.id}] received" in done.stderr
    assert f"Task tasks.add[{good.id}] succeeded in" in done.stderr
    assert str(tmp_path / "tasks.db") in done.stdout  # the banner


def test_worker_with_proj_package_and_app_before_the_command(proj: Path) -> None:
    app = producer(proj / "proj.db")
    res = app.send_task("proj.tasks.add", (16, 16))
    done = run(liteq_cmd("-A", "proj", "worker", "-l", "info", "--burst"), proj)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(app, res.id) == (states.SUCCESS, 32)
    assert "proj.tasks.add" in done.stdout  # registered tasks in the banner


def test_worker_with_the_app_after_the_command_under_spawn(proj: Path) -> None:
    app = producer(proj / "proj.db")
    results = [app.send_task("proj.tasks.add", (i, i)) for i in range(4)]
    done = run(
        liteq_cmd("worker", "-A", "proj", "-c", "2", "--burst"),
        proj,
        LITEQ_START_METHOD="spawn",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [outcome(app, r.id) for r in results] == [
        (states.SUCCESS, 2 * i) for i in range(4)
    ]


def test_worker_database_on_the_command_line_overrides_the_app(proj: Path) -> None:
    app = producer(proj / "override.db")
    res = app.send_task("proj.tasks.fanout", (4,))
    done = run(
        liteq_cmd("-A", "proj", "worker", "override.db", "--burst", "-c", "1"),
        proj,
        LITEQ_START_METHOD="spawn",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    state, child_id = outcome(app, res.id)
    assert state == states.SUCCESS
    # The pool child published the subtask into the same (overriding) file.
    assert outcome(app, str(child_id)) == (states.SUCCESS, 8)
    assert not (proj / "proj.db").exists()


def test_worker_consumes_only_the_queues_given_with_q(tmp_path: Path) -> None:
    write(tmp_path, "tasks.py", TASKS)
    write(
        tmp_path,
        "client.py",
        """
        from tasks import add
        print(add.delay(1, 1).id)
        print(add.apply_async((2, 2), queue="priority.high").id)
        print(add.apply_async((3, 3), queue="other").id)
        """,
    )
    sent = run([sys.executable, "client.py"], tmp_path)
    assert sent.returncode == 0, sent.stderr
    default, high, other = sent.stdout.split()
    done = run(
        liteq_cmd("worker", "tasks.db", "-Q", "celery,priority.high", "--burst"),
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    app = producer(tmp_path / "tasks.db")
    assert outcome(app, default) == (states.SUCCESS, 2)
    assert outcome(app, high) == (states.SUCCESS, 4)
    assert outcome(app, other)[0] == states.PENDING


def test_burst_on_an_empty_database_exits_0_at_once(tmp_path: Path) -> None:
    done = run(
        liteq_cmd("worker", "empty.db", "--burst", "-P", "solo"), tmp_path, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_app_start_runs_the_command_line(proj: Path) -> None:
    app = producer(proj / "proj.db")
    res = app.send_task("proj.tasks.add", (5, 5))
    done = run(
        [sys.executable, "-m", "proj.celery", "worker", "-l", "info", "--burst"], proj
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcome(app, res.id) == (states.SUCCESS, 10)


def test_python_dash_m_liteq_shows_the_version(tmp_path: Path) -> None:
    done = run(liteq_cmd("--version"), tmp_path)
    assert done.returncode == 0 and "liteq" in done.stdout


def test_worker_logfile_and_pidfile(tmp_path: Path) -> None:
    write(tmp_path, "tasks.py", TASKS)
    app = producer(tmp_path / "tasks.db")
    res = app.send_task("tasks.add", (1, 1))
    done = run(
        liteq_cmd(
            "worker",
            "tasks.db",
            "-l",
            "info",
            "--burst",
            "-f",
            "w.log",
            "--pidfile",
            "w.pid",
        ),
        tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Task tasks.add[{res.id}] succeeded" in (tmp_path / "w.log").read_text()
    assert not (tmp_path / "w.pid").exists()


def test_celery_only_flags_are_accepted(proj: Path) -> None:
    done = run(
        liteq_cmd("-B", "-A", "proj", "worker", "-l", "info", "-P", "eventlet", "-E",
                  "--without-gossip", "--without-mingle", "-O", "fair", "--burst"),
        proj,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ignoring --without-gossip" in done.stderr


def test_autoreload_restarts_the_pool_when_a_python_file_changes(
    tmp_path: Path, procs: Procs
) -> None:
    module = write(
        tmp_path,
        "reloading.py",
        """
        from liteq import Liteq

        app = Liteq("reloading", broker="sqlite:///tasks.db")
        VALUE = 1

        @app.task
        def value():
            return VALUE
        """,
    )
    app = producer(tmp_path / "tasks.db")
    proc = procs.start(
        liteq_cmd("worker", "tasks.db", "-l", "info", "-c", "1", "--autoreload"),
        tmp_path,
    )
    first = app.send_task("reloading.value")
    assert first.get(timeout=30) == 1
    module.write_text(module.read_text().replace("VALUE = 1", "VALUE = 2"))
    wait_until(lambda: "restarting" in proc.output, timeout=20, message=proc.output)
    second = app.send_task("reloading.value")
    assert second.get(timeout=30) == 2
    proc.signal(15)
    assert proc.wait(30) == 0, proc.output


HOOKS = """
import os

from liteq.signals import worker_process_init

STARTED = []


@worker_process_init.connect
def remember(**kwargs):
    STARTED.append(os.getpid())
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_worker_include_modules_are_imported_in_every_pool_process(
    tmp_path: Path, method: str
) -> None:
    # A module with no tasks, only a handler of the pool processes' start
    # (a database connection per process, say), given with -I.
    write(tmp_path, "hooks.py", HOOKS)
    write(
        tmp_path,
        "tasks.py",
        TASKS
        + """
@app.task
def hooked():
    import os
    import sys

    hooks = sys.modules.get("hooks")
    return hooks is not None and hooks.STARTED == [os.getpid()]
""",
    )
    app = producer(tmp_path / "tasks.db")
    results = [app.send_task("tasks.hooked") for _ in range(4)]
    done = run(
        liteq_cmd("-A", "tasks", "worker", "-I", "hooks", "-c", "2", "--burst"),
        tmp_path,
        LITEQ_START_METHOD=method,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [outcome(app, r.id) for r in results] == [(states.SUCCESS, True)] * 4


def test_worker_exits_1_when_its_database_file_is_deleted(
    tmp_path: Path, procs: Procs
) -> None:
    write(tmp_path, "tasks.py", TASKS)
    app = producer(tmp_path / "tasks.db")
    first = app.send_task("tasks.add", (1, 1))
    worker = procs.start(liteq_cmd("-A", "tasks", "worker", "-c", "1"), tmp_path)
    assert first.get(timeout=30) == 2
    app.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"tasks.db{suffix}").unlink(missing_ok=True)
    assert worker.wait(timeout=30) == 1
    assert "was deleted while the worker ran" in worker.output
