"""Safe defaults: a private file, no pickle unless accepted, only registered tasks run."""

from __future__ import annotations

import os
import pickle
import stat
import sys
from pathlib import Path

import pytest

from liteq import Liteq, NotRegistered, states
from liteq.exceptions import ContentDisallowed
from liteq.messages import Message
from liteq.storage import NewTask
from liteq.testing import drain
from liteq.worker import Worker


def test_database_file_created_by_liteq_is_mode_0600(app: Liteq, db_path: Path) -> None:
    app.send_task("tasks.anything")
    for suffix in ("", "-wal", "-shm"):
        mode = stat.S_IMODE(os.stat(f"{db_path}{suffix}").st_mode)
        assert mode == 0o600


def test_database_file_is_private_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        app = Liteq("t", broker=tmp_path / "umask.db", set_as_current=False)
        app.send_task("tasks.anything")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "umask.db").st_mode) == 0o600
    app.close()


def test_json_is_the_only_content_accepted_by_default(app: Liteq) -> None:
    assert app.conf.accept_content == ["json"]
    assert app.accept == frozenset({"application/json"})
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"


def test_pickled_message_is_never_unpickled_unless_accepted(
    app: Liteq, worker: Worker, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, ...]:
            return (open, (str(marker), "w"))

    envelope = Message(task="tasks.x", id="evil").to_dict()
    envelope["body"][0] = [Exploit()]
    app.storage.broker.enqueue(
        NewTask(
            task_id="evil",
            name="tasks.x",
            message=pickle.dumps(envelope),
            content_type="application/x-python-serialize",
        ),
        app.clock.time(),
    )
    drain(app, worker, raise_on_failure=False)
    assert not marker.exists()
    result = app.AsyncResult("evil")
    assert result.state == states.FAILURE
    assert isinstance(result.result, ContentDisallowed)


def test_pickled_result_is_not_unpickled_unless_accepted(app: Liteq) -> None:
    app.conf.result_serializer = "pickle"
    app.conf.task_store_eager_result = True

    @app.task
    def value() -> int:
        return 1

    eager = value.apply()
    stored = app.AsyncResult(eager.id)
    assert stored.state == states.SUCCESS
    assert isinstance(stored.result, ContentDisallowed)
    app.conf.result_accept_content = ["json", "pickle"]
    assert app.AsyncResult(eager.id).result == 1


def test_task_names_resolve_only_to_registered_tasks(
    app: Liteq, worker: Worker
) -> None:
    sneaky = [
        app.send_task("os.system", ("echo hi",)),
        app.send_task("builtins.eval", ("1+1",)),
        app.send_task("subprocess.call", (["true"],)),
    ]
    drain(app, worker, raise_on_failure=False)
    for result in sneaky:
        assert result.state == states.FAILURE
        assert isinstance(result.result, NotRegistered)


def test_autoimport_imports_the_module_but_runs_only_registered_tasks(
    app: Liteq, worker: Worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "called"
    (tmp_path / "helpers_mod.py").write_text(
        f"def touch():\n    open({str(marker)!r}, 'w').close()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        result = app.send_task("helpers_mod.touch")
        drain(app, worker, raise_on_failure=False)
        assert "helpers_mod" in sys.modules
        assert not marker.exists()
        assert isinstance(result.result, NotRegistered)
    finally:
        sys.modules.pop("helpers_mod", None)
