"""Shared fixtures: a FakeClock, an app on a file in tmp_path, a solo worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq, registry
from liteq.app import _current
from liteq.testing import FakeClock
from liteq.worker import Worker


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tasks.db"


@pytest.fixture
def app(db_path: Path, clock: FakeClock) -> Iterator[Liteq]:
    application = Liteq("tests", broker=f"sqlite:///{db_path}", clock=clock)
    yield application
    application.close()
    if application in _current:
        _current.remove(application)


@pytest.fixture
def live_app(db_path: Path) -> Iterator[Liteq]:
    """An app on the real clock, for ``Worker.run()``."""
    application = Liteq("live", broker=str(db_path), set_as_current=False)
    yield application
    application.close()


@pytest.fixture
def add(app: Liteq) -> Any:
    """The task ``tasks.add(x, y)`` on ``app``."""

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    return add


@pytest.fixture
def worker(app: Liteq) -> Worker:
    return Worker(app, hostname="test@localhost", pool="solo")


@pytest.fixture
def isolated_registry() -> Iterator[None]:
    """Undo what a test adds to the process-wide app and shared-task lists."""
    saved = (
        list(registry._apps),
        list(registry._current),
        list(registry._shared_tasks),
    )
    yield
    registry._apps[:], registry._current[:], registry._shared_tasks[:] = saved
