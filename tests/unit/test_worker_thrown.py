"""In-process pools: a time limit or terminate raised in a task's thread hits that task only.

Such an exception takes effect at the thread's next Python instruction, which
may come after the task has ended; it must then neither reach the pool's own
code nor the thread's next task, and every task still gets one outcome.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.exceptions import SoftTimeLimitExceeded
from liteq.storage.broker import Claimed
from liteq.testing import wait_until
from liteq.worker import pool as pools
from liteq.worker.pool import SoloPool, ThreadPool, _raise_in_thread

pytestmark = pytest.mark.timeout(60)


def _claim(app: Liteq, n: int) -> list[Claimed]:
    return app.storage.claim("w", ["celery"], n, app.clock.time(), 60.0)


def _states(done: list[tuple[Claimed, Any]]) -> list[tuple[str, str]]:
    return [(claimed.task_id, outcome.state) for claimed, outcome in done]


def _run_all(app: Liteq, pool: ThreadPool, n: int) -> list[tuple[Claimed, Any]]:
    """Hand the ``n`` queued tasks to ``pool``; return what ended, once all did."""
    pool.submit_many(_claim(app, n))
    return _collect(pool, n)


def _collect(pool: ThreadPool, n: int) -> list[tuple[Claimed, Any]]:
    """Wait until ``n`` tasks ended in ``pool``, then stop it; return them."""
    done: list[tuple[Claimed, Any]] = []
    wait_until(lambda: done.extend(pool.collect().done) or len(done) == n, timeout=10)
    pool.stop()
    assert pool.join(10)
    return done


def _line_of(function: Any, text: str) -> int:
    """The line number of the first line of ``function`` that contains ``text``."""
    import inspect

    lines, first = inspect.getsourcelines(function)
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_raising_none_cancels_an_exception_that_has_not_taken_effect() -> None:
    gate = threading.Lock()
    seen: list[str] = []

    def blocked() -> None:
        try:
            gate.acquire()  # no Python instruction runs while this waits
            sum(range(1000))
            seen.append("clean")
        except SoftTimeLimitExceeded:
            seen.append("hit")
        finally:
            gate.release()

    line = _line_of(blocked, "gate.acquire()")
    for cancel in (False, True):
        gate.acquire()
        thread = threading.Thread(target=blocked)
        thread.start()
        ident = thread.ident
        assert ident is not None
        wait_until(
            lambda i=ident: sys._current_frames()[i].f_lineno == line, timeout=10
        )
        assert _raise_in_thread(ident, SoftTimeLimitExceeded)
        if cancel:
            _raise_in_thread(ident, None)
        gate.release()
        thread.join(10)
        assert not thread.is_alive()
    assert seen == ["hit", "clean"]


def test_solo_limit_raised_as_the_task_ends_stays_with_it_and_the_next_task_runs(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pools, "STEAL_AFTER", 60.0)  # both tasks run in this batch

    @app.task(soft_time_limit=30)
    def quick(i: int) -> int:
        return i

    results = [quick.delay(i) for i in range(2)]
    pool = SoloPool(app, "t@h")
    real = pools.run_task
    calls: list[str] = []

    def limit_passes_at_the_end(*args: Any) -> Any:
        outcome = real(*args)
        calls.append(outcome.state)
        if len(calls) == 1:
            # The soft limit passes just as the first task ended: it is
            # raised in this very thread, outside the task.
            pool.enforce(time.monotonic() + 40)
        return outcome

    monkeypatch.setattr(pools, "run_task", limit_passes_at_the_end)
    claimed = _claim(app, 2)
    pool.submit_many(claimed)  # nothing escapes
    done = pool.collect().done
    assert [c.task_id for c, _ in done] == [r.id for r in results]
    first, second = (outcome for _, outcome in done)
    # The exception took effect before the outcome was handed back: it is
    # the first task's failure. The second task never saw it.
    assert first.state == states.FAILURE
    assert isinstance(first.exc, SoftTimeLimitExceeded)
    assert second.state == states.SUCCESS
    assert calls == [states.SUCCESS, states.SUCCESS]
    assert pool._slots == {} and pool.running() == 0


def test_threads_limit_pending_while_the_slot_is_unregistered_keeps_the_outcome(
    app: Liteq, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(soft_time_limit=30)
    def quick(i: int) -> int:
        return i

    results = [quick.delay(i) for i in range(2)]
    pool = ThreadPool(app, "t@h", concurrency=1)
    pool.start()
    real = pools.run_task
    ended, go = threading.Event(), threading.Event()

    def pause_after_the_first(*args: Any) -> Any:
        outcome = real(*args)
        if not ended.is_set():
            ended.set()
            assert go.wait(10)
        return outcome

    monkeypatch.setattr(pools, "run_task", pause_after_the_first)
    pool.submit_many(_claim(app, 2))
    assert ended.wait(10)
    with pool._lock:
        go.set()
        (slot,) = pool._slots.values()
        # The thread now waits for the lock to unregister the finished task.
        wait_until(
            lambda: sys._current_frames()[slot.ident].f_code.co_name == "_unregister",
            timeout=10,
        )
        pool._throw(slot, SoftTimeLimitExceeded)
    done = _collect(pool, 2)
    # The task had finished: it keeps its result; the next one runs clean.
    assert _states(done) == [(r.id, states.SUCCESS) for r in results]
    assert [outcome.retval for _, outcome in done] == [0, 1]
    assert pool._slots == {}


@pytest.fixture
def queued(app: Liteq) -> list[Any]:
    """Three quick tasks in the queue."""

    @app.task
    def quick(i: int) -> int:
        return i

    return [quick.delay(i) for i in range(3)]


@pytest.fixture
def one_thread(app: Liteq) -> ThreadPool:
    """A started threads pool of one thread."""
    pool = ThreadPool(app, "t@h", concurrency=1)
    pool.start()
    return pool


def test_threads_terminate_pending_as_the_task_ends_revokes_that_task_only(
    app: Liteq,
    monkeypatch: pytest.MonkeyPatch,
    queued: list[Any],
    one_thread: ThreadPool,
) -> None:
    results, pool = queued, one_thread
    real = pools.run_task

    def terminated_at_the_end(app_: Liteq, claimed: Claimed, *args: Any) -> Any:
        outcome = real(app_, claimed, *args)
        if claimed.task_id == results[1].id:
            assert pool.terminate(claimed.task_id, 15)
        return outcome

    monkeypatch.setattr(pools, "run_task", terminated_at_the_end)
    assert _states(_run_all(app, pool, 3)) == [
        (results[0].id, states.SUCCESS),
        (results[1].id, states.REVOKED),
        (results[2].id, states.SUCCESS),
    ]


def test_a_task_whose_limits_cannot_be_read_fails_and_the_thread_goes_on(
    app: Liteq,
    monkeypatch: pytest.MonkeyPatch,
    queued: list[Any],
    one_thread: ThreadPool,
) -> None:
    results = queued
    real = pools.prepare

    def broken_first(app_: Liteq, claimed: Claimed, *args: Any) -> Any:
        if claimed.task_id == results[0].id:
            raise ValueError("could not convert string to float: 'soon'")
        return real(app_, claimed, *args)

    monkeypatch.setattr(pools, "prepare", broken_first)
    done = _run_all(app, one_thread, 3)
    assert _states(done) == [
        (results[0].id, states.FAILURE),
        (results[1].id, states.SUCCESS),
        (results[2].id, states.SUCCESS),
    ]
    assert isinstance(done[0][1].exc, ValueError)


def test_a_time_limit_raised_into_a_thread_says_what_happened() -> None:
    from liteq.exceptions import TimeLimitExceeded

    # PyThreadState_SetAsyncExc makes it without arguments.
    assert str(TimeLimitExceeded()) == "the task ran past its hard time limit"
    assert "killed" not in str(TimeLimitExceeded())
