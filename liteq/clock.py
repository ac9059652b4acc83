"""The clock: the only place liteq reads the time.

Everything that needs the time takes it from ``app.clock``, so tests can
inject :class:`liteq.testing.FakeClock` and drive time explicitly.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    """What liteq needs from a clock."""

    def time(self) -> float:
        """Return wall-clock epoch seconds (UTC)."""
        ...

    def now(self) -> datetime:
        """Return the wall-clock time as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Return seconds from a monotonic clock, for durations and deadlines."""
        ...

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Wait until ``event`` is set or ``timeout`` seconds pass.

        Returns:
            True if the event was set.
        """
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Return ``time.time()``."""
        return time.time()

    def now(self) -> datetime:
        """Return the current aware UTC datetime."""
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block on ``event`` for at most ``timeout`` seconds."""
        return event.wait(timeout)


#: The clock used when an app is not given one.
SYSTEM_CLOCK = SystemClock()
