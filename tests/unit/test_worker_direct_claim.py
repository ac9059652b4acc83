"""After a commit wakes it, the worker claims without the probe while that pays."""

from __future__ import annotations

from typing import Any

import pytest

from liteq import Liteq
from liteq.worker import Worker
from tests.storagecalls import StorageCalls


def _woken_step(worker: Worker) -> float:
    worker.woken_by_commit = True  # as the run loop sets it
    return worker.step()


def _after_a_woken_claim_found_work(worker: Worker, add: Any) -> None:
    """Bring ``worker`` to idle, its last commit wake-up's claim having found a task."""
    worker.step()
    worker.step()
    add.delay(1, 1)
    _woken_step(worker)
    worker.step()


def test_a_commit_wake_after_one_that_found_work_claims_without_probing(
    app: Liteq, worker: Worker, add: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker.step()
    worker.step()  # idle now: the next claims are probed
    calls = StorageCalls(app, monkeypatch)
    first = add.delay(1, 1)
    assert _woken_step(worker) == 0.0
    assert (calls.probes, len(calls.claims)) == (1, 1)  # no track record yet
    assert first.get(timeout=0) == 2

    calls.reset()
    second = add.delay(2, 2)
    assert _woken_step(worker) == 0.0
    assert (calls.probes, len(calls.claims)) == (0, 1)
    assert second.get(timeout=0) == 4


def test_a_direct_claim_that_finds_nothing_brings_the_probe_back(
    app: Liteq, worker: Worker, add: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _after_a_woken_claim_found_work(worker, add)
    calls = StorageCalls(app, monkeypatch)
    # A commit that queued nothing (another worker's ack, a result read...).
    assert _woken_step(worker) == pytest.approx(worker.fallback_poll)
    assert len(calls.claims) == 1
    calls.reset()
    commits = app.storage.db.commits
    assert _woken_step(worker) == pytest.approx(worker.fallback_poll)
    assert (calls.probes, len(calls.claims)) == (1, 0)
    assert app.storage.db.commits == commits  # idle wake-ups write nothing


def test_wake_ups_other_than_commits_always_probe(
    app: Liteq, worker: Worker, add: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _after_a_woken_claim_found_work(worker, add)
    calls = StorageCalls(app, monkeypatch)
    result = add.delay(2, 2)
    assert worker.step() == 0.0  # a timer or the pool woke it
    assert (calls.probes, len(calls.claims)) == (1, 1)
    assert result.get(timeout=0) == 4
