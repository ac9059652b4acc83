"""The source watcher behind ``liteq worker --autoreload``."""

from __future__ import annotations

import threading
from pathlib import Path

from liteq.reload import Reloader
from liteq.testing import wait_until


class Calls:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.event = threading.Event()

    def __call__(self, changed: list[str]) -> None:
        self.batches.append(changed)
        self.event.set()


def test_reloader_matches_python_files_outside_cache_directories(
    tmp_path: Path,
) -> None:
    reloader = Reloader(str(tmp_path), Calls())
    assert reloader.matches(str(tmp_path / "tasks.py"))
    assert reloader.matches(str(tmp_path / "pkg" / "mod.py"))
    assert not reloader.matches(str(tmp_path / "tasks.db-wal"))
    assert not reloader.matches(str(tmp_path / "__pycache__" / "tasks.cpython-311.pyc"))
    assert not reloader.matches(str(tmp_path / ".git" / "hooks.py"))


def test_reloader_ignores_opening_and_reading_files(tmp_path: Path) -> None:
    calls = Calls()
    reloader = Reloader(str(tmp_path), calls, debounce=0.01)
    reloader.record("opened", str(tmp_path / "tasks.py"))
    reloader.record("closed_no_write", str(tmp_path / "tasks.py"))
    assert not reloader._event.is_set()


def test_reloader_calls_back_once_for_a_burst_of_changes(tmp_path: Path) -> None:
    calls = Calls()
    reloader = Reloader(str(tmp_path), calls, debounce=0.2)
    reloader._thread = threading.Thread(target=reloader._run, daemon=True)
    reloader._thread.start()
    try:
        path = str(tmp_path / "tasks.py")
        for kind in ("modified", "modified", "closed", "moved"):
            reloader.record(kind, path, "")
        reloader.record("created", str(tmp_path / "other.py"))
        assert calls.event.wait(10)
    finally:
        reloader.stop()
    assert calls.batches == [[str(tmp_path / "other.py"), path]]


def test_reloader_sees_a_file_written_on_disk(tmp_path: Path) -> None:
    calls = Calls()
    module = tmp_path / "pkg" / "tasks.py"
    module.parent.mkdir()
    module.write_text("X = 1\n")
    with Reloader(str(tmp_path), calls, debounce=0.05):
        (tmp_path / "notes.txt").write_text("not python")
        module.write_text("X = 2\n")
        wait_until(lambda: calls.batches, timeout=10)
    assert [str(module)] in calls.batches


def test_reloader_survives_a_failing_callback(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def callback(changed: list[str]) -> None:
        seen.append(changed)
        raise RuntimeError("callback broke")

    reloader = Reloader(str(tmp_path), callback, debounce=0.01)
    reloader._thread = threading.Thread(target=reloader._run, daemon=True)
    reloader._thread.start()
    try:
        reloader.record("modified", str(tmp_path / "a.py"))
        wait_until(lambda: len(seen) == 1, timeout=10)
        reloader.record("modified", str(tmp_path / "b.py"))
        wait_until(lambda: len(seen) == 2, timeout=10)
    finally:
        reloader.stop()


def test_reloader_stop_is_safe_twice_and_without_start(tmp_path: Path) -> None:
    reloader = Reloader(str(tmp_path), Calls())
    reloader.stop()
    reloader.start()
    reloader.stop()
    reloader.stop()


def test_reloader_reports_a_directory_it_cannot_watch(tmp_path: Path) -> None:
    reloader = Reloader(str(tmp_path / "missing"), Calls())
    assert reloader.start() is False
    reloader.stop()
