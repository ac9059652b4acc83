"""Targets run by fork server children in tests (importable by reference)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any


def report(conn: Connection, values: Any) -> None:
    """Send back pid, process name and a shared slot; write another slot."""
    values[1] = 2.5
    conn.send((os.getpid(), multiprocessing.current_process().name, values[0]))
    conn.close()


def exit_with(code: object) -> None:
    """Leave through ``sys.exit(code)``."""
    sys.exit(code)


def fail() -> None:
    """Raise an error (the child exits with 1)."""
    raise RuntimeError("target failed")


def wait_for_signal() -> None:
    """Sleep until killed."""
    while True:
        signal.pause() if hasattr(signal, "pause") else time.sleep(1)
