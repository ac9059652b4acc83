"""Signals with Celery's names.

Connect a receiver with ``@task_success.connect`` (optionally
``.connect(sender=...)`` to filter). Receivers get ``sender`` and keyword
arguments as in Celery. A receiver that raises is logged and does not stop
the others, nor the task.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Receiver = Callable[..., Any]


class Signal:
    """A named hook that receivers connect to.

    Args:
        name: The signal's name (for logs and repr).
        providing_args: Names of the keyword arguments it sends (documentation).
    """

    def __init__(self, name: str, providing_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.providing_args = providing_args
        # (key, sender filter, receiver or weak reference, is_weak)
        self._receivers: list[tuple[Any, Any, Any, bool]] = []
        self._lock = threading.Lock()

    def connect(
        self,
        receiver: Receiver | None = None,
        sender: Any = None,
        weak: bool = False,
        dispatch_uid: Any = None,
    ) -> Any:
        """Connect ``receiver``; usable as ``@sig.connect`` or ``@sig.connect(sender=X)``.

        Returns:
            The receiver (so it works as a decorator).
        """
        if receiver is None:
            return lambda fn: self.connect(
                fn, sender=sender, weak=weak, dispatch_uid=dispatch_uid
            )
        ref: Any = receiver
        if weak:
            ref = (
                weakref.WeakMethod(receiver)
                if hasattr(receiver, "__self__")
                else weakref.ref(receiver)
            )
        key = dispatch_uid if dispatch_uid is not None else id(receiver)
        with self._lock:
            self._receivers = [
                r for r in self._receivers if not (r[0] == key and r[1] is sender)
            ]
            self._receivers.append((key, sender, ref, weak))
        return receiver

    def disconnect(
        self,
        receiver: Receiver | None = None,
        sender: Any = None,
        dispatch_uid: Any = None,
    ) -> bool:
        """Disconnect a receiver; return True if it was connected."""
        key = dispatch_uid if dispatch_uid is not None else id(receiver)
        with self._lock:
            before = len(self._receivers)
            self._receivers = [
                r for r in self._receivers if not (r[0] == key and r[1] is sender)
            ]
            return len(self._receivers) != before

    def _live(self, sender: Any) -> list[Receiver]:
        found: list[Receiver] = []
        for _key, want, ref, weak in list(self._receivers):
            if (
                want is not None
                and want is not sender
                and want != getattr(sender, "name", sender)
            ):
                continue
            fn = ref() if weak else ref
            if fn is not None:
                found.append(fn)
        return found

    def send(self, sender: Any = None, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every matching receiver; errors are logged, not raised.

        Returns:
            ``[(receiver, return value or exception), ...]``.
        """
        if not self._receivers:
            return []
        responses: list[tuple[Receiver, Any]] = []
        for fn in self._live(sender):
            try:
                responses.append((fn, fn(signal=self, sender=sender, **named)))
            except Exception as exc:
                logger.exception("Signal handler %r raised: %r", fn, exc)
                responses.append((fn, exc))
        return responses

    def has_receivers(self) -> bool:
        """Return True if anything is connected."""
        return bool(self._receivers)

    def __repr__(self) -> str:
        return f"<Signal: {self.name}>"


before_task_publish = Signal(
    "before_task_publish", ("body", "exchange", "routing_key", "headers")
)
after_task_publish = Signal(
    "after_task_publish", ("body", "exchange", "routing_key", "headers")
)
task_received = Signal("task_received", ("request",))
task_prerun = Signal("task_prerun", ("task_id", "task", "args", "kwargs"))
task_postrun = Signal(
    "task_postrun", ("task_id", "task", "args", "kwargs", "retval", "state")
)
task_success = Signal("task_success", ("result",))
task_failure = Signal(
    "task_failure", ("task_id", "exception", "args", "kwargs", "traceback", "einfo")
)
task_retry = Signal("task_retry", ("request", "reason", "einfo"))
task_revoked = Signal("task_revoked", ("request", "terminated", "signum", "expired"))
task_rejected = Signal("task_rejected", ("message", "exc"))
task_unknown = Signal("task_unknown", ("message", "exc", "name", "id"))
task_internal_error = Signal(
    "task_internal_error", ("task_id", "args", "kwargs", "request", "exception")
)
worker_init = Signal("worker_init")
worker_process_init = Signal("worker_process_init")
worker_process_shutdown = Signal("worker_process_shutdown", ("pid", "exitcode"))
worker_ready = Signal("worker_ready")
worker_shutting_down = Signal("worker_shutting_down", ("sig", "how", "exitcode"))
worker_shutdown = Signal("worker_shutdown")
beat_init = Signal("beat_init")
setup_logging = Signal("setup_logging", ("loglevel", "logfile", "format", "colorize"))
after_setup_logger = Signal(
    "after_setup_logger", ("logger", "loglevel", "logfile", "format", "colorize")
)
after_setup_task_logger = Signal(
    "after_setup_task_logger", ("logger", "loglevel", "logfile", "format", "colorize")
)
