"""A producer killed with SIGKILL loses none of the tasks it was told were sent.

With the default durability (WAL, ``synchronous=NORMAL``) a commit is in the
WAL file when ``.delay()`` returns: the operating system keeps it when the
process dies, without an fsync (a power loss needs ``durable=True``). The
producer mixes every way a task is stored: at its id's rowid, with an id of
the caller's (through the task id index), with a unique key, and in bulk.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from liteq import Liteq

pytestmark = pytest.mark.slow


def _noop(n: int) -> None:
    """The task body (never run here)."""


def _send_until_killed(path: str, out: str) -> None:
    app = Liteq("crash", broker=path, set_as_current=False)
    task = app.task(name="crash.noop")(_noop)
    with open(out, "w", buffering=1) as sent:
        for n in range(1_000_000):
            kind = n % 4
            if kind == 0:
                ids = [task.delay(n).id]
            elif kind == 1:
                ids = [task.apply_async((n,), task_id=f"given-{n}").id]
            elif kind == 2:
                ids = [task.apply_async((n,), unique_key=f"key-{n}").id]
            else:
                ids = [r.id for r in app.enqueue_many(task, [(n,), (n + 1,)])]
            # Written only once the send returned: each line is a promise.
            sent.write("".join(f"{i}\n" for i in ids))


def _promised(out: Path) -> list[str]:
    text = out.read_text()
    return text[: text.rfind("\n") + 1].split()  # complete lines only


@pytest.mark.timeout(120)
def test_a_producer_killed_while_sending_loses_no_task_it_was_told_was_sent(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "crash.db")
    out = tmp_path / "sent.txt"
    out.touch()
    producer = multiprocessing.get_context("spawn").Process(
        target=_send_until_killed, args=(path, str(out))
    )
    producer.start()
    deadline = time.monotonic() + 60
    while len(_promised(out)) < 2_000:
        assert producer.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    assert producer.pid is not None
    os.kill(producer.pid, signal.SIGKILL)
    producer.join(10)
    assert producer.exitcode == -signal.SIGKILL

    promised = _promised(out)
    app = Liteq("crash", broker=path, set_as_current=False)
    try:
        assert app.storage.db.execute("PRAGMA integrity_check") == [("ok",)]
        queued = {
            r[0] for r in app.storage.db.execute("SELECT task_id FROM liteq_task")
        }
        assert [i for i in promised if i not in queued] == []
        # Each is found by its id, however it was stored.
        assert all(app.storage.broker.get_task_row(i) is not None for i in promised)
        print(f"{len(promised)} tasks promised, {len(queued)} queued at the kill")
    finally:
        app.close()
