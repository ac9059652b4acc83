"""The worker's checkpoint thread: reads the WAL's length, checkpoints off the task path."""

from __future__ import annotations

import pytest

from liteq import Liteq
from liteq.storage.db import WAL_AUTOCHECKPOINT
from liteq.testing import wait_until
from liteq.worker.checkpoint import SHARE, Checkpointer


def test_connections_checkpoint_less_often_than_sqlites_default(app: Liteq) -> None:
    limit = app.storage.db.query_one("PRAGMA wal_autocheckpoint")[0]
    assert limit == WAL_AUTOCHECKPOINT > 1000


def test_checkpointer_starts_at_a_share_of_the_autocheckpoint_limit(app: Liteq) -> None:
    checkpointer = Checkpointer(app)
    assert checkpointer.start() is True
    try:
        assert checkpointer.frames == int(WAL_AUTOCHECKPOINT * SHARE)
    finally:
        checkpointer.stop()


def test_checkpointer_copies_the_wal_once_it_is_long_enough(app: Liteq) -> None:
    @app.task
    def ping() -> None:
        pass

    checkpointer = Checkpointer(app, frames=5)
    ping.delay()
    frames, backfilled = checkpointer.frames_now()
    assert 0 < frames < 5 * 10 and backfilled == 0
    checkpointer.frames = frames + 1
    assert checkpointer.check() is False  # not long enough yet
    for _ in range(3):
        ping.delay()
    assert checkpointer.check() is True
    frames, backfilled = checkpointer.frames_now()
    assert backfilled == frames > 0
    assert checkpointer.check() is False  # nothing left to copy


@pytest.mark.timeout(20)
def test_checkpointer_thread_checkpoints_after_this_process_commits(
    app: Liteq,
) -> None:
    @app.task
    def ping() -> None:
        pass

    checkpointer = Checkpointer(app, frames=1)
    assert checkpointer.start() is True
    try:
        ping.delay()  # the commit hook wakes the thread
        wait_until(lambda: checkpointer.checkpoints > 0, message="no checkpoint")
    finally:
        checkpointer.stop()
    assert checkpointer.poke not in app.waker._listeners


def test_checkpointer_does_nothing_when_automatic_checkpoints_are_off(
    app: Liteq,
) -> None:
    app.storage.db.connection().execute("PRAGMA wal_autocheckpoint=0")
    checkpointer = Checkpointer(app)
    assert checkpointer.start() is False
    assert checkpointer.poke not in app.waker._listeners
