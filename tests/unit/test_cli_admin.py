"""``liteq status``, ``purge``, ``revoke`` and ``call`` against a real database file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from liteq import Liteq, states
from liteq.cli.admin import format_age
from liteq.messages import Message
from liteq.serialization import exception_to_dict
from liteq.storage import WorkerRow

from .cli_support import failed, invoke, isolated, ok, write_module


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with isolated(tmp_path, monkeypatch) as path:
        yield path


@pytest.fixture
def producer(workdir: Path) -> Liteq:
    """An app on ``tasks.db`` in the working directory (the database exists)."""
    app = Liteq("producer", broker=str(workdir / "tasks.db"))
    app.storage.broker.queue_stats(0)
    return app


def claim_one(app: Liteq, worker_id: str = "w1", queue: str = "celery") -> str:
    claimed = app.storage.claim(worker_id, [queue], 1, app.clock.time(), 60.0)
    assert len(claimed) == 1
    return claimed[0].task_id


def store_failure(app: Liteq, task_id: str, name: str, exc: BaseException) -> None:
    row = app.make_result_row(
        task_id, states.FAILURE, exception_to_dict(exc), name=name
    )
    app.storage.results.store(row)


@pytest.mark.parametrize("command", ["status", "purge", "revoke", "result"])
def test_admin_commands_never_create_a_missing_database(
    workdir: Path, command: str
) -> None:
    args = [command, "missing.db"] + (
        ["some-id"] if command in ("revoke", "result") else []
    )
    result = failed(invoke(args))
    assert "does not exist" in result.output
    assert not (workdir / "missing.db").exists()


# -- status ---------------------------------------------------------------------------------


def test_status_shows_ready_scheduled_and_running_counts_per_queue(
    producer: Liteq,
) -> None:
    producer.send_task("tasks.a")
    producer.send_task("tasks.a")
    producer.send_task("tasks.b", countdown=3600)
    producer.send_task("tasks.c", queue="priority.high")
    claim_one(producer, queue="priority.high")
    result = ok(invoke(["status", "tasks.db"]))
    lines = result.output.splitlines()
    celery = next(line for line in lines if line.strip().startswith("celery "))
    high = next(line for line in lines if line.strip().startswith("priority.high"))
    assert celery.split()[1:] == ["2", "1", "0"]
    assert high.split()[1:] == ["0", "0", "1"]


def test_status_of_an_empty_database_says_so(producer: Liteq) -> None:
    result = ok(invoke(["status", "tasks.db"]))
    assert "(no tasks waiting or running)" in result.output
    assert "(none running)" in result.output
    assert "Recent failures:\n  (none)" in result.output


def test_status_shows_workers_with_their_heartbeat_age(producer: Liteq) -> None:
    from liteq.worker.liveness import HostIdentity, pid_starttime

    now = producer.clock.time()
    me = HostIdentity.current()
    parent = os.getppid()
    rows = [
        # A live process on this host (the test runner's parent).
        ("w-live", parent, pid_starttime(parent), me.boot_id, me.as_info(), now - 5),
        # Alive, but its heartbeat is late.
        ("w-slow", parent, pid_starttime(parent), me.boot_id, me.as_info(), now - 300),
        # Same host, but its process is gone.
        ("w-dead", parent, -1, me.boot_id, me.as_info(), now - 5),
        # Another host, silent for an hour.
        ("w-old", 4242, None, "other-boot", {"host": "elsewhere"}, now - 3600),
    ]
    for wid, pid, started, boot, info, beat in rows:
        producer.storage.register_worker(
            WorkerRow(wid, f"liteq@{wid}", pid, started, boot, ["celery", "x"], 4, info,
                      now - 7200, beat)
        )  # fmt: skip
    result = ok(invoke(["status", "tasks.db"]))
    lines = result.output.splitlines()
    assert "Workers (4):" in lines
    live = next(line for line in lines if "liteq@w-live" in line)
    assert f"pid {parent}" in live and "queues celery,x" in live
    assert "concurrency 4" in live and "up 2h" in live
    assert live.endswith("heartbeat 5s ago  up 2h")
    assert next(line for line in lines if "liteq@w-dead" in line).endswith(
        "GONE (its tasks will be recovered)"
    )
    assert "GONE" in next(line for line in lines if "liteq@w-old" in line)
    assert next(line for line in lines if "liteq@w-slow" in line).endswith("STALE")


def test_status_lists_the_last_failures_newest_first(producer: Liteq) -> None:
    store_failure(producer, "id-1", "tasks.first", KeyError("missing"))
    store_failure(producer, "id-2", "tasks.second", ValueError("bad value"))
    result = ok(invoke(["status", "tasks.db"]))
    text = result.output
    assert "tasks.second[id-2]  ValueError('bad value')" in text
    assert "tasks.first[id-1]  KeyError('missing')" in text
    assert text.index("id-2") < text.index("id-1")


def test_status_failures_option_limits_the_list(producer: Liteq) -> None:
    for i in range(4):
        store_failure(producer, f"id-{i}", "tasks.f", KeyError(i))
    result = ok(invoke(["status", "tasks.db", "--failures", "2"]))
    assert sum("tasks.f[" in line for line in result.output.splitlines()) == 2
    assert (
        "Recent failures"
        not in ok(invoke(["status", "tasks.db", "--failures", "0"])).output
    )


def test_status_uses_the_app_database(workdir: Path, producer: Liteq) -> None:
    write_module(
        workdir,
        "statusapp.py",
        "from liteq import Liteq\napp = Liteq('s', broker='tasks.db')\n",
    )
    producer.send_task("tasks.a")
    result = ok(invoke(["-A", "statusapp", "status"]))
    assert str(workdir / "tasks.db") in result.output


def test_status_rejects_extra_arguments(producer: Liteq) -> None:
    failed(invoke(["status", "tasks.db", "extra"]), code=2)


def test_format_age_uses_short_units() -> None:
    assert [format_age(s) for s in (3, 300, 7300, 200000, -1)] == [
        "3s",
        "5m",
        "2h",
        "2d",
        "0s",
    ]


# -- purge --------------------------------------------------------------------------------------


def waiting(app: Liteq) -> dict[str, int]:
    stats = app.storage.broker.queue_stats(app.clock.time())
    return {q: s["ready"] + s["scheduled"] for q, s in stats.items()}


def test_purge_asks_for_confirmation_and_keeps_tasks_when_refused(
    producer: Liteq,
) -> None:
    producer.send_task("tasks.a")
    result = failed(invoke(["purge", "tasks.db"], input="n\n"))
    assert "Delete 1 waiting task from celery?" in result.output
    assert waiting(producer) == {"celery": 1}


def test_purge_deletes_waiting_tasks_once_confirmed(producer: Liteq) -> None:
    producer.send_task("tasks.a")
    producer.send_task("tasks.a", countdown=60)
    producer.send_task("tasks.a", queue="other")
    producer.send_task("tasks.a", queue="busy")
    claim_one(producer, queue="busy")
    result = ok(invoke(["purge", "tasks.db"], input="y\n"))
    assert "Purged 3 tasks from busy, celery, other." in result.output
    assert waiting(producer) == {"busy": 0}


def test_purge_force_skips_the_question(producer: Liteq) -> None:
    producer.send_task("tasks.a")
    result = ok(invoke(["purge", "tasks.db", "-f"]))
    assert "?" not in result.output and "Purged 1 task from celery." in result.output


def test_purge_queues_option_limits_what_is_deleted(producer: Liteq) -> None:
    producer.send_task("tasks.a")
    producer.send_task("tasks.a", queue="q1")
    producer.send_task("tasks.a", queue="q2")
    ok(invoke(["purge", "tasks.db", "-f", "-Q", "q1,q2"]))
    assert waiting(producer) == {"celery": 1}


def test_purge_with_nothing_waiting_does_not_ask(producer: Liteq) -> None:
    result = ok(invoke(["purge", "tasks.db"]))
    assert "No waiting tasks" in result.output


def test_purge_with_the_app_before_the_command(workdir: Path, producer: Liteq) -> None:
    write_module(
        workdir,
        "purgeapp.py",
        "from liteq import Liteq\napp = Liteq('p', broker='tasks.db')\n",
    )
    producer.send_task("tasks.a")
    ok(invoke(["-A", "purgeapp", "purge", "-f"]))
    assert waiting(producer) == {}


# -- revoke ---------------------------------------------------------------------------------------


def test_revoke_removes_a_waiting_task_and_stores_revoked(producer: Liteq) -> None:
    res = producer.send_task("tasks.a")
    result = ok(invoke(["revoke", "tasks.db", res.id]))
    assert f"{res.id}: revoked" in result.output
    assert producer.AsyncResult(res.id).state == states.REVOKED
    assert waiting(producer) == {}


def test_revoke_of_an_unknown_id_exits_1_but_remembers_it(producer: Liteq) -> None:
    result = failed(invoke(["revoke", "tasks.db", "no-such-id"]))
    assert "unknown task id" in result.output
    assert producer.storage.is_revoked("no-such-id")


def test_revoke_many_ids_reports_each(producer: Liteq) -> None:
    a = producer.send_task("tasks.a")
    b = producer.send_task("tasks.b")
    result = ok(invoke(["revoke", "tasks.db", a.id, b.id]))
    assert f"{a.id}: revoked" in result.output and f"{b.id}: revoked" in result.output


def test_revoke_running_task_without_terminate_lets_it_finish(producer: Liteq) -> None:
    res = producer.send_task("tasks.a")
    claim_one(producer)
    result = ok(invoke(["revoke", "tasks.db", res.id]))
    assert "use --terminate" in result.output
    assert producer.storage.broker.terminate_requests("w1") == []


def test_revoke_terminate_asks_the_worker_with_the_signal(producer: Liteq) -> None:
    res = producer.send_task("tasks.a")
    claim_one(producer)
    result = ok(
        invoke(["revoke", "tasks.db", res.id, "--terminate", "--signal", "kill"])
    )
    assert "asked to terminate" in result.output
    assert producer.storage.broker.terminate_requests("w1") == [(res.id, "SIGKILL")]


def test_revoke_terminate_defaults_to_sigterm(producer: Liteq) -> None:
    res = producer.send_task("tasks.a")
    claim_one(producer)
    ok(invoke(["revoke", "tasks.db", "--terminate", res.id]))
    assert producer.storage.broker.terminate_requests("w1") == [(res.id, "SIGTERM")]


def test_revoke_signal_needs_terminate_and_a_real_signal(producer: Liteq) -> None:
    res = producer.send_task("tasks.a")
    failed(invoke(["revoke", "tasks.db", res.id, "--signal", "SIGKILL"]), code=2)
    failed(
        invoke(["revoke", "tasks.db", res.id, "--terminate", "-s", "SIGNOPE"]), code=2
    )
    ok(invoke(["revoke", "tasks.db", res.id, "--terminate", "-s", "9"]))


def test_revoke_of_a_finished_task_says_so(producer: Liteq) -> None:
    row = producer.make_result_row("done-id", states.SUCCESS, 4, name="tasks.add")
    producer.storage.results.store(row)
    result = ok(invoke(["revoke", "tasks.db", "done-id"]))
    assert "already finished (SUCCESS)" in result.output


def test_revoke_with_the_app_takes_every_argument_as_an_id(
    workdir: Path, producer: Liteq
) -> None:
    write_module(
        workdir,
        "revapp.py",
        "from liteq import Liteq\napp = Liteq('r', broker='tasks.db')\n",
    )
    a = producer.send_task("tasks.a")
    b = producer.send_task("tasks.a")
    ok(invoke(["-A", "revapp", "revoke", a.id, b.id]))
    assert waiting(producer) == {}


def test_revoke_needs_an_id(producer: Liteq) -> None:
    failed(invoke(["-b", "tasks.db", "revoke"]), code=2)


# -- call ------------------------------------------------------------------------------------------


def queued_message(app: Liteq, task_id: str) -> Message:
    claimed = app.storage.claim("reader", None, 100, app.clock.time() + 10**6, 60.0)
    found = [c for c in claimed if c.task_id == task_id]
    assert found, "task not queued"
    return Message.decode(found[0].message, found[0].content_type, app.accept)


def test_call_enqueues_by_name_and_prints_the_id(producer: Liteq) -> None:
    result = ok(
        invoke(
            [
                "call",
                "tasks.db",
                "tasks.add",
                "--args",
                "[2, 2]",
                "--kwargs",
                '{"z": 1}',
            ]
        )
    )
    task_id = result.output.strip()
    message = queued_message(producer, task_id)
    assert (message.task, message.args, message.kwargs) == (
        "tasks.add",
        (2, 2),
        {"z": 1},
    )


def test_call_options_set_queue_priority_and_countdown(producer: Liteq) -> None:
    result = ok(
        invoke(["call", "tasks.db", "tasks.add", "-a", "[1,2]", "--queue", "priority.high",
                "--priority", "9", "--countdown", "120"])
    )  # fmt: skip
    task_id = result.output.strip()
    state, name, queue, _, eta = producer.storage.broker.get_task_row(task_id) or (
        0,
        "",
        "",
        0,
        0,
    )
    assert (name, queue) == ("tasks.add", "priority.high")
    assert eta > producer.clock.time() + 100
    message = queued_message(producer, task_id)
    assert message.priority == 9


def test_call_eta_takes_an_iso_time(producer: Liteq) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=2)
    result = ok(invoke(["call", "tasks.db", "tasks.add", "--eta", when.isoformat()]))
    row = producer.storage.broker.get_task_row(result.output.strip())
    assert row is not None and abs(row[4] - when.timestamp()) < 1


def test_call_expires_accepts_seconds_or_a_time(producer: Liteq) -> None:
    ok(invoke(["call", "tasks.db", "tasks.add", "--expires", "60"]))
    ok(
        invoke(
            ["call", "tasks.db", "tasks.add", "--expires", "2030-01-01T00:00:00+00:00"]
        )
    )
    failed(invoke(["call", "tasks.db", "tasks.add", "--expires", "soon"]), code=2)


def test_call_task_id_option_uses_that_id(producer: Liteq) -> None:
    result = ok(invoke(["call", "tasks.db", "tasks.add", "--task-id", "my-id"]))
    assert result.output.strip() == "my-id"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("--args", "[1,", "not valid JSON"), ("--args", '{"a": 1}', "JSON list"),
     ("--kwargs", "[1]", "JSON object"), ("--eta", "tomorrow-ish", "ISO-8601")],
)  # fmt: skip
def test_call_rejects_bad_arguments_with_a_usage_error(
    producer: Liteq, option: str, value: str, message: str
) -> None:
    result = failed(invoke(["call", "tasks.db", "tasks.add", option, value]), code=2)
    assert message in result.output


def test_call_rejects_countdown_together_with_eta(producer: Liteq) -> None:
    result = failed(
        invoke(
            [
                "call",
                "tasks.db",
                "t",
                "--countdown",
                "1",
                "--eta",
                "2030-01-01T00:00:00",
            ]
        ),
        code=2,
    )
    assert "not both" in result.output


def test_call_creates_the_database_when_it_does_not_exist_yet(workdir: Path) -> None:
    ok(invoke(["call", "fresh.db", "tasks.add"]))
    assert (workdir / "fresh.db").exists()


def test_call_with_the_app_routes_like_the_app(workdir: Path) -> None:
    write_module(
        workdir,
        "callapp.py",
        "from liteq import Liteq\n"
        "app = Liteq('c', broker='tasks.db', task_routes={'tasks.slow': {'queue': 'slow'}})\n",
    )
    result = ok(invoke(["-A", "callapp", "call", "tasks.slow"]))
    app = Liteq("reader", broker=str(workdir / "tasks.db"))
    row = app.storage.broker.get_task_row(result.output.strip())
    assert row is not None and row[2] == "slow"


def test_call_options_read_liteq_command_environment_variables(producer: Liteq) -> None:
    result = ok(
        invoke(["call", "tasks.db", "tasks.add"], env={"LITEQ_CALL_QUEUE": "env-q"})
    )
    row = producer.storage.broker.get_task_row(result.output.strip())
    assert row is not None and row[2] == "env-q"


def test_purge_force_from_the_environment(producer: Liteq) -> None:
    producer.send_task("tasks.a")
    ok(invoke(["purge", "tasks.db"], env={"LITEQ_PURGE_FORCE": "1"}))
    assert waiting(producer) == {}


def test_call_needs_exactly_one_name(producer: Liteq) -> None:
    failed(invoke(["call", "tasks.db"]), code=2)
    failed(invoke(["call", "tasks.db", "a", "b"]), code=2)


def test_call_file_permissions_are_private(workdir: Path) -> None:
    ok(invoke(["call", "private.db", "tasks.add"]))
    assert os.stat(workdir / "private.db").st_mode & 0o077 == 0
