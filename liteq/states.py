"""Task states, with Celery's names and ordering."""

from __future__ import annotations

#: The task is waiting to run, or its id is unknown (Celery cannot tell the two
#: apart; ``AsyncResult.exists()`` can).
PENDING = "PENDING"
#: A worker has claimed the task.
RECEIVED = "RECEIVED"
#: The task has started (recorded only with ``track_started``).
STARTED = "STARTED"
#: The task returned a value.
SUCCESS = "SUCCESS"
#: The task raised an exception, or was lost with its worker.
FAILURE = "FAILURE"
#: The task was revoked, or expired before it ran.
REVOKED = "REVOKED"
#: The task is waiting for its next attempt.
RETRY = "RETRY"
#: The task was rejected by a worker.
REJECTED = "REJECTED"
#: Reserved for the chain/chord machinery: the task was ignored.
IGNORED = "IGNORED"

#: States after which the result does not change any more.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
#: States before the result is final.
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, REJECTED, RETRY})
#: States whose result is an exception.
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
#: States that propagate an exception from ``AsyncResult.get()``.
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})

ALL_STATES = frozenset(
    {PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED}
)

# Celery's precedence: unknown (custom) states sort between RETRY and PENDING.
_PRECEDENCE = [
    SUCCESS,
    FAILURE,
    None,
    REVOKED,
    STARTED,
    RECEIVED,
    REJECTED,
    RETRY,
    PENDING,
]


def precedence(state: str) -> int:
    """Return the precedence index of ``state``; lower is "more final"."""
    try:
        return _PRECEDENCE.index(state)
    except ValueError:
        return _PRECEDENCE.index(None)


class state(str):
    """A state name that compares by precedence, as Celery's ``states.state``."""

    def __gt__(self, other: object) -> bool:
        return precedence(self) < precedence(str(other))

    def __ge__(self, other: object) -> bool:
        return precedence(self) <= precedence(str(other))

    def __lt__(self, other: object) -> bool:
        return precedence(self) > precedence(str(other))

    def __le__(self, other: object) -> bool:
        return precedence(self) >= precedence(str(other))
