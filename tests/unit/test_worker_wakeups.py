"""The worker loop's sleep: woken by other processes' commits, never by its own."""

from __future__ import annotations

import select
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.worker.wakeups import DATABASE, Wakeups

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify"),
]


@pytest.fixture
def wakeups(db_path: Path) -> Iterator[tuple[Liteq, Wakeups]]:
    app = Liteq("wakeups", broker=str(db_path), set_as_current=False)
    app.storage.db.data_version()  # creates the file and its WAL
    loop = Wakeups(app.waker, app.storage.db.data_version)
    loop.start()
    yield app, loop
    loop.close()
    app.close()


def _pending(loop: Wakeups) -> bool:
    assert loop._watch is not None
    return bool(select.select([loop._watch.fd], [], [], 0)[0])


def test_own_commit_leaves_no_file_event_to_wake_the_loop(
    wakeups: tuple[Liteq, Wakeups],
) -> None:
    app, loop = wakeups
    assert loop.watching

    @app.task
    def noop() -> None:
        pass

    noop.delay()
    assert not _pending(loop)


def test_commit_by_another_connection_still_wakes_the_loop(
    wakeups: tuple[Liteq, Wakeups], db_path: Path
) -> None:
    app, loop = wakeups
    other = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        other.execute(
            "INSERT INTO liteq_meta(key, value) VALUES ('probe', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
        )
    finally:
        other.close()
    assert _pending(loop)
    assert loop.wait(10.0, [], database=True) == DATABASE
