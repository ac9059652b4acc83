"""``app.control``: revoking and purging, through the database (no broadcast)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import signals, states
from .exceptions import TaskRevokedError
from .serialization import exception_to_dict
from .storage import ResultRow
from .task import Context

if TYPE_CHECKING:
    from .app import Liteq


class Control:
    """Celery's ``app.control``, over the database (no broadcast needed)."""

    def __init__(self, app: Liteq) -> None:
        self.app = app

    def revoke(
        self,
        task_id: str | Sequence[str],
        destination: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> dict[str, str]:
        """Revoke one or many tasks (see :meth:`AsyncResult.revoke`).

        Returns:
            ``{task_id: "revoked" | "terminating" | "running" | "remembered"}``.
        """
        ids = [task_id] if isinstance(task_id, str) else [str(t) for t in task_id]
        app = self.app
        now = app.clock.time()

        names: dict[str, str | None] = {}

        def revoked_row(tid: str, name: str | None) -> ResultRow:
            names[tid] = name
            return app.make_result_row(
                tid, states.REVOKED, exception_to_dict(_revoked_error(tid)), name=name
            )

        outcome = app.storage.revoke(
            ids,
            now,
            terminate=terminate,
            signal=signal or ("SIGTERM" if terminate else None),
            keep_for=max(app.result_expires_seconds() or 0.0, 86400.0),
            revoked_result=revoked_row,
        )
        for tid, what in outcome.items():
            if what == "revoked":
                # A queued task revoked here never reaches a worker: the
                # signal comes from this process, with what it knows.
                name = names.get(tid)
                signals.task_revoked.send(
                    sender=app.tasks.get(name) if name else None,
                    request=Context(id=tid, task=name, called_directly=False),
                    terminated=False,
                    signum=None,
                    expired=False,
                    task_id=tid,
                )
        return outcome

    def terminate(self, task_id: str, signal: str = "SIGTERM") -> dict[str, str]:
        """Revoke and kill a running task."""
        return self.revoke(task_id, terminate=True, signal=signal)

    def purge(self) -> int:
        """Delete every waiting task; return how many were deleted."""
        return self.app.storage.broker.purge()

    discard_all = purge


def _revoked_error(task_id: str) -> BaseException:
    return TaskRevokedError(f"task {task_id} was revoked")
