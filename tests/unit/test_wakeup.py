"""Wake-ups: same-process notifications, the file watcher, the fallback poll."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from liteq import wakeup
from liteq.clock import SYSTEM_CLOCK
from liteq.testing import FakeClock
from liteq.wakeup import Waker, get_waker


def test_notify_moves_the_generation_and_wakes_a_waiter(tmp_path: Path) -> None:
    waker = Waker(str(tmp_path / "x.db"), fallback=60)
    generation = waker.generation
    woke: list[int] = []
    thread = threading.Thread(target=lambda: woke.append(waker.wait(generation, 30)))
    thread.start()
    waker.notify()
    thread.join(10)
    assert woke == [generation + 1]


def test_wait_returns_at_once_when_a_change_already_happened(tmp_path: Path) -> None:
    waker = Waker(str(tmp_path / "x.db"))
    generation = waker.generation
    waker.notify()
    started = time.monotonic()
    assert waker.wait(generation, 30) == generation + 1
    assert time.monotonic() - started < 1


def test_wait_for_under_a_fake_clock_never_blocks(tmp_path: Path) -> None:
    waker = Waker(str(tmp_path / "x.db"), fallback=10)
    clock = FakeClock()
    assert waker.wait_for(lambda: None, 35, clock) is None
    assert sum(w or 0 for w in clock.waits) == pytest.approx(35)
    assert waker._observer is None  # no file watcher under a fake clock


def test_wait_for_returns_the_first_value_check_gives(tmp_path: Path) -> None:
    waker = Waker(str(tmp_path / "x.db"), fallback=10)
    answers = iter([None, None, "ready"])
    assert waker.wait_for(lambda: next(answers), 100, FakeClock()) == "ready"


def test_file_watcher_wakes_on_a_commit_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "watched.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=wal")
    writer.execute("CREATE TABLE t(x)")
    waker = Waker(str(path), fallback=1000)
    try:
        assert waker.start() is True
        assert waker.start() is True  # idempotent
        generation = waker.generation
        started = time.monotonic()
        threading.Timer(
            0.05, lambda: writer.execute("INSERT INTO t VALUES (1)")
        ).start()
        assert waker.wait(generation, 30) > generation
        assert time.monotonic() - started < 5
    finally:
        waker.stop()
        writer.close()


def test_wait_for_rechecks_soon_after_a_wake_that_found_nothing(
    tmp_path: Path,
) -> None:
    waker = Waker(str(tmp_path / "x.db"), fallback=1000)
    calls: list[float] = []

    def check() -> str | None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            waker.notify()  # a wake arrives before the change is visible
            return None
        return "seen" if len(calls) == 3 else None

    # Calls: first check, the immediate re-check after the wake, then one
    # more ~2 ms later, before going back to a long wait.
    assert waker.wait_for(check, 30, SYSTEM_CLOCK, fallback=1000) == "seen"
    assert calls[2] - calls[1] < 0.5
    waker.stop()


def test_wait_for_keeps_looking_a_few_times_after_a_wake_before_the_long_wait(
    tmp_path: Path,
) -> None:
    waker = Waker(str(tmp_path / "x.db"), fallback=1000)
    calls: list[float] = []

    def check() -> str | None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            waker.notify()
            return None
        # The change only becomes visible at the fifth look (~60 ms after the
        # wake): one early re-check alone would leave it to the fallback poll.
        return "seen" if len(calls) == 5 else None

    assert waker.wait_for(check, 30, SYSTEM_CLOCK, fallback=1000) == "seen"
    assert calls[4] - calls[0] < 5
    waker.stop()


def test_watcher_failure_degrades_to_a_fast_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import watchdog.observers

    class Broken:
        daemon = False

        def schedule(self, *args: object, **kwargs: object) -> None:
            raise OSError("inotify instance limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", Broken)
    waker = Waker(str(tmp_path / "x.db"), fallback=1.0)
    assert waker.start() is False
    assert waker.fallback == wakeup.DEGRADED_FALLBACK
    assert "inotify instance limit reached" in caplog.text


def test_get_waker_returns_one_waker_per_file(tmp_path: Path) -> None:
    a = get_waker(str(tmp_path / "a.db"))
    assert get_waker(str(tmp_path / "a.db")) is a
    assert get_waker(str(tmp_path / "." / "a.db")) is a
    assert get_waker(str(tmp_path / "b.db")) is not a


def test_commits_through_liteq_notify_waiters_in_this_process(
    tmp_path: Path,
) -> None:
    from liteq import Liteq

    app = Liteq("t", broker=tmp_path / "n.db", set_as_current=False)
    before = app.waker.generation
    app.send_task("tasks.anything")
    assert app.waker.generation > before
    app.close()
