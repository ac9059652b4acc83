"""Helpers for testing code that uses liteq: a fake clock, ``drain``, ``eager``.

``drain(app)`` runs every due task through the worker's own code path (claim,
execute, ack with result, callbacks, chords), in this thread, and returns
when nothing is due. It never advances the clock: move time explicitly with
``clock.advance()`` so what is due stays visible in the test.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from . import states
from .exceptions import ResultTimeout
from .serialization import dict_to_exception, is_exception_dict

if TYPE_CHECKING:
    from .app import Liteq
    from .worker import Worker

T = TypeVar("T")


class FakeClock:
    """A clock that moves only when told to (``advance``) or when waited on.

    Args:
        start: The initial wall-clock time (aware UTC).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2024, 1, 1, tzinfo=timezone.utc)
        self._mono = 1000.0
        #: Every timeout passed to :meth:`wait`, in order.
        self.waits: list[float | None] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        """Return the fake epoch seconds."""
        return self._now.timestamp()

    def now(self) -> datetime:
        """Return the fake aware UTC datetime."""
        return self._now

    def monotonic(self) -> float:
        """Return the fake monotonic seconds."""
        return self._mono

    def advance(self, seconds: float | timedelta) -> None:
        """Move time forward."""
        secs = (
            seconds.total_seconds()
            if isinstance(seconds, timedelta)
            else float(seconds)
        )
        with self._lock:
            self._now += timedelta(seconds=secs)
            self._mono += secs

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (aware), forward or backward."""
        with self._lock:
            delta = (when - self._now).total_seconds()
            self._now = when.astimezone(timezone.utc)
            self._mono += delta

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Record the wait and advance time by ``timeout``; never blocks."""
        self.waits.append(timeout)
        if event.is_set():
            return True
        if timeout is not None:
            self.advance(timeout)
        return event.is_set()


class TaskFailed(AssertionError):
    """A task failed during :func:`drain` with ``raise_on_failure``."""


def drain(
    app: Liteq,
    worker: Worker | None = None,
    max_steps: int = 10000,
    raise_on_failure: bool = True,
    queues: list[str] | None = None,
) -> int:
    """Run every due task (and the tasks they enqueue) in this thread.

    Args:
        app: The app.
        worker: A worker to use (default: a solo worker on every queue in use).
        max_steps: Stop after this many rounds (a task that keeps re-queueing
            itself would otherwise loop forever).
        raise_on_failure: Re-raise the first task failure here, with its traceback.
        queues: Queues to drain (default: all queues that hold tasks).

    Returns:
        How many tasks were processed.

    Raises:
        Exception: the first failed task's exception (``raise_on_failure``).
        RuntimeError: ``max_steps`` rounds were not enough.
    """
    from .worker import Worker

    if worker is None:
        if queues is None:
            queues = sorted(app.storage.broker.queue_stats(app.clock.time())) or [
                app.conf.task_default_queue
            ]
        worker = Worker(app, queues=queues, hostname="drain@localhost", pool="solo")
    failures: list[BaseException] = []
    original = worker.log_outcome

    def watch(outcome: Any) -> None:
        if outcome.state == states.FAILURE and outcome.exc is not None:
            failures.append(outcome.exc)
        original(outcome)

    worker.log_outcome = watch  # type: ignore[method-assign]
    before = worker.processed
    try:
        for _ in range(max_steps):
            if worker.step() != 0.0:
                break
            if failures and raise_on_failure:
                raise failures[0]
        else:
            raise RuntimeError(f"drain: still busy after {max_steps} steps")
    finally:
        worker.log_outcome = original  # type: ignore[method-assign]
    return worker.processed - before


@contextlib.contextmanager
def eager(app: Liteq, propagate: bool = True) -> Iterator[Liteq]:
    """Run every ``.delay()`` inline inside the block (``task_always_eager``)."""
    old = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = propagate
    try:
        yield app
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = old


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll ``predicate`` until it returns something truthy, with a deadline.

    Returns:
        The truthy value.

    Raises:
        ResultTimeout: ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ResultTimeout(message or f"condition not met within {timeout}s")
        time.sleep(interval)


def stored_exception(value: Any) -> Any:
    """Rebuild an exception from its stored dict form (pass other values through)."""
    return dict_to_exception(value) if is_exception_dict(value) else value


__all__ = [
    "FakeClock",
    "TaskFailed",
    "drain",
    "eager",
    "stored_exception",
    "wait_until",
]
