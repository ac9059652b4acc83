"""``liteq result``: state, value, traceback, progress, groups and workflows."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.cli.result import ProgressView, pretty, progress_of
from liteq.serialization import exception_to_dict
from liteq.storage import GroupRow

from .cli_support import failed, invoke, isolated, ok


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with isolated(tmp_path, monkeypatch) as path:
        yield path


@pytest.fixture
def producer(workdir: Path) -> Liteq:
    app = Liteq("producer", broker=str(workdir / "tasks.db"))
    app.storage.broker.queue_stats(0)
    return app


def store(
    app: Liteq,
    task_id: str,
    state: str,
    value: Any,
    name: str = "tasks.job",
    event: bool = False,
    **extra: Any,
) -> None:
    if state in (states.FAILURE, states.REVOKED) and isinstance(value, BaseException):
        value = exception_to_dict(value)
    row = app.make_result_row(task_id, state, value, name=name, **extra)
    app.storage.results.store(row, event=event)


def test_result_shows_the_state_and_the_value(producer: Liteq) -> None:
    store(producer, "t1", states.SUCCESS, {"sum": 4})
    result = ok(invoke(["result", "tasks.db", "t1"]))
    assert "Task tasks.job[t1]: SUCCESS" in result.output
    assert 'Result: {"sum": 4}' in result.output


def test_result_of_a_failure_exits_1_and_shows_the_traceback_on_request(
    producer: Liteq,
) -> None:
    row = producer.make_result_row(
        "t2",
        states.FAILURE,
        exception_to_dict(KeyError("k")),
        name="tasks.boom",
        traceback="Traceback (most recent call last):\n  File \"tasks.py\"\nKeyError: 'k'\n",
    )
    producer.storage.results.store(row)
    plain = failed(invoke(["result", "tasks.db", "t2"]))
    assert "FAILURE" in plain.output and "Result: KeyError('k')" in plain.output
    result = invoke(["result", "tasks.db", "t2", "--traceback"])
    assert result.exit_code == 1
    assert "KeyError: 'k'" in result.output and 'File "tasks.py"' in result.output


def test_result_of_a_revoked_task_exits_1(producer: Liteq) -> None:
    res = producer.send_task("tasks.a")
    producer.control.revoke(res.id)
    result = failed(invoke(["result", "tasks.db", res.id]))
    assert "REVOKED" in result.output


def test_result_of_a_queued_task_is_pending(producer: Liteq) -> None:
    res = producer.send_task("tasks.a")
    result = ok(invoke(["result", "tasks.db", res.id]))
    assert f"[{res.id}]: PENDING" in result.output


def test_result_of_an_unknown_id_is_an_error(producer: Liteq) -> None:
    result = failed(invoke(["result", "tasks.db", "nope"]))
    assert "unknown task id 'nope'" in result.output


def test_result_with_the_app_takes_the_single_argument_as_the_id(
    workdir: Path, producer: Liteq
) -> None:
    (workdir / "resapp.py").write_text(
        "from liteq import Liteq\napp = Liteq('r', broker='tasks.db')\n"
    )
    store(producer, "t3", states.SUCCESS, 7)
    result = ok(invoke(["-A", "resapp", "result", "t3"]))
    assert "Result: 7" in result.output


def test_result_follow_replays_progress_then_shows_the_final_state(
    producer: Liteq,
) -> None:
    for i in (1, 2, 4):
        store(producer, "t4", "PROGRESS", {"current": i, "total": 4}, event=True)
    store(producer, "t4", states.SUCCESS, "done")
    result = ok(invoke(["result", "tasks.db", "t4", "--follow"]))
    lines = result.output.splitlines()
    assert "tasks.job: PROGRESS 1/4 (25%)" in lines
    assert "tasks.job: PROGRESS 4/4 (100%)" in lines
    assert lines.index("tasks.job: PROGRESS 1/4 (25%)") < lines.index(
        "tasks.job: PROGRESS 2/4 (50%)"
    )
    assert 'Result: "done"' in result.output


def test_result_follow_waits_for_a_task_that_is_still_running(producer: Liteq) -> None:
    res = producer.send_task("tasks.long")
    started = threading.Event()

    def run_task() -> None:
        started.wait(10)
        writer = Liteq("writer", broker=producer.storage.path)
        try:
            store(writer, res.id, states.STARTED, None, name="tasks.long", event=True)
            for p in (10, 60, 100):
                store(
                    writer, res.id, "PROGRESS", {"p": p}, name="tasks.long", event=True
                )
            store(writer, res.id, states.SUCCESS, 42, name="tasks.long")
        finally:
            writer.close()

    thread = threading.Thread(target=run_task)
    thread.start()
    started.set()
    try:
        result = ok(
            invoke(["result", "tasks.db", res.id, "--follow", "--timeout", "20"])
        )
    finally:
        thread.join(10)
    assert "PROGRESS 60/100 (60%)" in result.output
    assert "Result: 42" in result.output


def test_result_follow_times_out_with_an_error(producer: Liteq) -> None:
    res = producer.send_task("tasks.never")
    result = failed(
        invoke(["result", "tasks.db", res.id, "--follow", "--timeout", "0.1"])
    )
    assert result.output.splitlines()[0] == "tasks.never: PENDING"
    assert "timed out" in result.output


def test_result_of_a_saved_group_lists_its_members(producer: Liteq) -> None:
    store(producer, "m1", states.SUCCESS, 1)
    store(producer, "m2", states.FAILURE, ValueError("x"))
    producer.storage.results.save_group(GroupRow("g1", ["m1", "m2", "m3"]), 0.0)
    result = failed(invoke(["result", "tasks.db", "g1"]))
    assert "Group g1: 2/3 finished" in result.output
    assert "tasks.job[m1]: SUCCESS" in result.output
    assert "?[m3]: PENDING" in result.output


def test_result_shows_the_workflow_tree_of_a_chain(producer: Liteq) -> None:
    store(producer, "a", states.SUCCESS, 1, name="tasks.first", root_id="a")
    store(
        producer,
        "b",
        states.SUCCESS,
        2,
        name="tasks.second",
        root_id="a",
        parent_id="a",
    )
    store(
        producer,
        "c",
        states.STARTED,
        None,
        name="tasks.third",
        root_id="a",
        parent_id="b",
    )
    result = ok(invoke(["result", "tasks.db", "b"]))
    lines = result.output.splitlines()
    start = lines.index("Workflow:")
    assert lines[start + 1] == "  tasks.first[a] SUCCESS"
    assert lines[start + 2] == "  └─ tasks.second[b] SUCCESS  <-"
    assert lines[start + 3] == "     └─ tasks.third[c] STARTED"
    assert (
        "Workflow:" not in ok(invoke(["result", "tasks.db", "b", "--no-tree"])).output
    )


def test_result_tree_includes_group_members(producer: Liteq) -> None:
    store(producer, "h1", states.SUCCESS, 1, name="tasks.part", group_id="g")
    store(producer, "h2", states.SUCCESS, 2, name="tasks.part", group_id="g")
    result = ok(invoke(["result", "tasks.db", "h1"]))
    assert "tasks.part[h2] SUCCESS (group g)" in result.output


def test_a_lone_task_has_no_workflow_section(producer: Liteq) -> None:
    store(producer, "solo", states.SUCCESS, 1)
    assert "Workflow" not in ok(invoke(["result", "tasks.db", "solo"])).output


# -- pieces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "expected"),
    [({"current": 3, "total": 10}, (3, 10)), ({"p": 42.4}, (42, 100)),
     ({"percent": 7}, (7, 100)), ({"current": 1, "total": 0}, None),
     ({"current": True, "total": 2}, None), ("50%", None), (None, None)],
)  # fmt: skip
def test_progress_of_reads_the_usual_progress_shapes(info: Any, expected: Any) -> None:
    assert progress_of(info) == expected


def test_pretty_renders_json_or_repr() -> None:
    assert pretty({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert pretty(KeyError("x")) == "KeyError('x')"
    assert pretty({1, 2}) in ("{1, 2}", "{2, 1}")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_view_draws_a_bar_on_a_terminal() -> None:
    out = FakeTerminal()
    view = ProgressView("tasks.job", out=out)
    view.on_message({"status": "PROGRESS", "result": {"current": 1, "total": 4}})
    view.on_message({"status": "PROGRESS", "result": {"current": 3, "total": 4}})
    assert view.bar is not None and view.bar.pos == 3
    view.on_message({"status": states.SUCCESS, "result": 1})
    assert view.bar is None
    text = out.getvalue()
    assert "tasks.job" in text and "3/4" in text


def test_progress_view_prints_each_new_state_once() -> None:
    out = io.StringIO()
    view = ProgressView("t", out=out)
    for state in (states.STARTED, states.STARTED, states.RETRY, states.STARTED):
        view.on_message({"status": state, "result": None})
    assert out.getvalue().splitlines() == ["t: STARTED", "t: RETRY", "t: STARTED"]
