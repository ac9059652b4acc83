"""Watch source files and report changes (``liteq worker --autoreload``).

For development: a watchdog observer on a directory tree collects changes to
``.py`` files and calls back once per burst of changes, because an editor
saves a file in several steps. Only the command line imports this module.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds without further changes before the callback runs.
DEFAULT_DEBOUNCE = 0.25
#: Upper bound on how long a stream of changes can postpone the callback.
MAX_DELAY = 2.0
#: Event kinds that mean a file's content changed. Opening or reading a file
#: (which a restarted pool does when it re-imports modules) must not count.
_CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})
#: Directory names never worth watching.
_IGNORED_DIRS = frozenset({"__pycache__", ".git", ".hg", ".mypy_cache", ".ruff_cache"})


class Reloader:
    """Calls ``callback(changed_paths)`` when files under ``root`` change.

    Args:
        root: Directory watched recursively.
        callback: Receives the sorted changed paths; runs in the reloader's thread.
        suffixes: File name endings that count (default ``.py``).
        debounce: Quiet seconds that end a burst of changes.
    """

    def __init__(
        self,
        root: str,
        callback: Callable[[list[str]], Any],
        suffixes: Sequence[str] = (".py",),
        debounce: float = DEFAULT_DEBOUNCE,
    ) -> None:
        self.root = os.path.abspath(root)
        self.callback = callback
        self.suffixes = tuple(suffixes)
        self.debounce = debounce
        self._changed: set[str] = set()
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._stopping = threading.Event()
        self._observer: Any = None
        self._thread: threading.Thread | None = None

    def matches(self, path: str) -> bool:
        """Return True if a change to ``path`` should trigger the callback."""
        if not path.endswith(self.suffixes):
            return False
        parts = os.path.relpath(path, self.root).split(os.sep)
        return not any(part in _IGNORED_DIRS for part in parts[:-1])

    def record(self, event_type: str, *paths: str) -> None:
        """Note a file-system event (called by the watchdog handler)."""
        if event_type not in _CHANGE_EVENTS:
            return
        hits = [p for p in paths if p and self.matches(p)]
        if not hits:
            return
        with self._lock:
            self._changed.update(hits)
        self._event.set()

    def start(self) -> bool:
        """Start watching.

        Returns:
            True if watching; False if the watcher could not start (logged).
        """
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        reloader = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory:
                    return
                reloader.record(
                    event.event_type,
                    os.fsdecode(event.src_path),
                    os.fsdecode(getattr(event, "dest_path", "") or ""),
                )

        try:
            observer = Observer()
            observer.daemon = True
            observer.schedule(_Handler(), self.root, recursive=True)
            observer.start()
        except Exception as exc:
            logger.warning("autoreload is off: cannot watch %s (%s)", self.root, exc)
            return False
        self._observer = observer
        self._thread = threading.Thread(
            target=self._run, name="liteq-reloader", daemon=True
        )
        self._thread.start()
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._event.wait()
            if self._stopping.is_set():
                return
            # Wait for the burst to settle (bounded, so a file rewritten in a
            # loop still triggers a restart now and then).
            waited = 0.0
            while waited < MAX_DELAY:
                self._event.clear()
                if not self._event.wait(self.debounce):
                    break
                waited += self.debounce
            if self._stopping.is_set():
                return
            with self._lock:
                changed, self._changed = sorted(self._changed), set()
            if not changed:
                continue
            try:
                self.callback(changed)
            except Exception:
                logger.exception("autoreload callback failed")

    def stop(self) -> None:
        """Stop watching; no callback runs after this returns."""
        self._stopping.set()
        self._event.set()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=2)
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def __enter__(self) -> Reloader:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
