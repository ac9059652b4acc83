"""``liteq worker`` option parsing, with a stand-in worker (fast, in-process)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.cli.logs import parse_loglevel, setup_logging
from liteq.cli.pidfile import Pidfile
from liteq.cli.worker import expand_node_format, node_name, split_list
from liteq.log import LoggingProxy, WorkerLogging, logfile_for_process, worker_logging
from liteq.testing import wait_until

from .cli_support import (
    FakeWorker,
    failed,
    invoke,
    isolated,
    ok,
    use_fake_worker,
    write_module,
)

PROJ_CELERY = """
from liteq import Celery

app = Celery("proj", include=["proj.tasks"])
app.config_from_object("proj.config")

if __name__ == "__main__":
    app.start()
"""
PROJ_CONFIG = """
BROKER_URL = "sqlite:///proj.db"
CELERY_RESULT_BACKEND = "sqlite:///proj.db"
CELERYD_CONCURRENCY = 3
"""
PROJ_TASKS = """
from proj.celery import app

@app.task
def add(x, y):
    return x + y
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with isolated(tmp_path, monkeypatch) as path:
        use_fake_worker(monkeypatch)
        yield path


@pytest.fixture
def proj(workdir: Path) -> Path:
    write_module(workdir, "proj/__init__.py", "")
    write_module(workdir, "proj/celery.py", PROJ_CELERY)
    write_module(workdir, "proj/config.py", PROJ_CONFIG)
    write_module(workdir, "proj/tasks.py", PROJ_TASKS)
    return workdir


def only_worker() -> FakeWorker:
    assert len(FakeWorker.instances) == 1
    return FakeWorker.instances[0]


# -- which app and database ------------------------------------------------------------------


def test_worker_builds_an_app_from_the_database_argument(workdir: Path) -> None:
    ok(invoke(["worker", "tasks.db"]))
    worker = only_worker()
    assert worker.app.storage.path == str(workdir / "tasks.db")
    assert worker.kwargs["app_path"] is None
    assert worker.kwargs["autoimport"] is True
    assert worker.runs == [False]


def test_worker_in_a_missing_directory_fails_at_once(workdir: Path) -> None:
    result = failed(invoke(["worker", "nodir/tasks.db"]))
    assert "nodir" in result.output and "does not exist" in result.output
    assert FakeWorker.instances == []


def test_worker_without_database_or_app_is_a_usage_error(workdir: Path) -> None:
    result = failed(invoke(["worker"]), code=2)
    assert "no database given" in result.output


def test_worker_finds_the_app_given_before_the_command(proj: Path) -> None:
    ok(invoke(["-A", "proj", "worker", "-l", "info"]))
    worker = only_worker()
    assert worker.kwargs["app_path"] == "proj.celery:app"
    assert worker.app.storage.path == str(proj / "proj.db")
    assert "proj.tasks.add" in worker.app.tasks  # include=[...] imported at start


def test_worker_finds_the_app_given_after_the_command(proj: Path) -> None:
    ok(invoke(["worker", "-A", "proj", "-l", "info"]))
    assert only_worker().kwargs["app_path"] == "proj.celery:app"


def test_worker_accepts_celery3_order_with_beat_before_the_app(proj: Path) -> None:
    ok(invoke(["-B", "-A", "proj", "worker", "-l", "info"]))
    assert only_worker().kwargs["beat"] is True


def test_worker_with_app_in_package_init_imports_celery_imports(workdir: Path) -> None:
    write_module(
        workdir,
        "celery_app/__init__.py",
        """
        from liteq import Celery

        app = Celery("demo")
        app.config_from_object("celery_app.celeryconfig")
        """,
    )
    write_module(
        workdir,
        "celery_app/celeryconfig.py",
        """
        BROKER_URL = "sqlite:///demo.db"
        CELERY_TIMEZONE = "Asia/Shanghai"
        CELERY_IMPORTS = ("celery_app.task1",)
        """,
    )
    write_module(
        workdir,
        "celery_app/task1.py",
        """
        from celery_app import app

        @app.task
        def add(x, y):
            return x + y
        """,
    )
    ok(invoke(["worker", "-A", "celery_app", "-l", "info", "-P", "eventlet"]))
    worker = only_worker()
    assert worker.kwargs["app_path"] == "celery_app:app"
    assert "celery_app.task1.add" in worker.app.tasks
    assert worker.app.storage.path == str(workdir / "demo.db")


def test_worker_database_argument_overrides_the_app_configuration(proj: Path) -> None:
    ok(invoke(["-A", "proj", "worker", "other.db"]))
    assert only_worker().app.storage.path == str(proj / "other.db")


def test_worker_rejects_an_argument_that_is_not_a_database_when_an_app_is_given(
    proj: Path,
) -> None:
    result = failed(invoke(["-A", "proj", "worker", "window"]), code=2)
    assert "unexpected argument 'window'" in result.output
    assert not (proj / "window").exists()


def test_worker_uses_the_started_app_and_its_module_path(proj: Path) -> None:
    from liteq.cli.loader import find_app

    app, _ = find_app("proj")
    with pytest.raises(SystemExit) as info:
        app.worker_main(["worker", "--loglevel=INFO"])
    assert info.value.code == 0
    worker = only_worker()
    assert worker.app is app and worker.kwargs["app_path"] == "proj.celery:app"


# -- options -------------------------------------------------------------------------------


def test_worker_passes_every_option_to_the_worker(workdir: Path) -> None:
    ok(
        invoke(
            [
                "worker", "tasks.db", "-c", "3", "-P", "threads", "-Q", "a,b", "-Q", "c",
                "-n", "w1@%h", "--max-tasks-per-child", "5", "--max-memory-per-child",
                "20000", "--time-limit", "10", "--soft-time-limit", "5", "--lease", "30",
                "--fallback-poll", "2", "--claim-linger", "0.005", "--shutdown-grace", "4",
                "-B",
                "--start-method", "spawn", "--no-autoimport", "--burst",
            ]
        )
    )  # fmt: skip
    worker = only_worker()
    kw = worker.kwargs
    assert kw["concurrency"] == 3 and kw["pool"] == "threads"
    assert kw["queues"] == ["a", "b", "c"]
    assert kw["hostname"] == node_name("w1@%h")
    assert kw["max_tasks_per_child"] == 5 and kw["max_memory_per_child"] == 20000
    assert kw["time_limit"] == 10.0 and kw["soft_time_limit"] == 5.0
    assert kw["lease"] == 30.0 and kw["fallback_poll"] == 2.0
    assert kw["claim_linger"] == 0.005
    assert kw["shutdown_grace"] == 4.0 and kw["beat"] is True
    assert kw["start_method"] == "spawn" and kw["autoimport"] is False
    assert kw["install_signal_handlers"] is True
    assert worker.runs == [True]


def test_worker_leaves_unset_options_to_the_app_configuration(workdir: Path) -> None:
    ok(invoke(["worker", "tasks.db"]))
    kw = only_worker().kwargs
    assert kw["concurrency"] is None and kw["queues"] is None
    assert kw["pool"] == "prefork" and kw["hostname"] is None
    assert kw["time_limit"] is None and kw["beat"] is False


def test_worker_takes_the_pool_from_the_app_configuration(workdir: Path) -> None:
    write_module(
        workdir,
        "solo_app.py",
        "from liteq import Liteq\napp = Liteq('s', broker='s.db', worker_pool='solo')\n",
    )
    ok(invoke(["-A", "solo_app", "worker"]))
    assert only_worker().kwargs["pool"] == "solo"


def test_worker_reads_options_from_liteq_environment_variables(workdir: Path) -> None:
    env = {
        "LITEQ_DATABASE": "env.db",
        "LITEQ_CONCURRENCY": "2",
        "LITEQ_POOL": "solo",
        "LITEQ_QUEUES": "x,y",
        "LITEQ_LOGLEVEL": "info",
        "LITEQ_BURST": "1",
        "LITEQ_HOSTNAME": "env@box",
        "LITEQ_MAX_TASKS_PER_CHILD": "7",
        "LITEQ_TIME_LIMIT": "9",
        "LITEQ_AUTOIMPORT": "false",
    }
    ok(invoke(["worker"], env=env))
    worker = only_worker()
    kw = worker.kwargs
    assert worker.app.storage.path == str(workdir / "env.db")
    assert (kw["concurrency"], kw["pool"], kw["queues"]) == (2, "solo", ["x", "y"])
    assert kw["hostname"] == "env@box" and kw["max_tasks_per_child"] == 7
    assert kw["time_limit"] == 9.0 and kw["autoimport"] is False
    assert worker.runs == [True]
    assert logging.getLogger().level == logging.INFO


def test_worker_reads_the_app_from_the_environment(proj: Path) -> None:
    ok(invoke(["worker"], env={"LITEQ_APP": "proj"}))
    assert only_worker().kwargs["app_path"] == "proj.celery:app"


@pytest.mark.parametrize(
    ("given", "level"),
    [("info", logging.INFO), ("INFO", logging.INFO), ("Warning", logging.WARNING),
     ("fatal", logging.CRITICAL), ("debug", logging.DEBUG), ("10", 10)],
)  # fmt: skip
def test_worker_loglevel_accepts_celery_names_in_any_case(
    workdir: Path, given: str, level: int
) -> None:
    ok(invoke(["worker", "tasks.db", "-l", given]))
    assert logging.getLogger().level == level


def test_worker_rejects_an_unknown_loglevel(workdir: Path) -> None:
    result = failed(invoke(["worker", "tasks.db", "-l", "loud"]), code=2)
    assert "not a log level" in result.output
    assert FakeWorker.instances == []


def test_worker_maps_processes_and_green_pools(workdir: Path) -> None:
    ok(invoke(["worker", "tasks.db", "-P", "processes"]))
    result = ok(invoke(["worker", "tasks.db", "-P", "eventlet"]))
    assert [w.kwargs["pool"] for w in FakeWorker.instances] == ["prefork", "threads"]
    assert "threads pool" in result.output


def test_worker_rejects_an_unknown_pool(workdir: Path) -> None:
    failed(invoke(["worker", "tasks.db", "-P", "custom"]), code=2)


def test_worker_ignores_celery_only_flags_with_a_one_line_note(workdir: Path) -> None:
    result = ok(
        invoke(
            ["worker", "tasks.db", "-E", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-O", "fair", "--prefetch-multiplier", "4",
             "-S", "state.db", "-s", "beat-schedule", "--scheduler", "x:Y",
             "--heartbeat-interval", "5", "-X", "slow", "--pool-restarts"]
        )
    )  # fmt: skip
    notes = [
        line
        for line in result.output.splitlines()
        if line.startswith("liteq: ignoring")
    ]
    assert len(notes) == 12
    assert any("--without-gossip" in n for n in notes)
    assert only_worker().runs == [False]


def test_worker_quiet_suppresses_notes_and_banner(workdir: Path) -> None:
    result = ok(invoke(["-q", "worker", "tasks.db", "--without-gossip"]))
    assert "ignoring" not in result.output and "BANNER" not in result.output


def test_worker_prints_the_banner(workdir: Path) -> None:
    result = ok(invoke(["worker", "tasks.db"]))
    assert f"BANNER {workdir / 'tasks.db'}" in result.output


def test_worker_refuses_to_detach(workdir: Path) -> None:
    result = failed(invoke(["worker", "tasks.db", "--detach"]), code=2)
    assert "service manager" in result.output


def test_worker_autoscale_runs_the_maximum_number_of_children(workdir: Path) -> None:
    ok(invoke(["worker", "tasks.db", "--autoscale", "6,2"]))
    ok(invoke(["worker", "tasks.db", "--autoscale", "6,2", "-c", "2"]))
    assert [w.kwargs["concurrency"] for w in FakeWorker.instances] == [6, 2]
    failed(invoke(["worker", "tasks.db", "--autoscale", "many"]), code=2)


def test_worker_exits_with_the_status_the_worker_returns(workdir: Path) -> None:
    FakeWorker.exit_code = 3
    result = invoke(["worker", "tasks.db", "--burst"])
    assert result.exit_code == 3


def test_worker_include_imports_modules_up_front(workdir: Path) -> None:
    write_module(
        workdir,
        "extra_tasks.py",
        "from liteq import shared_task\n\n@shared_task\ndef ping():\n    return 'pong'\n",
    )
    write_module(workdir, "more_tasks.py", "from liteq import shared_task\n")
    ok(
        invoke(
            ["worker", "tasks.db", "-I", "extra_tasks,more_tasks", "--include", "json"]
        )
    )
    app = only_worker().app
    assert "extra_tasks.ping" in app.tasks
    assert list(app.conf.include) == ["extra_tasks", "more_tasks", "json"]


def test_worker_include_of_a_missing_module_fails_clearly(workdir: Path) -> None:
    result = failed(invoke(["worker", "tasks.db", "--include", "nope_mod"]))
    assert "nope_mod" in result.output
    assert FakeWorker.instances == []


def test_worker_purge_deletes_waiting_tasks_before_starting(workdir: Path) -> None:
    producer = Liteq("p", broker=str(workdir / "tasks.db"))
    producer.send_task("tasks.add", (1, 2))
    producer.send_task("tasks.add", (1, 2), queue="other")
    result = ok(invoke(["worker", "tasks.db", "--purge"]))
    assert "Purged 1 waiting task from celery." in result.output
    assert set(producer.storage.broker.queue_stats(producer.clock.time())) == {"other"}


def test_worker_umask_is_applied(workdir: Path) -> None:
    old = os.umask(0o022)
    try:
        ok(invoke(["worker", "tasks.db", "--umask", "077"]))
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(old)
    failed(invoke(["worker", "tasks.db", "--umask", "9x"]), code=2)


# -- pid file, log file ------------------------------------------------------------------------


def test_worker_pidfile_holds_the_pid_while_running_and_is_removed(
    workdir: Path,
) -> None:
    seen: list[str] = []

    def check(worker: FakeWorker) -> None:
        seen.append((workdir / "w.pid").read_text().strip())

    FakeWorker.run_hook = check
    ok(invoke(["worker", "tasks.db", "--pidfile", "w.pid"]))
    assert seen == [str(os.getpid())]
    assert not (workdir / "w.pid").exists()


def test_worker_refuses_a_pidfile_of_a_live_process(workdir: Path) -> None:
    (workdir / "w.pid").write_text(f"{os.getppid()}\n")
    result = failed(invoke(["worker", "tasks.db", "--pidfile", "w.pid"]))
    assert "still running" in result.output
    assert (workdir / "w.pid").read_text().strip() == str(os.getppid())


def test_pidfile_replaces_a_stale_file(tmp_path: Path) -> None:
    path = tmp_path / "stale.pid"
    path.write_text("999999999\n")
    with Pidfile(str(path)):
        assert path.read_text().strip() == str(os.getpid())
    assert not path.exists()


def test_pidfile_empty_option_means_no_pidfile(workdir: Path) -> None:
    ok(invoke(["worker", "tasks.db", "--pidfile="]))
    assert list(workdir.glob("*.pid")) == []


def test_worker_logfile_receives_celery_formatted_lines(workdir: Path) -> None:
    ok(invoke(["worker", "tasks.db", "-l", "info", "-f", "%n.log"]))
    logging.getLogger("liteq.worker").info("hello from the worker")
    # %n is the name part of the node name (liteq@host), as in Celery.
    text = (workdir / "liteq.log").read_text()
    assert "INFO/MainProcess] hello from the worker" in text


def test_worker_file_paths_expand_the_node_name_and_process_index(
    workdir: Path,
) -> None:
    seen: list[bool] = []
    FakeWorker.run_hook = lambda worker: seen.append((workdir / "w1.pid").exists())
    ok(
        invoke(
            ["worker", "tasks.db", "-n", "w1@box.example.com", "-f", "%n-%i.%d.log",
             "--pidfile", "%n%I-%h.pid"]
        )
    )  # fmt: skip
    logging.getLogger("liteq.worker").warning("main process line")
    assert (workdir / "w1-0.example.com.log").exists()
    assert "main process line" in (workdir / "w1-0.example.com.log").read_text()
    assert seen == [False]
    assert not (workdir / "w1-box.example.com.pid").exists()  # released at exit


def test_worker_pidfile_expands_the_process_index_to_0(workdir: Path) -> None:
    seen: list[str] = []
    FakeWorker.run_hook = lambda worker: seen.append(
        (workdir / "w1-0.pid").read_text().strip()
    )
    ok(invoke(["worker", "tasks.db", "-n", "w1@%h", "--pidfile", "%n-%i.pid"]))
    assert seen == [str(os.getpid())]


def test_worker_redirects_prints_to_the_log_while_it_runs(workdir: Path) -> None:
    def task_like(worker: FakeWorker) -> None:
        assert isinstance(sys.stdout, LoggingProxy)
        assert isinstance(sys.stderr, LoggingProxy)
        print("hello from a task")
        sys.stdout.write("partial ")
        sys.stdout.write("line\n")
        print("on stderr", file=sys.stderr)

    FakeWorker.run_hook = task_like
    ok(invoke(["worker", "tasks.db", "-f", "w.log"]))
    assert not isinstance(sys.stdout, LoggingProxy)
    assert worker_logging() is None
    text = (workdir / "w.log").read_text()
    assert "WARNING/MainProcess] hello from a task\n" in text
    assert "WARNING/MainProcess] partial line\n" in text
    assert "WARNING/MainProcess] on stderr\n" in text


def test_worker_tells_pool_processes_how_to_log(workdir: Path) -> None:
    seen: list[WorkerLogging | None] = []
    FakeWorker.run_hook = lambda worker: seen.append(worker_logging())
    (workdir / "logs").mkdir()
    ok(invoke(["worker", "tasks.db", "-n", "w1@%h", "-f", "logs/%n%I.log"]))
    assert seen == [
        WorkerLogging(
            logging.WARNING, str(workdir / "logs" / "w1%I.log"), logging.WARNING
        )
    ]
    assert (workdir / "logs" / "w1.log").exists()


def test_worker_redirect_settings_use_the_celery_names(workdir: Path) -> None:
    write_module(
        workdir,
        "quietapp.py",
        """
        from liteq import Celery

        app = Celery("quietapp", broker="sqlite:///q.db")
        app.conf.update(CELERY_REDIRECT_STDOUTS_LEVEL="error")
        """,
    )
    FakeWorker.run_hook = lambda worker: print("loud")
    ok(invoke(["worker", "-A", "quietapp", "-f", "q.log"]))
    assert "ERROR/MainProcess] loud" in (workdir / "q.log").read_text()


def test_worker_redirect_stdouts_off_leaves_stdout_alone(workdir: Path) -> None:
    write_module(
        workdir,
        "plainapp.py",
        """
        from liteq import Celery

        app = Celery("plainapp", broker="sqlite:///p.db")
        app.conf.worker_redirect_stdouts = False
        """,
    )
    seen: list[object] = []
    FakeWorker.run_hook = lambda worker: seen.append(worker_logging())
    result = ok(invoke(["worker", "-A", "plainapp", "-f", "p.log"]))
    assert seen == [WorkerLogging(None, None, logging.WARNING)]
    assert "WARNING" not in (workdir / "p.log").read_text()
    assert result.output.count("BANNER") == 1


def test_worker_rejects_an_unknown_redirect_level(workdir: Path) -> None:
    write_module(
        workdir,
        "badapp.py",
        """
        from liteq import Celery

        app = Celery("badapp", broker="sqlite:///b.db")
        app.conf.worker_redirect_stdouts_level = "LOUD"
        """,
    )
    result = failed(invoke(["worker", "-A", "badapp"]))
    assert "worker_redirect_stdouts_level" in result.output and "LOUD" in result.output
    assert FakeWorker.instances == []


def test_setup_logging_formats_task_logger_lines_with_the_task(tmp_path: Path) -> None:
    root = logging.getLogger()
    task_logger = logging.getLogger("liteq.task")
    saved = (
        list(root.handlers),
        root.level,
        list(task_logger.handlers),
        task_logger.propagate,
    )
    try:
        setup_logging(logging.INFO, logfile=str(tmp_path / "x.log"))
        logging.getLogger("liteq.task.demo").warning("inside")
        logging.getLogger("liteq.worker").info("outside")
        for handler in root.handlers + task_logger.handlers:
            handler.flush()
        lines = (tmp_path / "x.log").read_text().splitlines()
        assert lines[0].endswith("WARNING/MainProcess] ???[???]: inside")
        assert lines[1].endswith("INFO/MainProcess] outside")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        task_logger.handlers[:], task_logger.propagate = saved[2], saved[3]


@pytest.mark.parametrize(
    ("given", "level"), [("info", 20), ("WARN", 30), ("critical", 50), (15, 15)]
)
def test_parse_loglevel(given: str | int, level: int) -> None:
    assert parse_loglevel(given) == level


# -- node names -------------------------------------------------------------------------------


def test_node_name_expands_celery_placeholders() -> None:
    assert node_name("w1@%h", host="box.example.com") == "w1@box.example.com"
    assert node_name("w1@%n", host="box.example.com") == "w1@box"
    assert node_name("%d-w@x", host="box.example.com") == "example.com-w@x"
    assert node_name("w2", host="box") == "liteq@w2"
    assert node_name(None, host="box") == "liteq@box"
    assert expand_node_format("%p.pid 100%%", host="h", node="n@h") == "n@h.pid 100%"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # Celery's table, for the node george@foo.example.com.
        ("%p.log", "george@foo.example.com.log"),
        ("%h.log", "foo.example.com.log"),
        ("%n.log", "george.log"),
        ("%d.log", "example.com.log"),
        # In the main process %i is 0 and %I is empty.
        ("%n-%i.log", "george-0.log"),
        ("%n%I.log", "george.log"),
        ("100%%-%n.log", "100%-george.log"),
        ("%x%n.log", "%xgeorge.log"),
    ],
)
def test_expand_node_format_follows_celery_file_path_variables(
    template: str, expected: str
) -> None:
    node = "george@foo.example.com"
    assert expand_node_format(template, host="other.host", node=node) == expected


def test_expand_node_format_can_keep_the_process_index_for_pool_processes() -> None:
    node = "w1@box.example.com"
    kept = expand_node_format("%%n-%n-%i%I.log", node=node, index=None)
    assert kept == "%%n-w1-%i%I.log"
    assert logfile_for_process(kept, 2) == "%n-w1-2-2.log"
    assert expand_node_format("%n-%i%I.log", node=node, index=3) == "w1-3-3.log"


def test_expand_node_format_without_a_node_uses_the_host() -> None:
    assert expand_node_format("%n.%d-%h", host="box.example.com") == (
        "box.example.com-box.example.com"
    )


def test_split_list_flattens_repeated_and_comma_separated_values() -> None:
    assert split_list(["a,b", " c ", "", "d,,"]) == ["a", "b", "c", "d"]
    assert split_list(None) == []


# -- autoreload -------------------------------------------------------------------------------


def test_worker_autoreload_restarts_the_pool_when_a_python_file_changes(
    workdir: Path,
) -> None:
    module = write_module(workdir, "reloaded.py", "X = 1\n")

    def edit_and_wait(worker: FakeWorker) -> None:
        module.write_text("X = 2\n")
        wait_until(lambda: worker.restarts >= 1, timeout=10)

    FakeWorker.run_hook = edit_and_wait
    ok(invoke(["worker", "tasks.db", "--autoreload", "-l", "info"]))
    assert only_worker().restarts >= 1
