"""Counting a worker's reads and writes of the queue, for tests of when it claims."""

from __future__ import annotations

from typing import Any

import pytest

from liteq import Liteq


class StorageCalls:
    """Records the probes, claims and separate acks made through ``app.storage``."""

    def __init__(self, app: Liteq, monkeypatch: pytest.MonkeyPatch) -> None:
        self.probes = 0
        #: One ``(outcomes acked, tasks claimed)`` per claim transaction.
        self.claims: list[tuple[int, int]] = []
        #: Ack transactions without a claim.
        self.acks = 0
        idle_facts = app.storage.broker.idle_facts
        complete_and_claim = app.storage.complete_and_claim
        complete = app.storage.complete

        def probe(queues: Any) -> Any:
            self.probes += 1
            return idle_facts(queues)

        def claim(items: Any, *args: Any) -> Any:
            applied, claimed, revoked = complete_and_claim(items, *args)
            self.claims.append((len(items), len(claimed)))
            return applied, claimed, revoked

        def ack(items: Any, now: float) -> Any:
            self.acks += 1
            return complete(items, now)

        monkeypatch.setattr(app.storage.broker, "idle_facts", probe)
        monkeypatch.setattr(app.storage, "complete_and_claim", claim)
        monkeypatch.setattr(app.storage, "complete", ack)

    def reset(self) -> None:
        self.probes, self.claims, self.acks = 0, [], 0
