"""Fixtures for the storage contract tests: a Storage on a real file in tmp_path."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liteq.storage import NewTask, ResultRow, Storage

#: A fixed epoch second for "now" in these tests.
T0 = 1_700_000_000.0

_ids = itertools.count(1)


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(str(tmp_path / "store.db"), busy_timeout=0.5)
    yield store
    store.close()


def new_task(**fields: Any) -> NewTask:
    """Return a NewTask with a fresh id and opaque message bytes."""
    n = next(_ids)
    fields.setdefault("task_id", f"task-{n}")
    fields.setdefault("name", "tests.noop")
    fields.setdefault("message", f"message-{n}".encode())
    return NewTask(**fields)


def result_row(task_id: str, status: str = "SUCCESS", **fields: Any) -> ResultRow:
    """Return a ResultRow with a small opaque payload."""
    fields.setdefault("result", b"4")
    fields.setdefault("content_type", "application/json")
    fields.setdefault("date_done", T0)
    return ResultRow(task_id=task_id, status=status, **fields)


def task_rows(store: Storage) -> list[tuple[Any, ...]]:
    """Return ``(task_id, state, retries, deliveries, eta)`` of every queued row."""
    return store.db.execute(
        "SELECT task_id, state, retries, deliveries, eta FROM liteq_task ORDER BY id"
    )
