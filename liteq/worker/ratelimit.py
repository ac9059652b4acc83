"""Task rate limits (``rate_limit="10/s"``), shared by every worker on the file.

Each limited task name has one token bucket in the database
(``Storage.take_token``), so ten workers together start at most the given
rate. A claimed task that finds no token is not started: it goes back to the
database, due when a token will be, without counting a delivery. Several
tasks of the same name that miss a token are spread one token interval
apart, so no worker spins on them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..exceptions import NotRegistered, StorageError

if TYPE_CHECKING:
    from ..app import Liteq
    from ..storage.broker import Claimed

logger = logging.getLogger("liteq.worker")

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: object) -> float | None:
    """Return a rate limit in tasks per second, or None for no limit.

    ``"10/s"``, ``"100/m"``, ``"1000/h"`` as Celery; a bare number is per
    second; zero or empty means no limit.

    Raises:
        ValueError: the value is not a rate.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        rate = float(value)
    else:
        text = str(value).strip()
        amount, _, unit = text.partition("/")
        try:
            rate = float(amount) / _UNITS[unit.strip().lower()[:1] or "s"]
        except (KeyError, ValueError):
            raise ValueError(
                f"invalid rate limit {value!r}: use '10/s', '100/m' or '1000/h'"
            ) from None
    return rate if rate > 0 else None


class RateLimiter:
    """Decides, per claimed task, whether it may start now.

    Args:
        app: The app (its tasks and storage).
        autoimport: Import the module of an unknown task to read its limit.
    """

    def __init__(self, app: Liteq, autoimport: bool = True) -> None:
        self.app = app
        self.autoimport = autoimport
        self.enabled = not app.conf.worker_disable_rate_limits
        self._rates: dict[str, float | None] = {}
        #: Per task name: when the shared bucket will have a token again.
        self._blocked: dict[str, float] = {}
        #: Per task name: the due time of the next task to defer.
        self._slot: dict[str, float] = {}

    def rate(self, name: str) -> float | None:
        """Return the rate limit of task ``name`` in tasks/s (None: unlimited)."""
        try:
            return self._rates[name]
        except KeyError:
            pass
        rate: float | None = None
        try:
            task = self.app.resolve_task(name, autoimport=self.autoimport)
            rate = parse_rate(task.rate_limit or self.app.conf.task_default_rate_limit)
        except NotRegistered:
            rate = None
        except ValueError as exc:
            logger.error("Task %s: %s; running it without a limit", name, exc)
        self._rates[name] = rate
        return rate

    def admit(self, claimed: Claimed, now: float) -> float | None:
        """Return None if ``claimed`` may start now, else the time (epoch s) to retry it."""
        if not self.enabled:
            return None
        rate = self.rate(claimed.name)
        if rate is None:
            return None
        name = claimed.name
        blocked = self._blocked.get(name)
        if blocked is None or blocked <= now:
            try:
                wait = self.app.storage.take_token(f"task:{name}", rate, 1.0, now)
            except StorageError as exc:
                logger.warning(
                    "rate limit of %s not checked (%s); running it", name, exc
                )
                return None
            if wait <= 0:
                self._blocked.pop(name, None)
                self._slot.pop(name, None)
                return None
            blocked = self._blocked[name] = now + wait
        # Later misses line up one token interval apart.
        eta = max(blocked, self._slot.get(name, 0.0))
        self._slot[name] = eta + 1.0 / rate
        return eta
