"""A pool process acks a lone task itself (``run_batch(..., ack=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from liteq import Liteq, states
from liteq.exceptions import DatabaseLocked
from liteq.storage.broker import Claimed
from liteq.worker.child import SHARED_SIZE, ChildSpec, _Server, _State

WORKER = "w@test:1:abc"


class _Sent:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, obj: Any) -> None:
        self.messages.append(obj)


def _server(app: Liteq, db_path: Path) -> tuple[_Server, _Sent]:
    sent = _Sent()
    spec = ChildSpec(app_path=None, database=str(db_path), hostname="test@localhost")
    shared = _State([-1.0] + [0.0] * (SHARED_SIZE - 1))
    return _Server(None, sent, app, spec, shared), sent  # type: ignore[arg-type]


def _claim(app: Liteq) -> Claimed:
    [claimed] = app.storage.claim(WORKER, ["celery"], 1, app.clock.time(), 60.0)
    return claimed


def test_a_lone_task_is_acked_by_its_pool_process(
    app: Liteq, add: Any, db_path: Path
) -> None:
    result = add.delay(2, 3)
    server, sent = _server(app, db_path)
    server.run_batch([(0, _claim(app))], ack=True)
    # Stored before the parent hears of it.
    assert result.state == states.SUCCESS and result.get() == 5
    [(kind, reports, skipped, retire, end)] = sent.messages
    assert kind == "done" and skipped == [] and not retire and end
    [(seq, report)] = reports
    assert seq == 0 and report.acked is True and report.state == states.SUCCESS


def test_without_ack_the_parent_acks(app: Liteq, add: Any, db_path: Path) -> None:
    result = add.delay(2, 3)
    server, sent = _server(app, db_path)
    server.run_batch([(0, _claim(app))])
    [(_, [(_, report)], _, _, _)] = sent.messages
    assert report.acked is None
    assert result.state == states.RECEIVED  # claimed; not acked yet


def test_an_ack_after_the_lease_was_lost_reports_that_it_did_not_apply(
    app: Liteq, add: Any, db_path: Path
) -> None:
    result = add.delay(2, 3)
    claimed = _claim(app)
    # Another worker's recovery took the task back meanwhile.
    app.storage.broker.give_back([claimed])
    server, sent = _server(app, db_path)
    server.run_batch([(0, claimed)], ack=True)
    [(_, [(_, report)], _, _, _)] = sent.messages
    assert report.acked is False
    assert result.state != states.SUCCESS


def test_a_failed_ack_is_left_to_the_parent(
    app: Liteq, add: Any, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add.delay(2, 3)
    claimed = _claim(app)

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseLocked("database is locked")

    monkeypatch.setattr(app.storage, "complete", locked)
    server, sent = _server(app, db_path)
    server.run_batch([(0, claimed)], ack=True)
    [(_, [(_, report)], _, _, _)] = sent.messages
    # Nothing was stored here: the report still carries the outcome.
    assert report.acked is None and report.state == states.SUCCESS
    assert report.completion.result is not None
