"""The ``liteq`` group: argument orders, finding the app, errors, environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import liteq
from liteq import Liteq
from liteq.cli import cli, main, normalize_argv
from liteq.cli.loader import CliState, app_path_of, find_app, split_database

from .cli_support import failed, invoke, isolated, ok, write_module


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with isolated(tmp_path, monkeypatch) as path:
        yield path


APP_MODULE = """
from liteq import Liteq

app = Liteq("{name}", broker="sqlite:///tasks.db")

@app.task
def add(x, y):
    return x + y
"""


# -- the group --------------------------------------------------------------------------


def test_help_lists_every_command(workdir: Path) -> None:
    result = ok(invoke(["--help"]))
    for name in ("worker", "status", "purge", "revoke", "result", "call"):
        assert name in result.output


def test_version_option_prints_the_package_version(workdir: Path) -> None:
    result = ok(invoke(["--version"]))
    assert liteq.__version__ in result.output


def test_every_command_module_lists_its_commands() -> None:
    from liteq.cli import COMMAND_MODULES

    assert "liteq.cli.worker" in COMMAND_MODULES
    assert set(cli.commands) >= {
        "worker",
        "status",
        "purge",
        "revoke",
        "result",
        "call",
    }


def test_normalize_argv_moves_unknown_group_options_after_the_command() -> None:
    argv = ["-B", "-A", "celery_app", "worker", "-l", "info"]
    assert normalize_argv(argv) == ["-A", "celery_app", "worker", "-B", "-l", "info"]


def test_normalize_argv_leaves_ordinary_command_lines_alone() -> None:
    argv = ["-A", "proj", "worker", "-l", "info", "-B"]
    assert normalize_argv(argv) == argv
    assert normalize_argv(["worker", "tasks.db"]) == ["worker", "tasks.db"]


def test_normalize_argv_does_not_take_an_option_value_for_the_command() -> None:
    argv = ["-A", "worker", "-l", "info", "worker"]
    assert normalize_argv(argv) == ["-A", "worker", "worker", "-l", "info"]
    assert normalize_argv(["--app=proj", "-B", "worker"]) == [
        "--app=proj",
        "worker",
        "-B",
    ]


def test_unknown_command_is_a_usage_error(workdir: Path) -> None:
    failed(invoke(["frobnicate"]), code=2)


# -- finding the app ---------------------------------------------------------------------


def test_find_app_uses_the_app_attribute(workdir: Path) -> None:
    write_module(workdir, "proj_a.py", APP_MODULE.format(name="proj_a"))
    app, path = find_app("proj_a")
    assert isinstance(app, Liteq) and path == "proj_a:app"
    assert "proj_a.add" in app.tasks


def test_find_app_falls_back_to_the_celery_attribute(workdir: Path) -> None:
    write_module(
        workdir,
        "proj_b.py",
        "from liteq import Celery\ncelery = Celery('proj_b', broker='x.db')\n",
    )
    assert find_app("proj_b")[1] == "proj_b:celery"


def test_find_app_looks_in_the_celery_submodule_of_a_package(workdir: Path) -> None:
    write_module(workdir, "proj_c/__init__.py", "")
    write_module(
        workdir,
        "proj_c/celery.py",
        "from liteq import Celery\napp = Celery('proj_c', include=['proj_c.tasks'])\n",
    )
    app, path = find_app("proj_c")
    assert path == "proj_c.celery:app" and app.main == "proj_c"


def test_find_app_finds_the_single_liteq_instance_under_any_name(workdir: Path) -> None:
    write_module(
        workdir,
        "proj_d.py",
        "from liteq import Liteq\nmy_queue = Liteq('proj_d', broker='x.db')\n",
    )
    assert find_app("proj_d")[1] == "proj_d:my_queue"


def test_find_app_rejects_a_module_with_several_apps(workdir: Path) -> None:
    write_module(
        workdir,
        "proj_e.py",
        "from liteq import Liteq\none = Liteq('a', broker='a.db')\ntwo = Liteq('b', broker='b.db')\n",
    )
    with pytest.raises(Exception, match="several apps"):
        find_app("proj_e")


def test_find_app_accepts_module_colon_attribute(workdir: Path) -> None:
    write_module(
        workdir,
        "proj_f.py",
        "from liteq import Liteq\none = Liteq('a', broker='a.db')\ntwo = Liteq('b', broker='b.db')\n",
    )
    app, path = find_app("proj_f:two")
    assert app.main == "b" and path == "proj_f:two"


def test_find_app_accepts_a_dotted_path_ending_in_the_attribute(workdir: Path) -> None:
    write_module(workdir, "proj_g/__init__.py", "")
    write_module(workdir, "proj_g/tasks.py", APP_MODULE.format(name="proj_g"))
    assert find_app("proj_g.tasks.app")[1] == "proj_g.tasks:app"


def test_find_app_reports_a_missing_module_without_a_traceback(workdir: Path) -> None:
    result = failed(invoke(["-A", "no_such_module", "status"]))
    assert "module 'no_such_module' was not found" in result.output


def test_find_app_shows_the_error_raised_inside_the_module(workdir: Path) -> None:
    write_module(
        workdir, "broken_mod.py", "import json\nraise RuntimeError('boom in module')\n"
    )
    result = invoke(["-A", "broken_mod", "status"])
    assert result.exit_code == 1
    assert "boom in module" in result.output and "broken_mod.py" in result.output


def test_find_app_rejects_an_attribute_that_is_not_an_app(workdir: Path) -> None:
    write_module(workdir, "proj_h.py", "app = 42\n")
    result = failed(invoke(["-A", "proj_h:app", "status"]))
    assert "not a Liteq" in result.output


def test_find_app_reports_a_module_without_an_app(workdir: Path) -> None:
    write_module(workdir, "plain_mod.py", "x = 1\n")
    result = failed(invoke(["-A", "plain_mod", "status"]))
    assert "defines no Liteq app" in result.output


def test_app_path_of_finds_the_module_attribute_holding_the_app(workdir: Path) -> None:
    write_module(workdir, "proj_i.py", APP_MODULE.format(name="proj_i"))
    app, _ = find_app("proj_i")
    assert app_path_of(app) == "proj_i:app"
    assert app_path_of(Liteq("loose", broker="loose.db")) is None


def test_loading_puts_the_working_directory_on_sys_path(workdir: Path) -> None:
    import sys

    sys.path[:] = [p for p in sys.path if p not in ("", str(workdir))]
    CliState(broker="tasks.db").load(create=True)
    assert sys.path[0] == str(workdir)


# -- where the database comes from ----------------------------------------------------------


def test_split_database_takes_the_first_argument_without_an_app() -> None:
    state = CliState()
    assert split_database(("tasks.db", "id1"), state, required=1) == (
        "tasks.db",
        ["id1"],
    )
    assert split_database(("id1",), state, required=1) == ("id1", [])


def test_split_database_with_an_app_takes_only_what_looks_like_a_database() -> None:
    state = CliState(app_spec="proj")
    assert split_database(("id1", "id2"), state, required=1) == (None, ["id1", "id2"])
    assert split_database(("x.db", "id1"), state, required=1) == ("x.db", ["id1"])
    assert split_database(("x.db",), state, required=1) == (None, ["x.db"])
    url = "sqlite:///other.sqlite"
    assert split_database((url, "n"), state, required=1) == (url, ["n"])


def test_missing_database_file_is_an_error_and_is_not_created(workdir: Path) -> None:
    result = failed(invoke(["status", "missing.db"]))
    assert "does not exist" in result.output
    assert not (workdir / "missing.db").exists()


def test_a_directory_is_not_a_database(workdir: Path) -> None:
    (workdir / "data").mkdir()
    result = failed(invoke(["status", "data"]))
    assert "directory" in result.output


def test_a_worker_on_a_directory_fails_at_once_and_creates_nothing(
    workdir: Path,
) -> None:
    (workdir / "data").mkdir()
    result = failed(invoke(["worker", "data", "--burst"]))
    assert "is a directory, not a database file" in result.output
    assert sorted(p.name for p in workdir.iterdir()) == ["data"]


@pytest.mark.parametrize(
    "command", [["worker", "--burst"], ["status"], ["purge", "-f"]]
)
def test_a_file_that_is_no_sqlite_database_is_refused_clearly(
    workdir: Path, command: list[str]
) -> None:
    (workdir / "notes.db").write_text("these are my notes, not a database\n")
    result = failed(invoke([command[0], "notes.db", *command[1:]]))
    assert "notes.db is not a SQLite database file" in result.output
    assert (workdir / "notes.db").read_text().startswith("these are my notes")


def test_an_empty_file_is_a_new_database(workdir: Path) -> None:
    (workdir / "empty.db").touch()
    ok(invoke(["status", "empty.db"]))


def test_no_database_and_no_app_is_a_usage_error(workdir: Path) -> None:
    result = failed(invoke(["status"]), code=2)
    assert "no database given" in result.output


def test_an_app_without_a_database_asks_for_one(workdir: Path) -> None:
    write_module(workdir, "nodb.py", "from liteq import Liteq\napp = Liteq('nodb')\n")
    result = failed(invoke(["-A", "nodb", "status"]))
    assert "no database configured" in result.output


def test_database_comes_from_liteq_database_environment_variable(workdir: Path) -> None:
    Liteq("x", broker=str(workdir / "env.db")).storage.broker.queue_stats(0)
    result = ok(invoke(["status"], env={"LITEQ_DATABASE": "env.db"}))
    assert str(workdir / "env.db") in result.output


def test_broker_option_names_the_database(workdir: Path) -> None:
    Liteq("x", broker=str(workdir / "b.db")).storage.broker.queue_stats(0)
    ok(invoke(["-b", "sqlite:///b.db", "status"]))
    ok(invoke(["--broker", "b.db", "status"]))


def test_app_from_environment_variable(workdir: Path) -> None:
    write_module(workdir, "envapp.py", APP_MODULE.format(name="envapp"))
    Liteq("x", broker=str(workdir / "tasks.db")).storage.broker.queue_stats(0)
    result = ok(invoke(["status"], env={"LITEQ_APP": "envapp"}))
    assert str(workdir / "tasks.db") in result.output


def test_config_option_loads_a_configuration_module(workdir: Path) -> None:
    write_module(workdir, "settings_mod.py", "BROKER_URL = 'sqlite:///conf.db'\n")
    write_module(
        workdir, "bare_app.py", "from liteq import Liteq\napp = Liteq('bare')\n"
    )
    Liteq("x", broker=str(workdir / "conf.db")).storage.broker.queue_stats(0)
    result = ok(invoke(["-A", "bare_app", "--config", "settings_mod", "status"]))
    assert str(workdir / "conf.db") in result.output


def test_config_option_works_without_an_app_and_loses_to_the_command_line(
    workdir: Path,
) -> None:
    write_module(workdir, "settings_two.py", "BROKER_URL = 'sqlite:///conf.db'\n")
    for name in ("conf.db", "cmd.db"):
        Liteq("x", broker=str(workdir / name)).storage.broker.queue_stats(0)
    result = ok(invoke(["--config", "settings_two", "status"]))
    assert str(workdir / "conf.db") in result.output
    result = ok(invoke(["--config", "settings_two", "status", "cmd.db"]))
    assert str(workdir / "cmd.db") in result.output


def test_result_backend_option_must_name_the_same_file(workdir: Path) -> None:
    Liteq("x", broker=str(workdir / "same.db")).storage.broker.queue_stats(0)
    ok(invoke(["--result-backend", "sqlite:///same.db", "status", "same.db"]))
    result = failed(
        invoke(["--result-backend", "sqlite:///other.db", "status", "same.db"])
    )
    assert "different file" in result.output


def test_workdir_option_changes_directory_before_loading(workdir: Path) -> None:
    sub = workdir / "sub"
    sub.mkdir()
    Liteq("x", broker=str(sub / "w.db")).storage.broker.queue_stats(0)
    result = ok(invoke(["--workdir", str(sub), "status", "w.db"]))
    assert str(sub / "w.db") in result.output


def test_a_liteq_error_is_shown_as_one_line_without_traceback(workdir: Path) -> None:
    result = failed(invoke(["call", "no/such/dir/x.db", "tasks.add"]))
    assert result.output.startswith("Error: ")
    assert "does not exist" in result.output


def test_a_network_broker_is_rejected_with_a_clear_message(workdir: Path) -> None:
    result = failed(invoke(["-b", "redis://localhost:6379/0", "status"]))
    assert "one SQLite file" in result.output


def test_main_uses_the_app_that_called_start(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = Liteq("started", broker=str(workdir / "start.db"))
    app.storage.broker.queue_stats(0)
    with pytest.raises(SystemExit) as info:
        app.start(["status"])
    assert info.value.code == 0
    assert str(workdir / "start.db") in capsys.readouterr().out


def test_main_reads_sys_argv_when_no_arguments_are_given(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["liteq", "--version"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    assert liteq.__version__ in capsys.readouterr().out
