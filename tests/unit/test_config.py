"""Configuration: new and old key names, config objects, URLs, unknown keys."""

from __future__ import annotations

import os
import sys
import textwrap
import warnings
from datetime import timedelta
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.config import (
    DatabaseURL,
    Settings,
    UnknownSettingWarning,
    canonical_key,
    closest_key,
    parse_database_url,
    resolve_database,
)
from liteq.exceptions import ConfigurationError


@pytest.fixture
def config_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write ``proj_<n>/config.py`` with the given body and return its module path."""
    counter = iter(range(1000))

    def write(body: str) -> str:
        package = f"liteq_test_proj_{os.getpid()}_{next(counter)}"
        pkg_dir = tmp_path / package
        pkg_dir.mkdir()
        (pkg_dir / "__init__.py").write_text("")
        (pkg_dir / "config.py").write_text(textwrap.dedent(body))
        monkeypatch.syspath_prepend(str(tmp_path))
        return f"{package}.config"

    yield write
    for name in [m for m in sys.modules if m.startswith("liteq_test_proj_")]:
        del sys.modules[name]


def test_settings_read_old_name_returns_new_setting() -> None:
    conf = Settings({"timezone": "Asia/Shanghai"})
    assert conf.CELERY_TIMEZONE == "Asia/Shanghai"
    assert conf["CELERY_TIMEZONE"] == "Asia/Shanghai"
    assert conf.get("CELERY_TIMEZONE") == "Asia/Shanghai"


def test_settings_write_old_name_sets_new_setting() -> None:
    conf = Settings()
    conf.CELERY_TASK_SERIALIZER = "pickle"
    conf["CELERYBEAT_SCHEDULE"] = {"a": {}}
    conf.update(CELERY_ACCEPT_CONTENT=["pickle"], BROKER_URL="x.db")
    assert conf.task_serializer == "pickle"
    assert conf.beat_schedule == {"a": {}}
    assert conf.accept_content == ["pickle"]
    assert conf.broker_url == "x.db"
    assert conf.changes() == {
        "task_serializer": "pickle",
        "beat_schedule": {"a": {}},
        "accept_content": ["pickle"],
        "broker_url": "x.db",
    }


def test_settings_unset_key_returns_celery_default() -> None:
    conf = Settings()
    assert conf.task_default_queue == "celery"
    assert conf.result_expires == timedelta(days=1)
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.CELERY_DEFAULT_QUEUE == "celery"
    assert "task_acks_late" in conf
    assert "CELERY_ACKS_LATE" in conf
    assert not conf.is_set("task_acks_late")


def test_settings_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError):
        Settings().no_such_thing  # noqa: B018


def test_settings_unknown_setting_warns_with_closest_key() -> None:
    conf = Settings()
    with pytest.warns(UnknownSettingWarning, match="'task_serializer'"):
        conf.task_serialiser = "json"
    with pytest.warns(UnknownSettingWarning, match="'task_serializer'"):
        conf.update(CELERY_TASK_SERIALISER="json")
    with pytest.warns(UnknownSettingWarning, match="result_expires"):
        Liteq("t", result_expire=10, set_as_current=False)


def test_settings_unknown_name_in_update_warns_at_the_callers_line() -> None:
    conf = Settings()
    with pytest.warns(UnknownSettingWarning) as caught:
        conf.update(CELERY_TASK_SERIALISER="json")
    assert caught[0].filename == __file__


def test_settings_one_setting_under_two_names_with_different_values_is_refused() -> (
    None
):
    class Mixed:
        CELERY_TASK_SERIALIZER = "pickle"
        task_serializer = "json"

    conf = Settings()
    with pytest.raises(ConfigurationError, match="'task_serializer' is given twice"):
        conf.load(Mixed)
    with pytest.raises(ConfigurationError, match="CELERYD_CONCURRENCY"):
        conf.update({"worker_concurrency": 2, "CELERYD_CONCURRENCY": 4})
    assert not conf.is_set("task_serializer")  # nothing of a refused load is kept
    # Mixed names without a conflict are taken (Celery refuses any mix).
    conf.update({"broker_url": "sqlite:///x.db", "CELERY_TASK_SERIALIZER": "json"})
    conf.load({"task_serializer": "json", "CELERY_TASK_SERIALIZER": "json"})
    assert conf.task_serializer == "json"


def test_settings_user_values_without_setting_prefix_do_not_warn() -> None:
    conf = Settings()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conf.update(MY_API_KEY="k", something_else=1)
    assert conf["MY_API_KEY"] == "k"


def test_canonical_key_maps_old_new_and_namespaced_names() -> None:
    assert canonical_key("task_acks_late") == "task_acks_late"
    assert canonical_key("CELERY_ACKS_LATE") == "task_acks_late"
    assert canonical_key("CELERYD_CONCURRENCY") == "worker_concurrency"
    assert canonical_key("TIMEZONE") == "timezone"
    assert canonical_key("CELERY_BROKER_URL", namespace="CELERY") == "broker_url"
    assert canonical_key("CELERY_TIMEZONE", namespace="CELERY") == "timezone"
    assert canonical_key("nonsense") is None


def test_closest_key_suggests_a_known_setting() -> None:
    assert closest_key("task_serialzer") == "task_serializer"
    assert closest_key("CELERY_TIMEZON") == "timezone"
    assert closest_key("zzzzzzzz") is None


def test_config_from_object_loads_module_path_with_old_names(config_module) -> None:
    path = config_module(
        """
        from __future__ import absolute_import
        from datetime import timedelta
        from liteq.schedules import crontab

        BROKER_URL = 'sqlite:///seed.db'
        CELERY_RESULT_BACKEND = 'sqlite:///seed.db'
        CELERY_TIMEZONE = 'Asia/Shanghai'
        CELERY_IMPORTS = ('proj.task1', 'proj.task2')
        CELERYBEAT_SCHEDULE = {
            'add-every-30-seconds': {
                'task': 'proj.tasks.add',
                'schedule': timedelta(seconds=30),
                'args': (16, 16),
            },
            'every-monday': {'task': 'proj.tasks.add', 'schedule': crontab(minute=0)},
        }
        """
    )
    app = Liteq("proj", set_as_current=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.config_from_object(path)
    assert app.conf.timezone == "Asia/Shanghai"
    assert app.conf.CELERY_TIMEZONE == "Asia/Shanghai"
    assert app.conf.imports == ("proj.task1", "proj.task2")
    assert app.conf.broker_url == "sqlite:///seed.db"
    schedule = app.conf.beat_schedule["add-every-30-seconds"]
    assert schedule["schedule"] == timedelta(seconds=30)
    assert "timedelta" not in app.conf.changes()
    assert "crontab" not in app.conf.changes()


def test_config_from_object_accepts_module_class_and_dict(config_module) -> None:
    import importlib

    module = importlib.import_module(config_module("task_acks_late = True\n"))

    class Config:
        task_default_queue = "from-class"
        CELERY_TIMEZONE = "Europe/London"

    app = Liteq("t", set_as_current=False)
    app.config_from_object(module)
    app.config_from_object(Config)
    app.config_from_object({"result_expires": 60})
    assert app.conf.task_acks_late is True
    assert app.conf.task_default_queue == "from-class"
    assert app.conf.timezone == "Europe/London"
    assert app.conf.result_expires == 60
    assert app.result_expires_seconds() == 60.0


def test_config_from_object_namespace_reads_only_prefixed_keys() -> None:
    settings = {
        "CELERY_BROKER_URL": "sqlite:///ns.db",
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_TIMEZONE": "UTC",
        "DEBUG": True,
        "task_default_queue": "ignored",
    }
    app = Liteq("t", set_as_current=False)
    app.config_from_object(settings, namespace="CELERY")
    assert app.conf.broker_url == "sqlite:///ns.db"
    assert app.conf.task_acks_late is True
    assert app.conf.timezone == "UTC"
    assert app.conf.task_default_queue == "celery"
    assert not app.conf.is_set("DEBUG")


def test_config_from_object_missing_module_raises_unless_silent() -> None:
    app = Liteq("t", set_as_current=False)
    with pytest.raises(ImportError):
        app.config_from_object("no_such_module_for_liteq_tests.config")
    app.config_from_object("no_such_module_for_liteq_tests.config", silent=True)


def test_config_from_object_network_broker_fails_with_a_hint(config_module) -> None:
    path = config_module("BROKER_URL = 'redis://127.0.0.1:6379/6'\n")
    app = Liteq("proj", set_as_current=False)
    with pytest.raises(ConfigurationError, match="sqlite:///tasks.db"):
        app.config_from_object(path)


def test_config_from_envvar_reads_module_named_by_variable(
    config_module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "LITEQ_TEST_CONFIG", config_module("task_track_started = True\n")
    )
    app = Liteq("t", set_as_current=False)
    app.config_from_envvar("LITEQ_TEST_CONFIG")
    assert app.conf.task_track_started is True
    monkeypatch.delenv("LITEQ_TEST_CONFIG")
    with pytest.raises(ConfigurationError):
        app.config_from_envvar("LITEQ_TEST_CONFIG")


def test_liteq_constructor_settings_accept_old_and_new_names(tmp_path: Path) -> None:
    app = Liteq(
        "t",
        broker=tmp_path / "a.db",
        task_serializer="pickle",
        CELERY_ACCEPT_CONTENT=["pickle", "json"],
        set_as_current=False,
    )
    assert app.conf.task_serializer == "pickle"
    assert app.conf.accept_content == ["pickle", "json"]
    assert app.accept == frozenset(
        {"application/x-python-serialize", "application/json"}
    )


def test_parse_database_url_relative_path_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = parse_database_url("sqlite:///rel.db")
    assert url == DatabaseURL(path="rel.db", raw="sqlite:///rel.db")
    app = Liteq("t", broker="sqlite:///rel.db", set_as_current=False)
    try:
        app.send_task("tasks.add", (2, 2))
        assert app.storage.path == str(tmp_path / "rel.db")
        assert (tmp_path / "rel.db").exists()
    finally:
        app.close()


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("sqlite:////var/lib/app/tasks.db", "/var/lib/app/tasks.db"),
        ("db+sqlite:///results.db", "results.db"),
        ("sqlite:///tasks.db?timeout=3", "tasks.db"),
        ("tasks.db", "tasks.db"),
        ("/abs/tasks.db", "/abs/tasks.db"),
        (Path("some/dir/tasks.db"), "some/dir/tasks.db"),
    ],
)
def test_parse_database_url_accepts_sqlite_forms(value: object, path: str) -> None:
    assert parse_database_url(value).path == path


@pytest.mark.parametrize(
    "value",
    [
        "redis://127.0.0.1:6379/5",
        "amqp://guest@localhost//",
        "pyamqp://",
        "rpc://",
        "rpc",
        "amqp",
        "db+postgresql://u@h/db",
        "memcache://127.0.0.1:11211/",
    ],
)
def test_parse_database_url_network_url_explains_how_to_use_a_file(
    value: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_database_url(value)
    message = str(info.value)
    assert "sqlite:///tasks.db" in message
    assert "one SQLite file" in message


@pytest.mark.parametrize("value", ["sqlite://", "sqlite:///:memory:", ":memory:", ""])
def test_parse_database_url_in_memory_or_empty_is_an_error(value: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_database_url(value)


def test_liteq_with_redis_broker_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="redis://localhost"):
        Liteq("t", broker="redis://localhost:6379/0", set_as_current=False)
    with pytest.raises(ConfigurationError, match="rpc"):
        Liteq("t", broker="sqlite:///x.db", backend="rpc://", set_as_current=False)


def test_resolve_database_backend_on_another_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="different file") as info:
        resolve_database("sqlite:///a.db", "sqlite:///b.db")
    assert "'sqlite:///b.db'" in str(info.value)
    with pytest.raises(ConfigurationError, match="different file"):
        Liteq("t", broker="a.db", backend="b.db", set_as_current=False)


def test_resolve_database_same_file_spelled_twice_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = resolve_database("sqlite:///a.db", f"db+sqlite:///{tmp_path}/a.db")
    assert url.path == "a.db"
    assert resolve_database(None, "b.db").path == "b.db"


def test_storage_without_any_database_setting_explains_what_to_set() -> None:
    app = Liteq("t", set_as_current=False)
    with pytest.raises(ConfigurationError, match="broker='sqlite:///tasks.db'"):
        app.storage  # noqa: B018


def test_config_from_object_moving_the_broker_reopens_storage(tmp_path: Path) -> None:
    app = Liteq("t", broker=tmp_path / "one.db", set_as_current=False)
    first = app.storage
    app.config_from_object({"broker_url": str(tmp_path / "two.db")})
    try:
        assert app.storage is not first
        assert app.storage.path == str(tmp_path / "two.db")
    finally:
        app.close()
        first.close()


def test_settings_table_lists_every_known_setting_with_its_value() -> None:
    conf = Settings({"CELERY_TIMEZONE": "UTC"})
    table = conf.table()
    assert table["timezone"] == "UTC"
    assert table["task_default_queue"] == "celery"
    assert "CELERY_TIMEZONE" not in table
