"""Tasks for the canvas's subprocess tests (module level, so prefork children import them).

The app works on the file named by ``LITEQ_TEST_DB``; a test's producer app
on the same file uses these tasks through ``shared_task``. Tasks that record
calls append a line to a file in the directory named by ``LITEQ_TEST_DIR``,
so the test can count how often each ran across processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from liteq import Liteq, shared_task

app = Liteq("tests.apps.canvas_tasks", broker=os.environ.get("LITEQ_TEST_DB") or None)


def _record(name: str, text: str) -> None:
    directory = os.environ.get("LITEQ_TEST_DIR")
    if directory:
        # One short O_APPEND write per line: lines from processes never interleave.
        with open(Path(directory) / name, "a") as fh:
            fh.write(text + "\n")


@shared_task
def add(x: int, y: int) -> int:
    """Return ``x + y``."""
    return x + y


@shared_task
def tsum(values: list[int]) -> int:
    """Return the sum, recording the call and how many values it got."""
    _record("tsum.calls", f"{os.getpid()} {len(values)}")
    return sum(values)


@shared_task
def collect(values: list[Any]) -> list[Any]:
    """Return the values as given (the order is the header's), recording the call."""
    _record("collect.calls", f"{os.getpid()} {len(values)}")
    return values


@shared_task
def identity(x: Any) -> Any:
    """Return ``x``."""
    return x


@shared_task(acks_late=True)
def slow_part(i: int, release: str) -> int:
    """A chord part that waits (up to 30 s) for the file ``release``; returns ``i``.

    With ``acks_late``, a part whose worker is killed is run again.
    """
    _record("slow_part.started", f"{os.getpid()} {i}")
    deadline = time.monotonic() + 30.0
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return i


@shared_task
def explode(x: Any = None) -> None:
    """Fail with ValueError."""
    raise ValueError(f"explode({x!r})")


@shared_task
def on_chord_error(request: Any, exc: BaseException, traceback: str | None) -> str:
    """A new-style errback: records the failed task's id and the error."""
    _record("errback.calls", f"{request.id} {type(exc).__name__}")
    return "handled"


@shared_task(bind=True)
def replaced(self: Any, x: int) -> Any:
    """Hand its place to ``add(x, 100)`` (``Task.replace``)."""
    return self.replace(add.s(x, 100))


@shared_task(bind=True)
def replaced_by_group(self: Any, n: int) -> Any:
    """Hand its place to a group of ``n`` additions."""
    from liteq import group

    return self.replace(group(add.s(i, i) for i in range(n)))
