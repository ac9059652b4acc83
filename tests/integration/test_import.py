"""``import liteq`` and publishing stay light: no CLI, file watcher or worker."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Modules a web process that only calls ``.delay()`` must never load.
FORBIDDEN = [
    "click",
    "watchdog",
    "multiprocessing",
    "multiprocessing.pool",
    "liteq.worker",
    "liteq.cli",
    "liteq.beat",
    "liteq.reload",
    "liteq.testing",
]


def _loaded_after(code: str, cwd: Path) -> list[str]:
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps(sorted(set({FORBIDDEN!r}) & set(sys.modules))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_import_liteq_loads_no_cli_watcher_or_worker(tmp_path: Path) -> None:
    assert _loaded_after("import liteq", tmp_path) == []


@pytest.mark.slow
def test_defining_tasks_and_publishing_loads_no_cli_watcher_or_worker(
    tmp_path: Path,
) -> None:
    code = """
        from liteq import Celery

        app = Celery("tasks", broker="sqlite:///tasks.db")

        @app.task
        def add(x, y):
            return x + y

        result = add.delay(2, 2)
        assert result.state == "PENDING"
        app.send_task("tasks.add", (1, 1), countdown=5)
        with app.transaction():
            add.delay(3, 3)
        app.enqueue_many(add, [(1, 2), (3, 4)])
        add.apply((1, 1)).get()
    """
    assert _loaded_after(code, tmp_path) == []
    assert (tmp_path / "tasks.db").exists()
