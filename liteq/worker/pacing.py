"""Pacing a worker's claims while it keeps up with a stream of short tasks.

Each claim is a write transaction with a cost of its own, besides the cost
of each task it takes. A worker that keeps up with a producer enqueueing
thousands of short tasks a second claims as soon as a pool slot is free,
and each claim finds only the few tasks sent since the last one: the
worker's many small transactions take CPU and write-lock time from the
producer. With ``worker_claim_linger`` set, after a claim that emptied the
queue of several tasks (it got more than one and fewer than it asked for),
the next claim waits until that many seconds after it, while tasks gather.
A slot still busy by then waits for nothing. Tasks sent one at a time, a
deep queue and an idle worker never wait: a claim of one task, a full claim
or an empty one starts no pause. The acks of tasks that finish meanwhile
wait for that claim too, and commit in its transaction.

It is off by default: clients that each wait for their result
(``delay().get()`` from several threads at once) also make claims of a few
tasks, and each of their round trips would take up to the linger longer.
"""

from __future__ import annotations

__all__ = ["ClaimPacer"]


class ClaimPacer:
    """When a worker's next claim may go.

    Args:
        linger: Seconds between claims while a stream of tasks keeps
            arriving (``worker_claim_linger``); 0 turns pacing off.
    """

    __slots__ = ("linger", "_until")

    def __init__(self, linger: float) -> None:
        self.linger = linger
        #: When the next claim may go, after a claim that started a pause.
        self._until: float | None = None

    def claimed(self, got: int, asked: int, now: float) -> None:
        """Note a claim of ``got`` tasks out of ``asked``, made at monotonic ``now``."""
        if 1 < got < asked and self.linger > 0:
            self._until = now + self.linger
        else:
            self._until = None

    def wait(self, now: float) -> float:
        """Return the seconds the next claim should still wait (0.0: claim now)."""
        until = self._until
        if until is None or now >= until:
            return 0.0
        return until - now

    @property
    def paced(self) -> bool:
        """True from a claim that started a pause until the next claim.

        Tasks are most likely ready once the pause is over: the claim that
        ends it needs no probe first.
        """
        return self._until is not None
