"""The app: calling options, send_task, routing, bulk enqueue, transactions, revoke."""

from __future__ import annotations

import sys
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest

import liteq
from liteq import Celery, Liteq, NotRegistered, current_app, states
from liteq.app import using_app
from liteq.exceptions import ConfigurationError, EncodeError, TaskRevokedError
from liteq.messages import Message
from liteq.testing import FakeClock, drain
from liteq.worker import Worker


def _message(app: Liteq, task_id: str) -> Message:
    data, content_type = app.storage.db.execute(
        "SELECT message, content_type FROM liteq_task WHERE task_id = ?", (task_id,)
    )[0]
    return Message.decode(data, content_type, None)


def _row(app: Liteq, task_id: str) -> dict[str, Any]:
    cols = ("state", "queue", "priority", "eta", "expires", "content_type")
    values = app.storage.db.execute(
        f"SELECT {', '.join(cols)} FROM liteq_task WHERE task_id = ?", (task_id,)
    )[0]
    return dict(zip(cols, values, strict=True))


def test_celery_is_an_alias_of_liteq() -> None:
    assert Celery is Liteq
    assert liteq.Celery is Liteq


def test_delay_writes_a_committed_ready_row(app: Liteq, add: Any) -> None:
    result = add.delay(2, 2)
    assert result.state == states.PENDING
    assert not result.ready()
    assert result.exists()
    other = Liteq("other", broker=app.conf.broker_url, set_as_current=False)
    try:
        assert other.storage.broker.get_task_row(result.id) is not None
    finally:
        other.close()
    message = _message(app, result.id)
    assert (message.task, message.args, message.kwargs) == ("tasks.add", (2, 2), {})
    assert message.root_id == result.id


def test_apply_async_accepts_every_celery_calling_option(
    app: Liteq, add: Any, clock: FakeClock
) -> None:
    callback = add.s(10)
    errback = add.si(0, 0)
    result = add.apply_async(
        (1, 2),
        task_id="my-id",
        countdown=30,
        expires=120,
        queue="math",
        priority=200,
        serializer="json",
        link=callback,
        link_error=errback,
        headers={"trace": "abc"},
        ignore_result=True,
        retry=True,
        retry_policy={"max_retries": 1},
        time_limit=5,
        soft_time_limit=4,
        shadow="add-shadow",
    )
    assert result.id == "my-id"
    row = _row(app, "my-id")
    assert row == {
        "state": 0,
        "queue": "math",
        "priority": 200,
        "eta": clock.time() + 30,
        "expires": clock.time() + 120,
        "content_type": "application/json",
    }
    message = _message(app, "my-id")
    assert message.headers == {"trace": "abc"}
    assert message.ignore_result is True
    assert message.timelimit == (5.0, 4.0)
    assert message.shadow == "add-shadow"
    assert message.callbacks is not None and message.callbacks[0]["task"] == "tasks.add"
    assert message.errbacks is not None and message.errbacks[0]["args"] == [0, 0]
    assert message.eta == clock.now() + timedelta(seconds=30)


def test_apply_async_clamps_priority_to_0_255(app: Liteq, add: Any) -> None:
    assert _row(app, add.apply_async((1, 1), priority=999).id)["priority"] == 255
    assert _row(app, add.apply_async((1, 1), priority=-3).id)["priority"] == 0


def test_apply_async_unknown_option_is_a_type_error(app: Liteq, add: Any) -> None:
    with pytest.raises(TypeError, match="colour"):
        add.apply_async((1, 1), colour="red")


def test_apply_async_ignores_transport_only_options(app: Liteq, add: Any) -> None:
    result = add.apply_async(
        (1, 1), exchange="x", routing_key="r", mandatory=True, delivery_mode=2
    )
    assert _row(app, result.id)["queue"] == "celery"


def test_apply_async_unserializable_argument_raises_encode_error(
    app: Liteq, add: Any
) -> None:
    with pytest.raises(EncodeError):
        add.delay(object(), 1)
    assert app.storage.broker.queue_stats(0) == {}


def test_countdown_task_is_a_scheduled_row_that_runs_only_when_due(
    app: Liteq, add: Any, worker: Worker, clock: FakeClock
) -> None:
    result = add.apply_async((1, 2), countdown=60)
    assert _row(app, result.id)["state"] == 0
    assert drain(app, worker) == 0
    assert result.state == states.PENDING
    clock.advance(59.9)
    assert drain(app, worker) == 0
    clock.advance(0.1)
    assert drain(app, worker) == 1
    assert result.get(timeout=1) == 3


def test_eta_in_app_timezone_when_enable_utc_is_off(tmp_path: Path) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    app = Liteq(
        "t",
        broker=tmp_path / "tz.db",
        timezone="Asia/Shanghai",
        enable_utc=False,
        clock=FakeClock(),
        set_as_current=False,
    )
    app.task(name="tasks.ping")(lambda: None)
    result = app.send_task("tasks.ping", eta=datetime(2024, 1, 1, 8, 0))
    eta = app.storage.broker.get_task_row(result.id)[4]  # type: ignore[index]
    shanghai = datetime(2024, 1, 1, 8, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert eta == shanghai.timestamp()
    assert app.timezone == ZoneInfo("Asia/Shanghai")
    app.close()


def test_expired_task_is_not_run_and_ends_revoked(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    ran: list[int] = []

    @app.task
    def job() -> None:
        ran.append(1)

    result = job.apply_async(expires=10)
    dated = job.apply_async(expires=clock.now() + timedelta(seconds=10))
    clock.advance(11)
    drain(app, worker)
    assert ran == []
    assert result.state == states.REVOKED
    assert dated.state == states.REVOKED
    with pytest.raises(TaskRevokedError):
        result.get(timeout=1)


@pytest.mark.usefixtures("isolated_registry")
def test_send_task_by_name_from_an_app_without_the_task(
    app: Liteq, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = Liteq("producer", broker=app.conf.broker_url, set_as_current=False)
    result = producer.send_task(
        "remote.tasks.mul", args=[6, 7], kwargs={}, queue="remote"
    )
    assert result.state == states.PENDING
    producer.close()
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "__init__.py").write_text("")
    (tmp_path / "remote" / "tasks.py").write_text(
        textwrap.dedent(
            """
            from liteq import shared_task

            @shared_task(name="remote.tasks.mul")
            def mul(x, y):
                return x * y
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        drain(app, Worker(app, queues=["remote"], autoimport=True, pool="solo"))
        assert result.get(timeout=1) == 42
    finally:
        sys.modules.pop("remote.tasks", None)
        sys.modules.pop("remote", None)


def test_send_task_with_unknown_name_ends_failure_not_registered(
    app: Liteq, worker: Worker
) -> None:
    result = app.send_task("nobody.knows.this")
    drain(app, worker, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert isinstance(result.result, NotRegistered)
    assert "nobody.knows.this" in str(result.result)


def test_resolve_task_autoimport_runs_only_registered_tasks(
    app: Liteq, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plainmod.py").write_text("def helper():\n    return 'not a task'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(NotRegistered):
            app.resolve_task("plainmod.helper", autoimport=True)
        assert "plainmod" in sys.modules
        with pytest.raises(NotRegistered, match="importing module"):
            app.resolve_task("no_such_pkg_xyz.func", autoimport=True)
        with pytest.raises(NotRegistered):
            app.resolve_task("os.system", autoimport=False)
    finally:
        sys.modules.pop("plainmod", None)


def test_task_routes_pick_queue_by_name_and_glob(tmp_path: Path) -> None:
    app = Liteq(
        "t",
        broker=tmp_path / "r.db",
        task_routes={
            "tasks.add": {"queue": "math", "priority": 5},
            "reports.*": "reports",
        },
        set_as_current=False,
    )
    app.task(name="tasks.add")(lambda x, y: x + y)
    assert (
        app.storage.broker.get_task_row(app.send_task("tasks.add", (1, 1)).id)[2]
        == "math"
    )
    assert (
        app.storage.broker.get_task_row(app.send_task("reports.daily").id)[2]
        == "reports"
    )
    assert app.storage.broker.get_task_row(app.send_task("other.x").id)[2] == "celery"
    app.close()


def test_task_routes_function_router_is_called(tmp_path: Path) -> None:
    def router(
        name: str, args: Any, kwargs: Any, options: Any, task: Any = None
    ) -> Any:
        return {"queue": "fn"} if name.startswith("fn.") else None

    app = Liteq(
        "t", broker=tmp_path / "r.db", task_routes=[router], set_as_current=False
    )
    assert app.storage.broker.get_task_row(app.send_task("fn.x").id)[2] == "fn"
    app.close()


def test_task_annotations_set_task_options(tmp_path: Path) -> None:
    app = Liteq(
        "t",
        broker=tmp_path / "a.db",
        task_annotations={"tasks.add": {"rate_limit": "5/s"}, "*": {"max_retries": 9}},
        set_as_current=False,
    )
    add = app.task(name="tasks.add")(lambda x, y: x + y)
    assert add.rate_limit == "5/s"
    assert add.max_retries == 9


class _SlowTasks:
    """A ``task_annotations`` object, as Celery's configuration guide shows one."""

    def annotate(self, task: Any) -> dict[str, Any] | None:
        if task.name.startswith("tasks."):
            return {"rate_limit": "10/s"}
        return None


@pytest.mark.usefixtures("isolated_registry")
def test_task_annotations_take_objects_paths_and_lists(tmp_path: Path) -> None:
    app = Liteq(
        "t",
        broker=tmp_path / "a.db",
        task_annotations=[
            _SlowTasks(),
            {"tasks.mul": {"rate_limit": "1/m"}},  # later entries win
            "tests.unit.test_app:_SlowTasks",  # a class: made, then used
        ],
        set_as_current=False,
    )
    add = app.task(name="tasks.add")(lambda x, y: x + y)
    mul = app.task(name="tasks.mul")(lambda x, y: x * y)
    other = app.task(name="other.job")(lambda: None)
    assert add.rate_limit == "10/s"
    assert mul.rate_limit == "10/s"
    assert other.rate_limit is None


@pytest.mark.usefixtures("isolated_registry")
@pytest.mark.parametrize("entry", [42, "tests.unit.test_app:NoSuchAnnotation"])
def test_task_annotations_of_another_kind_are_a_configuration_error(
    tmp_path: Path, entry: Any
) -> None:
    app = Liteq("t", broker=tmp_path / "a.db", set_as_current=False)
    app.conf.task_annotations = entry
    with pytest.raises(ConfigurationError, match="task_annotations"):
        app.task(name="tasks.add")(lambda x, y: x + y)


@pytest.mark.usefixtures("isolated_registry")
def test_autodiscover_tasks_calls_a_callable_only_when_modules_are_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "late_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("FOUND = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Liteq("t", broker=tmp_path / "a.db", set_as_current=False)
    installed: list[str] = []
    app.autodiscover_tasks(lambda: installed)
    installed.append("late_pkg")  # configured after the call, as Django apps are
    assert app.import_modules() == ["late_pkg.tasks"]
    assert sys.modules["late_pkg.tasks"].FOUND


def test_enqueue_many_is_one_transaction_with_one_commit(
    app: Liteq, add: Any, worker: Worker
) -> None:
    commits: list[int] = []
    app.storage.db.add_commit_hook(lambda: commits.append(1))
    results = app.enqueue_many(add, [(n, n) for n in range(200)], queue="celery")
    assert len(commits) == 1
    assert len(results) == 200
    with_kwargs = app.enqueue_many(
        "tasks.add", [((1,), {"y": 2})], kwargs=True, countdown=0
    )
    drain(app, worker)
    assert [r.get(timeout=1) for r in results[:3]] == [0, 2, 4]
    assert with_kwargs[0].get(timeout=1) == 3


def test_transaction_commits_user_rows_and_tasks_together(app: Liteq, add: Any) -> None:
    class Order(peewee.Model):
        total = peewee.FloatField()

        class Meta:
            database = app.database
            table_name = "orders"

    app.database.create_tables([Order])
    with app.transaction():
        order = Order.create(total=9.5)
        result = add.delay(order.id, 1)
    assert Order.select().count() == 1
    assert app.storage.broker.get_task_row(result.id) is not None


def test_transaction_rolled_back_leaves_neither_user_row_nor_task(
    app: Liteq, add: Any
) -> None:
    class Order(peewee.Model):
        total = peewee.FloatField()

        class Meta:
            database = app.database
            table_name = "orders"

    app.database.create_tables([Order])
    with pytest.raises(RuntimeError), app.transaction():
        Order.create(total=1.0)
        result = add.delay(1, 1)
        add.apply_async((2, 2), countdown=10)
        app.enqueue_many(add, [(3, 3)])
        raise RuntimeError("payment declined")
    assert Order.select().count() == 0
    assert app.storage.broker.get_task_row(result.id) is None
    assert app.storage.broker.queue_stats(0) == {}


def test_transaction_with_plain_sql_and_nesting(app: Liteq, add: Any) -> None:
    conn = app.storage.db.connection()
    conn.execute("CREATE TABLE audit(note TEXT)")
    with app.transaction():
        conn.execute("INSERT INTO audit VALUES ('outer')")
        with pytest.raises(ValueError), app.transaction():
            conn.execute("INSERT INTO audit VALUES ('inner')")
            add.delay(1, 1)
            raise ValueError("inner fails")
        add.delay(2, 2)
    assert conn.execute("SELECT note FROM audit").fetchall() == [("outer",)]
    assert app.storage.broker.queue_stats(0)["celery"]["ready"] == 1


def test_transaction_wakes_waiters_only_after_commit(app: Liteq, add: Any) -> None:
    before = app.waker.generation
    with app.transaction():
        add.delay(1, 1)
        assert app.waker.generation == before
    assert app.waker.generation > before


def test_control_revoke_of_a_queued_task_before_any_worker_runs(
    app: Liteq, add: Any, worker: Worker
) -> None:
    result = add.delay(1, 1)
    assert app.control.revoke(result.id) == {result.id: "revoked"}
    assert result.state == states.REVOKED
    drain(app, worker)
    assert result.state == states.REVOKED


def test_control_revoke_before_publish_stops_the_task(
    app: Liteq, add: Any, worker: Worker
) -> None:
    assert app.control.revoke("future-id") == {"future-id": "remembered"}
    result = add.apply_async((1, 1), task_id="future-id")
    drain(app, worker)
    assert result.state == states.REVOKED


def test_revokes_survive_a_new_app_on_the_same_file(
    app: Liteq, add: Any, clock: FakeClock
) -> None:
    result = add.apply_async((1, 1), countdown=5)
    result.revoke()
    restarted = Liteq(
        "t", broker=app.conf.broker_url, clock=clock, set_as_current=False
    )
    restarted.task(name="tasks.add")(lambda x, y: x + y)
    clock.advance(5)
    drain(restarted, Worker(restarted, pool="solo"))
    assert restarted.AsyncResult(result.id).state == states.REVOKED
    restarted.close()


def test_control_purge_deletes_waiting_tasks(app: Liteq, add: Any) -> None:
    add.delay(1, 1)
    add.apply_async((1, 1), countdown=100)
    assert app.control.purge() == 2
    assert app.control.discard_all() == 0


def test_current_app_is_the_last_app_created(app: Liteq, tmp_path: Path) -> None:
    assert current_app() is app
    other = Liteq("o", broker=tmp_path / "o.db", set_as_current=False)
    assert current_app() is app
    with using_app(other):
        assert current_app() is other
    assert current_app() is app


def test_current_app_and_current_task_are_proxies_as_in_celery(
    app: Liteq, tmp_path: Path
) -> None:
    from liteq import current_task
    from liteq.testing import drain

    assert isinstance(current_app, Liteq) and current_app == app
    assert current_app.conf is app.conf
    assert repr(current_app) == repr(app)
    other = Liteq("o", broker=tmp_path / "o.db", set_as_current=False)
    with using_app(other):
        assert current_app.main == "o"  # looked up at each use
    assert not current_task  # no task runs in this thread

    @app.task
    def who() -> tuple[str, str]:
        current_task.update_state(state="PROGRESS", meta={"step": 1})
        return current_task.name, current_task.request.id

    result = who.delay()
    drain(app)
    assert result.get(timeout=0) == [who.name, result.id]
    other.close()


def test_import_modules_imports_include_and_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "incpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("")
    (pkg / "b.py").write_text("")
    (pkg / "tasks.py").write_text("")
    (tmp_path / "notasks").mkdir()
    (tmp_path / "notasks" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Liteq(
        "t",
        broker=tmp_path / "i.db",
        include=["incpkg.a"],
        CELERY_IMPORTS=("incpkg.b",),
        set_as_current=False,
    )
    app.autodiscover_tasks(["incpkg", "notasks"])
    try:
        names = app.import_modules()
        assert set(names) == {"incpkg.a", "incpkg.b", "incpkg.tasks"}
        assert "incpkg.tasks" in sys.modules
        app.autodiscover_tasks(["missingpkg_xyz"])
        with pytest.raises(ImportError):
            app.import_modules()
    finally:
        for name in [m for m in sys.modules if m.startswith(("incpkg", "notasks"))]:
            del sys.modules[name]


def test_app_cannot_be_pickled(app: Liteq) -> None:
    import pickle

    with pytest.raises(TypeError, match="re-import"):
        pickle.dumps(app)


def test_app_repr_and_now_use_the_clock(app: Liteq, clock: FakeClock) -> None:
    assert repr(app) == "<Liteq tests>"
    assert app.now() == clock.now()


def test_always_eager_runs_tasks_inline(app: Liteq, add: Any) -> None:
    app.conf.task_always_eager = True
    result = add.delay(2, 3)
    assert result.get() == 5
    assert result.successful()
    assert app.storage.broker.queue_stats(0) == {}


def test_always_eager_with_propagation_raises_the_task_error(app: Liteq) -> None:
    @app.task
    def boom() -> None:
        raise ValueError("eager")

    app.conf.update(CELERY_ALWAYS_EAGER=True, CELERY_EAGER_PROPAGATES_EXCEPTIONS=True)
    with pytest.raises(ValueError, match="eager"):
        boom.delay()
    app.conf.task_eager_propagates = False
    result = boom.delay()
    assert result.failed()
    assert isinstance(result.result, ValueError)


def test_store_eager_result_writes_the_result(app: Liteq, add: Any) -> None:
    app.conf.task_store_eager_result = True
    result = add.apply((4, 4))
    assert app.AsyncResult(result.id).get(timeout=1) == 8


def test_apply_round_trips_arguments_through_the_serializer(
    app: Liteq, add: Any
) -> None:
    with pytest.raises(EncodeError):
        add.apply((object(), 1))


def test_start_hands_argv_to_the_command_line(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    seen: list[Any] = []
    fake = types.ModuleType("liteq.cli")
    fake.main = lambda argv=None, app=None: seen.append((argv, app))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "liteq.cli", fake)
    app.start(["worker", "-l", "info"])
    app.worker_main(["--burst"])
    assert seen == [(["worker", "-l", "info"], app), (["worker", "--burst"], app)]


SEED_TASKS = """
from liteq import Celery

broker = 'sqlite:///tasks.db'
backend = 'sqlite:///tasks.db'

app = Celery('tasks', broker=broker, backend=backend)

@app.task
def add(x, y):
    return x + y
"""

SEED_CLIENT = """
from tasks import add
r = add.delay(2, 2)
r = add.delay(3, 3)
print(r.ready())
print(r.result)
print(r.get())
"""

#: Runs the client while a worker thread drains the queue in the same process.
SEED_HARNESS = """
import runpy, sys, threading
sys.path.insert(0, ".")
import tasks
from liteq.testing import drain

stop = threading.Event()

def work():
    while not stop.is_set():
        drain(tasks.app)
        tasks.app.waker.wait(tasks.app.waker.generation, 0.05)

threading.Thread(target=work, daemon=True).start()
runpy.run_path("client.py", run_name="__main__")
stop.set()
"""


@pytest.mark.slow
def test_seed_document_program_runs_in_process(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "tasks.py").write_text(SEED_TASKS)
    (tmp_path / "client.py").write_text(SEED_CLIENT)
    (tmp_path / "harness.py").write_text(SEED_HARNESS)
    out = subprocess.run(
        [sys.executable, "harness.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ready, result, value = out.stdout.split()
    assert ready in ("True", "False")
    assert result in ("None", "6")
    assert value == "6"
    assert (tmp_path / "tasks.db").exists()


def test_user_closing_and_reopening_the_database_keeps_publishing(
    app: Liteq, add: Any
) -> None:
    add.delay(1, 1)
    # A web app's per-request hooks: connect at the start, close at the end.
    app.database.close()
    add.delay(2, 2)
    app.database.close()
    app.database.connect(reuse_if_open=True)
    add.delay(3, 3)
    app.database.close()
    assert app.storage.broker.queue_stats(0)["celery"]["ready"] == 3


def test_user_error_inside_a_transaction_propagates_unchanged(
    app: Liteq, add: Any
) -> None:
    with pytest.raises(peewee.OperationalError), app.transaction():
        add.delay(1, 1)
        app.database.execute_sql("SELECT * FROM no_such_table")
    assert app.storage.broker.queue_stats(0) == {}


def test_link_and_link_error_run_after_the_task(
    app: Liteq, add: Any, worker: Worker
) -> None:
    seen: list[Any] = []

    @app.task
    def record(value: Any) -> None:
        seen.append(value)

    @app.task
    def on_error(request: Any, exc: BaseException, traceback: str) -> None:
        seen.append(("error", type(exc).__name__))

    @app.task
    def boom() -> None:
        raise KeyError("x")

    add.apply_async((1, 2), link=record.s())
    boom.apply_async(link_error=on_error.s())
    drain(app, worker, raise_on_failure=False)
    assert sorted(seen, key=repr) == [("error", "KeyError"), 3]


def test_unique_key_duplicate_returns_the_result_of_the_queued_task(
    app: Liteq, add: Any, worker: Worker
) -> None:
    first = add.apply_async((1, 1), unique_key="nightly-report")
    again = add.apply_async((2, 2), unique_key="nightly-report")
    assert again.id == first.id
    assert again.exists()
    drain(app, worker)
    assert again.get(timeout=1) == 2
    # Once the task ran, the key is free again.
    later = add.apply_async((3, 3), unique_key="nightly-report")
    assert later.id != first.id


def test_accepted_content_types_and_result_expiry_follow_settings_changed_at_runtime(
    app: Liteq,
) -> None:
    assert app.accept == frozenset({"application/json"})
    assert app.result_accept == frozenset({"application/json"})
    assert app.result_expires_seconds() == 86400
    app.conf.accept_content = ["json", "pickle"]
    assert app.accept == frozenset(
        {"application/json", "application/x-python-serialize"}
    )
    assert app.result_accept == app.accept
    app.conf.result_accept_content = ["msgpack"]
    assert app.result_accept == frozenset({"application/x-msgpack"})
    app.conf.CELERY_TASK_RESULT_EXPIRES = 60
    assert app.result_expires_seconds() == 60
    app.conf.result_expires = None
    assert app.result_expires_seconds() is None
    changed = app.conf
    app.conf = type(changed)()  # a new Settings object starts over
    try:
        assert app.accept == frozenset({"application/json"})
        assert app.result_expires_seconds() == 86400
    finally:
        app.conf = changed


def test_app_timezone_is_the_machines_when_enable_utc_is_off_and_none_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zoneinfo import ZoneInfo

    from liteq.timeutils import UTC, local_timezone

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    local_timezone.cache_clear()
    try:
        app = Liteq("tz", broker=tmp_path / "a.db", set_as_current=False)
        assert app.timezone is UTC  # enable_utc on: UTC, as in Celery
        app.conf.enable_utc = False
        assert app.timezone == ZoneInfo("Asia/Tokyo")  # the machine's zone
        app.conf.timezone = "Europe/Berlin"
        assert app.timezone == ZoneInfo("Europe/Berlin")  # the setting wins
    finally:
        local_timezone.cache_clear()
