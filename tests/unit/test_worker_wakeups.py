"""The worker loop's sleep: woken by other processes' commits, never by its own."""

from __future__ import annotations

import logging
import select
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from liteq import Liteq
from liteq.wakeup import FileWatch
from liteq.worker.wakeups import DATABASE, TIMEOUT, Wakeups
from tests.threads import later

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


def _commit_elsewhere(db_path: Path) -> None:
    """Commit a change through a connection of its own, as another process would."""
    other = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        other.execute(
            "INSERT INTO liteq_meta(key, value) VALUES ('probe', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = value + 1"
        )
    finally:
        other.close()


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
    _app, loop = wakeups
    _commit_elsewhere(db_path)
    assert _pending(loop)
    assert loop.wait(10.0, [], database=True) == DATABASE


def test_a_loop_that_does_not_listen_costs_other_writers_no_file_event(
    wakeups: tuple[Liteq, Wakeups], db_path: Path
) -> None:
    _app, loop = wakeups
    watch = loop._watch
    assert watch is not None
    # No free pool slot (or a paced claim): the loop sleeps without listening.
    assert loop.wait(0.0, [], database=False) == TIMEOUT
    _commit_elsewhere(db_path)
    assert not watch.drain()  # no event about the database was even queued


def test_a_commit_made_while_not_listening_is_found_when_listening_again(
    wakeups: tuple[Liteq, Wakeups], db_path: Path
) -> None:
    _app, loop = wakeups
    assert loop.wait(0.0, [], database=False) == TIMEOUT
    _commit_elsewhere(db_path)
    # It made no event: the loop looks for itself as it starts listening,
    # and returns at once, not after the timeout.
    assert loop.wait(1000.0, [], database=True) == DATABASE
    # Listening again: the next commit wakes it through the watch.
    with later(0.05, lambda: _commit_elsewhere(db_path)):
        assert loop.wait(1000.0, [], database=True) == DATABASE


def test_a_watch_that_cannot_be_armed_again_degrades_to_polling_and_warns_once(
    wakeups: tuple[Liteq, Wakeups],
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _app, loop = wakeups
    monkeypatch.setattr(FileWatch, "arm", lambda self: False)
    assert loop.wait(0.0, [], database=False) == TIMEOUT
    with caplog.at_level(logging.WARNING, logger="liteq.wakeup"):
        assert loop.wait(0.0, [], database=True) == TIMEOUT
        assert not loop.watching
        # Polled: a commit is found under a timeout far longer than the poll,
        # also once the re-checks that follow a wake are over.
        loop._rechecks.clear()
        with later(0.05, lambda: _commit_elsewhere(db_path)):
            assert loop.wait(1000.0, [], database=True) == DATABASE
        assert loop.wait(0.0, [], database=False) == TIMEOUT
        assert loop.wait(0.0, [], database=True) == TIMEOUT
    warnings = [r for r in caplog.records if "cannot watch" in r.getMessage()]
    assert len(warnings) == 1
