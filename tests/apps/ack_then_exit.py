"""A task whose pool process exits right after acking it, before it reports it.

Imported by the pool process when the task first comes (the worker imports
the module of a ``module.function`` task): only that process is changed.
"""

from __future__ import annotations

import os
from typing import Any

from liteq import shared_task
from liteq.worker import child

_ack = child._Server.ack


def _ack_then_exit(self: Any, claimed: Any, outcome: Any) -> Any:
    acked = _ack(self, claimed, outcome)
    if claimed.name == quiet_exit.name:
        os._exit(3)
    return acked


child._Server.ack = _ack_then_exit  # type: ignore[method-assign]


@shared_task(name="tests.apps.ack_then_exit.quiet_exit")
def quiet_exit(x: int) -> int:
    return x
