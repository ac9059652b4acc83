"""Helpers shared by the command-line unit tests (CliRunner, in-process)."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

import liteq.worker
from liteq import Liteq
from liteq.app import _apps, _current
from liteq.cli import cli, normalize_argv
from liteq.cli.loader import CliState


class FakeWorker:
    """Stands in for :class:`liteq.worker.Worker`: records how it was built and run."""

    instances: list[FakeWorker] = []
    #: What ``run`` returns.
    exit_code = 0
    #: Called with the worker inside ``run`` (set by a test).
    run_hook: Callable[[FakeWorker], None] | None = None

    def __init__(self, app: Liteq, **kwargs: Any) -> None:
        self.app = app
        self.kwargs = kwargs
        self.queues = list(kwargs.get("queues") or [app.conf.task_default_queue])
        self.runs: list[bool] = []
        self.restarts = 0
        FakeWorker.instances.append(self)

    def banner(self) -> str:
        return f"BANNER {self.app.storage.path} tasks={sorted(self.app.tasks)}"

    def run(self, burst: bool = False) -> int:
        self.runs.append(burst)
        hook = FakeWorker.run_hook
        if hook is not None:
            hook(self)
        return self.exit_code

    def request_pool_restart(self) -> None:
        self.restarts += 1

    def stop(self, graceful: bool = True) -> None:
        pass


@contextmanager
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run in ``tmp_path`` and undo what a command changes in this process.

    Restores ``sys.path``, forgets modules imported from ``tmp_path``, removes
    apps created meanwhile, and puts logging back as it was.
    """
    for key in list(os.environ):
        if key.startswith("LITEQ_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    saved_path = list(sys.path)
    saved_apps, saved_current = list(_apps), list(_current)
    root = logging.getLogger()
    task_logger = logging.getLogger("liteq.task")
    saved_logging = (
        list(root.handlers),
        root.level,
        list(task_logger.handlers),
        task_logger.propagate,
    )
    try:
        yield tmp_path
    finally:
        sys.path[:] = saved_path
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None) or ""
            if origin.startswith(str(tmp_path)):
                del sys.modules[name]
        for app in [a for a in _apps if a not in saved_apps]:
            app.close()
        _apps[:] = saved_apps
        _current[:] = saved_current
        root.handlers[:], root.level = saved_logging[0], saved_logging[1]
        task_logger.handlers[:] = saved_logging[2]
        task_logger.propagate = saved_logging[3]


def invoke(
    args: Sequence[str],
    env: dict[str, str] | None = None,
    input: str | None = None,  # noqa: A002 - CliRunner's name
    app: Liteq | None = None,
) -> Result:
    """Run ``liteq ARGS`` in-process, as :func:`liteq.cli.main` would."""
    runner = CliRunner()
    return runner.invoke(
        cli,
        normalize_argv(list(args)),
        obj=CliState(preset_app=app),
        auto_envvar_prefix="LITEQ",
        env=env,
        input=input,
    )


def ok(result: Result) -> Result:
    """Assert the command succeeded, showing its output and error if not."""
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def failed(result: Result, code: int = 1) -> Result:
    """Assert the command exited with ``code`` and did not crash with a traceback."""
    assert result.exit_code == code, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def write_module(directory: Path, relpath: str, text: str) -> Path:
    """Write a Python source file (creating packages' directories)."""
    path = directory / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def use_fake_worker(monkeypatch: pytest.MonkeyPatch) -> type[FakeWorker]:
    """Replace the real worker with :class:`FakeWorker` for one test."""
    FakeWorker.instances = []
    FakeWorker.exit_code = 0
    FakeWorker.run_hook = None
    monkeypatch.setattr(liteq.worker, "Worker", FakeWorker)
    return FakeWorker
