"""Wake-ups: same-process notifications, the file watcher, the fallback poll."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from liteq import wakeup
from liteq.clock import SYSTEM_CLOCK, SystemClock
from liteq.testing import FakeClock, wait_until
from liteq.wakeup import Waker, get_waker
from tests.threads import later


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
        with later(0.05, lambda: writer.execute("INSERT INTO t VALUES (1)")):
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

    # Neither raw inotify nor watchdog's observer can start.
    monkeypatch.setattr(wakeup, "open_watch", lambda path: None)
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


# -- watching without a thread (Linux inotify) ---------------------------------------


def _wal_file(path: Path) -> sqlite3.Connection:
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("PRAGMA journal_mode=wal")
    writer.execute("CREATE TABLE t(x)")
    return writer


@pytest.mark.timeout(20)
def test_waker_watches_with_inotify_and_no_thread_where_it_can(tmp_path: Path) -> None:
    path = tmp_path / "direct.db"
    writer = _wal_file(path)
    waker = Waker(str(path), fallback=1000)
    threads = threading.active_count()
    try:
        assert waker.start() is True
        assert waker.watching
        assert waker._watch is not None and waker._observer is None
        assert threading.active_count() == threads
        generation = waker.generation
        with later(0.05, lambda: writer.execute("INSERT INTO t VALUES (1)")):
            assert waker.wait(generation, 30) > generation
    finally:
        waker.stop()
        writer.close()


@pytest.mark.timeout(20)
def test_several_threads_waiting_all_wake_on_one_commit(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    writer = _wal_file(path)
    waker = Waker(str(path), fallback=1000)
    assert waker.start() is True
    generation = waker.generation
    woke: list[int] = []
    waiters = [
        threading.Thread(target=lambda: woke.append(waker.wait(generation, 30)))
        for _ in range(3)
    ]
    try:
        for thread in waiters:
            thread.start()
        # One thread polls the file, the others wait on it: all must be waiting
        # before the commit for the test to show the hand-over.
        wait_until(lambda: waker._followers >= 2, interval=0.001)
        writer.execute("INSERT INTO t VALUES (1)")
        for thread in waiters:
            thread.join(10)
        assert len(woke) == 3
        assert all(g > generation for g in woke)
    finally:
        waker.stop()
        writer.close()


@pytest.mark.timeout(20)
def test_notify_from_another_thread_wakes_the_thread_polling_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kick.db"
    _wal_file(path).close()
    waker = Waker(str(path), fallback=1000)
    assert waker.start() is True
    try:
        generation = waker.generation
        threading.Timer(0.05, waker.notify).start()
        assert waker.wait(generation, 30) == generation + 1
    finally:
        waker.stop()


@pytest.mark.timeout(20)
def test_a_waiter_left_without_a_poller_takes_over_polling(tmp_path: Path) -> None:
    path = tmp_path / "handover.db"
    writer = _wal_file(path)
    waker = Waker(str(path), fallback=1000)
    assert waker.start() is True
    generation = waker.generation
    woke: list[int] = []
    try:
        # The first thread polls briefly and leaves without news; the second,
        # waiting behind it, must then watch the file itself.
        short = threading.Thread(target=lambda: waker.wait(generation, 0.05))
        long = threading.Thread(target=lambda: woke.append(waker.wait(generation, 30)))
        short.start()
        wait_until(lambda: waker._leading, interval=0.001)
        long.start()
        short.join(10)
        writer.execute("INSERT INTO t VALUES (1)")
        long.join(10)
        assert woke and woke[0] > generation
    finally:
        waker.stop()
        writer.close()


@pytest.mark.timeout(20)
def test_own_commits_do_not_wake_the_next_wait(tmp_path: Path) -> None:
    path = tmp_path / "own.db"
    writer = _wal_file(path)
    waker = Waker(str(path), fallback=1000)
    assert waker.start() is True
    try:
        writer.execute("INSERT INTO t VALUES (1)")
        waker.notify()  # what liteq's commit hook does after this process commits
        generation = waker.generation
        # The commit's file events were read by notify(): nothing is left to
        # wake this wait, which runs to its timeout.
        assert waker.wait(generation, 0.05) == generation
    finally:
        waker.stop()
        writer.close()


def test_stopped_waker_still_wakes_on_notify(tmp_path: Path) -> None:
    path = tmp_path / "stopped.db"
    _wal_file(path).close()
    waker = Waker(str(path), fallback=1000)
    assert waker.start() is True
    waker.stop()
    assert not waker.watching
    generation = waker.generation
    threading.Timer(0.05, waker.notify).start()
    assert waker.wait(generation, 30) == generation + 1


def test_threaded_start_uses_a_watcher_thread_that_calls_listeners(
    tmp_path: Path,
) -> None:
    path = tmp_path / "threaded.db"
    writer = _wal_file(path)
    waker = Waker(str(path), fallback=1000)
    heard = threading.Event()
    waker.add_listener(heard.set)
    try:
        assert waker.start(threaded=True) is True
        assert waker._observer is not None and waker._watch is None
        writer.execute("INSERT INTO t VALUES (1)")
        # No thread waits: the watcher thread itself calls the listener.
        assert heard.wait(30)
    finally:
        waker.stop()
        writer.close()


def test_file_watch_reports_only_the_database_and_its_wal(tmp_path: Path) -> None:
    path = tmp_path / "only.db"
    watch = wakeup.open_watch(str(path))
    assert watch is not None
    try:
        (tmp_path / "other.txt").write_text("x")
        assert watch.drain() is False
        (tmp_path / "only.db-wal").write_bytes(b"x")
        assert watch.drain() is True
        assert watch.drain() is False  # everything was read
    finally:
        watch.close()


def test_wait_readable_returns_what_became_readable_in_short_and_long_waits() -> None:
    import select

    r, w = os.pipe()
    try:
        poller = select.poll()
        poller.register(r, select.POLLIN)
        assert wakeup.wait_readable(poller, [r], 0.0001) == []
        os.write(w, b"x")
        assert wakeup.wait_readable(poller, [r], 0.0001) == [r]
        assert wakeup.wait_readable(poller, [r], 0.5) == [r]
    finally:
        os.close(r)
        os.close(w)


def test_remove_listener_removes_a_bound_method(tmp_path: Path) -> None:
    class Loop:
        def __init__(self) -> None:
            self.calls = 0

        def on_change(self) -> None:
            self.calls += 1

    waker = Waker(str(tmp_path / "x.db"))
    loop = Loop()
    waker.add_listener(loop.on_change)
    waker.notify()
    waker.remove_listener(loop.on_change)
    waker.notify()
    assert loop.calls == 1


def test_threaded_start_after_a_direct_one_adds_the_watcher_thread(
    tmp_path: Path,
) -> None:
    path = tmp_path / "both.db"
    writer = _wal_file(path)
    waker = Waker(str(path), fallback=1000)
    heard = threading.Event()
    waker.add_listener(heard.set)
    try:
        assert waker.start() is True
        assert waker.start(threaded=True) is True
        assert waker._observer is not None
        writer.execute("INSERT INTO t VALUES (1)")
        assert heard.wait(30)
    finally:
        waker.stop()
        writer.close()
    assert not waker.watching


def test_spin_until_returns_once_done_or_when_time_runs_out() -> None:
    calls = iter([False, False, True])
    assert wakeup.spin_until(lambda: next(calls), 30) is True
    assert wakeup.spin_until(lambda: False, 0.0) is False


@pytest.mark.timeout(20)
def test_wait_for_with_a_version_probe_sees_a_commit_of_another_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "versioned.db"
    writer = _wal_file(path)
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    waker = Waker(str(path), fallback=1000)
    probes: list[int] = []

    def version() -> int:
        probes.append(1)
        return int(reader.execute("PRAGMA data_version").fetchone()[0])

    def check() -> int | None:
        count = reader.execute("SELECT count(*) FROM t").fetchone()[0]
        return count if count else None

    try:
        with later(0.05, lambda: writer.execute("INSERT INTO t VALUES (1)")):
            # The fallback poll is 1000 s: only the file event can end this wait.
            assert waker.wait_for(check, 30, SYSTEM_CLOCK, version=version) == 1
        assert probes  # read before each check, and while the commit settles
    finally:
        waker.stop()
        writer.close()
        reader.close()


@pytest.mark.timeout(30)
def test_the_watch_is_armed_only_while_someone_waits(tmp_path: Path) -> None:
    path = tmp_path / "armed.db"
    writer = _wal_file(path)
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    waker = Waker(str(path), fallback=1000)

    def version() -> int:
        return int(reader.execute("PRAGMA data_version").fetchone()[0])

    def rows_at_least(n: int) -> Callable[[], int | None]:
        def check() -> int | None:
            count = int(reader.execute("SELECT count(*) FROM t").fetchone()[0])
            return count if count >= n else None

        return check

    try:
        for n in (1, 2):
            # The fallback poll is 1000 s: only the file event ends the wait,
            # so the second one shows that the watch was armed again.
            with later(0.05, lambda: writer.execute("INSERT INTO t VALUES (1)")):
                assert (
                    waker.wait_for(rows_at_least(n), 20, SYSTEM_CLOCK, version=version)
                    == n
                )
            watch = waker._watch
            assert watch is not None and not watch.armed
        watch.drain()  # the event of the watch's removal
        writer.execute("INSERT INTO t VALUES (1)")
        assert watch.drain() is False  # no wait, no event for this commit
    finally:
        waker.stop()
        writer.close()
        reader.close()


def test_notify_reads_the_watch_only_while_it_is_armed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "own-disarmed.db"
    writer = _wal_file(path)
    waker = Waker(str(path), fallback=1000)
    reads: list[int] = []
    try:
        assert waker.wait_for(lambda: 1, 5, SYSTEM_CLOCK) == 1
        watch = waker._watch
        assert watch is not None and not watch.armed
        monkeypatch.setattr(watch, "discard", lambda: reads.append(1))
        writer.execute("INSERT INTO t VALUES (1)")
        waker.notify()
        assert reads == []
        waker.start()  # armed for good from now on
        assert watch.armed
        reads.clear()  # arming drops stale events
        writer.execute("INSERT INTO t VALUES (2)")
        waker.notify()
        assert reads == [1]
        assert waker.wait_for(lambda: 1, 5, SYSTEM_CLOCK) == 1
        assert watch.armed
    finally:
        waker.stop()
        writer.close()


def test_a_watch_that_cannot_be_armed_again_degrades_to_a_fast_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    path = directory / "x.db"
    waker = Waker(str(path), fallback=1000)
    try:
        assert waker.wait_for(lambda: 1, 5, SYSTEM_CLOCK) == 1
        directory.rmdir()
        assert waker.wait_for(lambda: None, 0.01, SYSTEM_CLOCK) is None
        assert waker.fallback == wakeup.DEGRADED_FALLBACK
        assert "cannot watch" in caplog.text
        caplog.clear()
        assert waker.wait_for(lambda: 1, 5, SYSTEM_CLOCK) == 1
        assert "cannot watch" not in caplog.text  # said once
    finally:
        waker.stop()


class _PauseRecorder(SystemClock):
    """The real clock, recording the pauses a wait takes (``Clock.wait``)."""

    def __init__(self) -> None:
        self.pauses: list[float | None] = []

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        self.pauses.append(timeout)
        return super().wait(event, timeout)


def _pauses_of_a_wait(
    tmp_path: Path, clock: _PauseRecorder, between: Callable[[], None]
) -> list[float | None]:
    """Pauses of a wait that another process's commits wake 3 times past the threshold.

    ``between()`` runs before each such commit.
    """
    waker = Waker(str(tmp_path / "x.db"), fallback=1000)
    looks = 0

    def check() -> str | None:
        nonlocal looks
        looks += 1
        if looks == 1 + wakeup.WAIT_QUIET_AFTER + 3:
            return "ready"
        between()
        waker.notify()  # another commit, none of this wait's business
        return None

    try:
        assert waker.wait_for(check, 60, clock, fallback=1000) == "ready"
    finally:
        waker.stop()
    return clock.pauses


def test_a_wait_that_commits_keep_waking_for_nothing_pauses_before_each_look(
    tmp_path: Path,
) -> None:
    pauses = _pauses_of_a_wait(tmp_path, _PauseRecorder(), lambda: None)
    # The first wake-ups are looked at at once, the next three after a pause.
    assert pauses == [wakeup.QUIET_FOR] * 3


class _SparseClock(_PauseRecorder):
    """The real clock, but each ``skip()`` moves its monotonic time on."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0

    def monotonic(self) -> float:
        return super().monotonic() + self.offset

    def skip(self, seconds: float) -> None:
        self.offset += seconds


def test_a_wait_woken_now_and_then_never_pauses(tmp_path: Path) -> None:
    # A long get() while other processes commit once in a while: however
    # many such wake-ups, the look that finds the result comes at once.
    clock = _SparseClock()
    pauses = _pauses_of_a_wait(
        tmp_path, clock, lambda: clock.skip(wakeup.QUIET_RESET * 1.2)
    )
    assert pauses == []
