"""Storage: the one SQLite file that is broker, result backend and schedule store.

:class:`Storage` bundles the verbs of :mod:`.broker` and :mod:`.results` and
adds the ones that must touch both in one transaction: finishing a task and
storing its result (``complete``), revoking, and recovering lost tasks.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .broker import (
    BY_TASK_ID,
    Broker,
    Claimed,
    Lost,
    NewTask,
    Recovery,
    task_key,
)
from .db import Database, translate_error, wait_for_lock
from .results import EventRow, GroupRow, ResultRow, Results, result_params
from .schema import READY, RUNNING, SCHEDULED, Models, ensure_schema, make_models


def _bind_none_and_bytes_fast() -> None:
    """Register identity adapters for None and bytes with the sqlite3 module.

    CPython's sqlite3 binds int, float and str directly but looks every other
    value up as an adapter first, and a miss costs a failed attribute lookup
    that builds and drops an exception: ~0.5-1 µs per None or bytes value,
    measured here, which made up half of a result upsert's cost (its row has
    eight NULLs). A registered adapter is found in one dict lookup. These
    return their argument, so what is stored does not change; an adapter
    already registered (by the application) is left alone.
    """
    if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(type(None), lambda _: None)
    if (bytes, sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(bytes, bytes)


_bind_none_and_bytes_fast()

#: A row written with a task's ack: a task to enqueue, a chord counter, a result.
FollowupRow = NewTask | GroupRow | ResultRow

#: ``chord_hook(conn, group_id, failed, now) -> (rows to write, results to store)``
#: runs inside the transaction that finished the chord's last (or failing) part.
ChordHook = Callable[
    [sqlite3.Connection, str, "ResultRow | None", float],
    "tuple[list[FollowupRow], list[ResultRow]]",
]


@dataclass
class Completion:
    """How one claimed (or eager) task ended, applied atomically by ``complete``.

    Attributes:
        task_id: The task.
        claimed: The claim, or None for a task that never was in the queue.
        result: State to store; None stores nothing (``ignore_result``).
        event: Also append ``result`` to the event log (non-final states).
        retry_eta: Reschedule the row at this time (epoch s) instead of deleting it.
        retry_message: The message to store for the next attempt.
        requeue: Put the row back to READY (``Reject(requeue=True)``).
        followups: Rows to write in the same transaction: tasks to enqueue
            (callbacks, the next chain step), chord counters, results (the
            chain steps a failure cancels).
        chord_group: The chord whose counter this part decrements.
        chord_failed: This part failed: end the chord now.
    """

    task_id: str
    claimed: Claimed | None = None
    result: ResultRow | None = None
    event: bool = False
    retry_eta: float | None = None
    retry_message: bytes | None = None
    requeue: bool = False
    followups: list[FollowupRow] = field(default_factory=list)
    chord_group: str | None = None
    chord_failed: bool = False


def _plain(item: Completion) -> bool:
    """Is ``item`` a claimed task's final ack with at most a result (no event)?"""
    return (
        item.claimed is not None
        and item.retry_eta is None
        and not item.requeue
        and not item.followups
        and item.chord_group is None
        and not item.event
    )


#: Acks the claims of one token; returns the ids whose lease was still held.
_DELETE_CLAIMED = (
    "DELETE FROM liteq_task WHERE claim_token = ? AND state = 2 "
    "AND id IN (SELECT value FROM json_each(?)) RETURNING id"
)
_ANY_REVOKED = "SELECT 1 FROM liteq_revoked LIMIT 1"
_REVOKED_AMONG = "SELECT task_id FROM liteq_revoked WHERE task_id IN (SELECT value FROM json_each(?))"


@dataclass(frozen=True)
class WorkerRow:
    """A registered worker."""

    worker_id: str
    hostname: str
    pid: int
    pid_starttime: int | None
    boot_id: str | None
    queues: list[str]
    concurrency: int
    info: dict[str, Any]
    started_at: float
    heartbeat_at: float


class Storage:
    """Every storage verb over one database file.

    Args:
        path: The SQLite file.
        durable: ``synchronous=FULL`` instead of NORMAL.
        busy_timeout: Seconds to wait for the write lock.
    """

    def __init__(
        self, path: str, durable: bool = False, busy_timeout: float = 5.0
    ) -> None:
        self.db = Database(path, durable=durable, busy_timeout=busy_timeout)
        self.models: Models = make_models(self.db.pw)
        self.db.on_open(lambda db: ensure_schema(self.models, db.connection(), db.path))
        self.broker = Broker(self.db)
        self.results = Results(self.db)
        #: Set by the canvas layer: see :data:`ChordHook`.
        self.chord_hook: ChordHook | None = None
        #: Set by the canvas layer: ``chord_of(message, content_type)`` is the
        #: chord that ends when that task ends without running (revoked, lost).
        self.chord_of: Callable[[bytes, str], str | None] | None = None

    @property
    def path(self) -> str:
        """Absolute path of the database file."""
        return self.db.path

    # -- finishing tasks ------------------------------------------------------------------
    def complete(self, items: Sequence[Completion], now: float) -> list[bool]:
        """Apply many task outcomes in one transaction (group commit).

        For each item, the queue row is deleted (or rescheduled/requeued),
        fenced by its claim token; only if that succeeded is the result stored,
        its follow-up tasks enqueued and its chord counter decremented. So an
        outcome from a worker that lost its lease changes nothing.

        Returns:
            Per item, True if it was applied, False if its lease was lost.

        Raises:
            StorageError: the transaction failed; nothing was applied.
        """
        with self.db.write() as conn:
            return self._complete_in(conn, items, now)

    def complete_and_claim(
        self,
        items: Sequence[Completion],
        now: float,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        lease: float,
    ) -> tuple[list[bool], list[Claimed], set[str]]:
        """:meth:`complete` ``items``, then :meth:`claim` up to ``limit`` tasks, in ONE transaction.

        A worker's round: one commit instead of two, and the pages both
        touch (the running-task indexes, the file header) are written once.
        Each half keeps its own guarantees; if the transaction fails,
        neither happened. The claimed ids are looked up in the revoke list
        in the same transaction (:meth:`revoked_among` without a read of
        its own).

        Returns:
            ``(applied, claimed, revoked)``: per item, True if it was
            applied; the claims; the ids among them that were revoked.

        Raises:
            StorageError: the transaction failed; nothing was applied or claimed.
        """
        with self.db.write() as conn:
            # Both halves write on the round's own transaction, without a
            # savepoint each (which would copy every page it touches): if
            # either fails, the whole round rolls back.
            applied = self._complete_in(conn, items, now) if items else []
            claimed = self.broker.claim_in(conn, worker_id, queues, limit, now, lease)
            revoked = self._revoked_in(conn, claimed) if claimed else set()
        return applied, claimed, revoked

    def _complete_in(
        self, conn: sqlite3.Connection, items: Sequence[Completion], now: float
    ) -> list[bool]:
        applied = [False] * len(items)
        i, n = 0, len(items)
        while i < n:
            # A run of plain acks is applied with a few statements; other
            # items one by one, in order, so every effect keeps its place.
            j = i
            while j < n and _plain(items[j]):
                j += 1
            if j - i > 1:
                self._complete_plain(conn, items, i, j, applied)
                i = j
            else:
                applied[i] = self._complete_one(conn, items[i], now)
                i += 1
        return applied

    @staticmethod
    def _complete_plain(
        conn: sqlite3.Connection,
        items: Sequence[Completion],
        start: int,
        end: int,
        applied: list[bool],
    ) -> None:
        """Ack ``items[start:end]`` (all :func:`_plain`) and store their results."""
        by_token: dict[int, list[int]] = {}
        for k in range(start, end):
            claimed = items[k].claimed
            assert claimed is not None
            by_token.setdefault(claimed.claim_token, []).append(claimed.id)
        gone: set[int] = set()
        for token, ids in by_token.items():
            gone.update(
                r[0]
                for r in conn.execute(
                    _DELETE_CLAIMED, (token, json.dumps(ids))
                ).fetchall()
            )
        results = []
        for k in range(start, end):
            item = items[k]
            claimed = item.claimed
            assert claimed is not None
            if claimed.id in gone:
                # Only once: a second item for the same claim is not applied.
                gone.discard(claimed.id)
                applied[k] = True
                if item.result is not None:
                    results.append(result_params(item.result))
        if results:
            conn.executemany(Results.upsert_sql, results)

    def _complete_one(
        self, conn: sqlite3.Connection, item: Completion, now: float
    ) -> bool:
        claimed = item.claimed
        if claimed is not None:
            if item.retry_eta is not None:
                state = SCHEDULED if item.retry_eta > now else READY
                cur = conn.execute(
                    "UPDATE liteq_task SET state = ?, eta = ?, retries = retries + 1, "
                    "message = COALESCE(?, message), worker_id = NULL, claim_token = NULL, "
                    "lease_until = NULL, started_at = NULL, deliveries = 0 "
                    "WHERE id = ? AND claim_token = ? AND state = 2",
                    (
                        state,
                        item.retry_eta,
                        item.retry_message,
                        claimed.id,
                        claimed.claim_token,
                    ),
                )
            elif item.requeue:
                cur = conn.execute(
                    "UPDATE liteq_task SET state = 1, worker_id = NULL, claim_token = NULL, "
                    "lease_until = NULL, started_at = NULL WHERE id = ? AND claim_token = ? "
                    "AND state = 2",
                    (claimed.id, claimed.claim_token),
                )
            else:
                cur = conn.execute(
                    "DELETE FROM liteq_task WHERE id = ? AND claim_token = ? AND state = 2",
                    (claimed.id, claimed.claim_token),
                )
            if cur.rowcount != 1:
                return False
        if item.result is not None:
            conn.execute(Results.upsert_sql, result_params(item.result))
            if item.event:
                r = item.result
                conn.execute(
                    Results.event_sql,
                    (r.task_id, r.status, r.result, r.content_type, now),
                )
        self._write_rows(conn, item.followups, now)
        if item.chord_group is not None:
            self._chord_part_done(
                conn, item.chord_group, item.result if item.chord_failed else None, now
            )
        return True

    def _chord_part_done(
        self,
        conn: sqlite3.Connection,
        group_id: str,
        failed: ResultRow | None,
        now: float,
    ) -> None:
        if failed is not None:
            row = conn.execute(
                "UPDATE liteq_group SET remaining = -1 WHERE group_id = ? AND remaining > 0 "
                "RETURNING remaining",
                (group_id,),
            ).fetchall()
        else:
            row = conn.execute(
                "UPDATE liteq_group SET remaining = remaining - 1 WHERE group_id = ? "
                "AND remaining > 0 RETURNING remaining",
                (group_id,),
            ).fetchall()
        fire = bool(row) and (failed is not None or row[0][0] == 0)
        if fire and self.chord_hook is not None:
            rows, results = self.chord_hook(conn, group_id, failed, now)
            self._write_rows(conn, [*rows, *results], now)

    def _end_chord_part(
        self,
        conn: sqlite3.Connection,
        message: bytes | None,
        content_type: str | None,
        ended: ResultRow,
        now: float,
    ) -> None:
        """A task ended without running (revoked, lost): end its chord, which would hang."""
        if self.chord_of is None or message is None or content_type is None:
            return
        group_id = self.chord_of(message, content_type)
        if group_id is not None:
            self._chord_part_done(conn, group_id, ended, now)

    def _write_rows(
        self, conn: sqlite3.Connection, rows: Sequence[FollowupRow], now: float
    ) -> None:
        """Write follow-up rows inside the caller's transaction ``conn``."""
        for row in rows:
            if isinstance(row, NewTask):
                self.broker.insert_in(conn, Broker._row(row, now))
            elif isinstance(row, GroupRow):
                self.results.save_group(row, now)
            else:
                conn.execute(Results.upsert_sql, result_params(row))

    def store_state(self, row: ResultRow, event: bool = True) -> None:
        """Store a task's state outside of completing it (``update_state``, STARTED)."""
        self.results.store(row, event=event)

    # -- claiming ----------------------------------------------------------------------
    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease: float,
    ) -> list[Claimed]:
        """Claim up to ``limit`` tasks; see :meth:`Broker.claim`."""
        return self.broker.claim(worker_id, queues, limit, now, lease)

    # -- revoking ----------------------------------------------------------------------
    def revoke(
        self,
        task_ids: Iterable[str],
        now: float,
        terminate: bool = False,
        signal: str | None = None,
        keep_for: float = 86400.0,
        revoked_result: Callable[[str, str | None], ResultRow] | None = None,
    ) -> dict[str, str]:
        """Revoke tasks, persistently.

        A waiting task is deleted from the queue and (with ``revoked_result``)
        gets its REVOKED result in the same transaction. A running task keeps
        running unless ``terminate``; then its worker is asked to kill it with
        ``signal``. The id is remembered for ``keep_for`` seconds, so a task
        published later with that id, or redelivered, never runs.

        Returns:
            ``{task_id: "revoked" | "terminating" | "running" | "remembered"}``.
        """
        outcome: dict[str, str] = {}
        with self.db.write() as conn:
            for task_id in task_ids:
                conn.execute(
                    "INSERT INTO liteq_revoked(task_id, terminate, signal, expires_at) "
                    "VALUES (?,?,?,?) ON CONFLICT(task_id) DO UPDATE SET "
                    "terminate = excluded.terminate, signal = excluded.signal, "
                    "expires_at = excluded.expires_at",
                    (task_id, int(terminate), signal, now + keep_for),
                )
                gone = conn.execute(
                    f"DELETE FROM liteq_task WHERE {BY_TASK_ID} AND state IN (0, 1) "
                    "RETURNING name, message, content_type",
                    task_key(task_id),
                ).fetchall()
                if gone:
                    if revoked_result is not None:
                        revoked = revoked_result(task_id, gone[0][0])
                        conn.execute(Results.upsert_sql, result_params(revoked))
                        self._end_chord_part(conn, gone[0][1], gone[0][2], revoked, now)
                    outcome[task_id] = "revoked"
                    continue
                if terminate:
                    running = conn.execute(
                        "UPDATE liteq_task SET revoke = 2, revoke_signal = ? "
                        f"WHERE {BY_TASK_ID} AND state = 2 RETURNING id",
                        (signal, *task_key(task_id)),
                    ).fetchall()
                    outcome[task_id] = "terminating" if running else "remembered"
                else:
                    running = conn.execute(
                        f"SELECT 1 FROM liteq_task WHERE {BY_TASK_ID} AND state = 2",
                        task_key(task_id),
                    ).fetchall()
                    outcome[task_id] = "running" if running else "remembered"
        return outcome

    def revoked_among(self, task_ids: Sequence[str]) -> set[str]:
        """Return which of ``task_ids`` are in the persistent revoke list."""
        if not task_ids:
            return set()
        # The list is almost always empty: one cheap probe instead of a
        # lookup of every id (read now, so as current as the lookup would be).
        if len(task_ids) > 1 and not self.db.execute(_ANY_REVOKED):
            return set()
        rows = self.db.execute(_REVOKED_AMONG, (json.dumps(list(task_ids)),))
        return {r[0] for r in rows}

    @staticmethod
    def _revoked_in(conn: sqlite3.Connection, claimed: list[Claimed]) -> set[str]:
        """:meth:`revoked_among` for ``claimed``, inside an open transaction ``conn``."""
        if conn.execute(_ANY_REVOKED).fetchone() is None:
            return set()
        ids = json.dumps([c.task_id for c in claimed])
        rows = conn.execute(_REVOKED_AMONG, (ids,)).fetchall()
        return {r[0] for r in rows}

    def is_revoked(self, task_id: str) -> bool:
        """Return True if ``task_id`` was revoked."""
        return bool(self.revoked_among([task_id]))

    # -- recovery ------------------------------------------------------------------------
    def recover(
        self,
        now: float,
        max_deliveries: int,
        dead_workers: Sequence[str] = (),
        lost_result: Callable[[Lost], ResultRow] | None = None,
        unstarted: Sequence[tuple[str, int, Sequence[int]]] = (),
    ) -> Recovery:
        """Recover expired leases; lost tasks get their FAILURE in the same transaction.

        ``unstarted``: ``(worker_id, claim_token, row ids)`` of tasks the dead
        workers never started, which go back to the queue.
        """
        with self.db.write() as conn:
            requeued, lost = self.broker.recover_in(
                conn, now, max_deliveries, dead_workers, unstarted
            )
            if lost_result is not None:
                for item in lost:
                    row = lost_result(item)
                    conn.execute(Results.upsert_sql, result_params(row))
                    self._end_chord_part(
                        conn, item.message, item.content_type, row, now
                    )
            if dead_workers:
                conn.execute(
                    "DELETE FROM liteq_worker WHERE worker_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(dead_workers)),),
                )
        return Recovery(requeued, lost)

    # -- workers ---------------------------------------------------------------------------
    def register_worker(self, row: WorkerRow) -> None:
        """Insert or refresh a worker's registration."""
        self.db.run_write(
            "INSERT INTO liteq_worker(worker_id, hostname, pid, pid_starttime, boot_id, queues, "
            "concurrency, info, started_at, heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, "
            "info = excluded.info, queues = excluded.queues, concurrency = excluded.concurrency",
            (
                row.worker_id,
                row.hostname,
                row.pid,
                row.pid_starttime,
                row.boot_id,
                json.dumps(row.queues),
                row.concurrency,
                json.dumps(row.info),
                row.started_at,
                row.heartbeat_at,
            ),
        )

    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker's registration (clean shutdown)."""
        self.db.run_write("DELETE FROM liteq_worker WHERE worker_id = ?", (worker_id,))

    def workers(self) -> list[WorkerRow]:
        """Return every registered worker."""
        rows = self.db.execute(
            "SELECT worker_id, hostname, pid, pid_starttime, boot_id, queues, concurrency, info, "
            "started_at, heartbeat_at FROM liteq_worker ORDER BY started_at"
        )
        return [
            WorkerRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                json.loads(r[5]),
                r[6],
                json.loads(r[7] or "{}"),
                r[8],
                r[9],
            )
            for r in rows
        ]

    # -- leases (beat leader, maintenance) ------------------------------------------------
    def acquire_lease(self, name: str, owner: str, now: float, ttl: float) -> bool:
        """Take or renew the named lease; return True if ``owner`` holds it now."""
        rows = self.db.run_write(
            "INSERT INTO liteq_lease(name, owner, expires_at, acquired_at) VALUES (?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at, acquired_at = CASE WHEN liteq_lease.owner = "
            "excluded.owner THEN liteq_lease.acquired_at ELSE excluded.acquired_at END "
            "WHERE liteq_lease.owner = excluded.owner OR liteq_lease.expires_at < ? "
            "RETURNING owner",
            (name, owner, now + ttl, now, now),
        )
        return bool(rows) and rows[0][0] == owner

    def release_lease(self, name: str, owner: str) -> None:
        """Give up the named lease if ``owner`` holds it."""
        self.db.run_write(
            "DELETE FROM liteq_lease WHERE name = ? AND owner = ?", (name, owner)
        )

    # -- rate limits ---------------------------------------------------------------------
    def take_token(self, key: str, rate: float, capacity: float, now: float) -> float:
        """Take one token from the shared bucket ``key`` (refilled at ``rate``/s).

        Returns:
            0.0 if a token was taken, else the seconds until one is available.
        """
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT tokens, updated_at FROM liteq_ratelimit WHERE key = ?", (key,)
            ).fetchone()
            tokens = (
                capacity
                if row is None
                else min(capacity, row[0] + (now - row[1]) * rate)
            )
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / rate
            conn.execute(
                "INSERT INTO liteq_ratelimit(key, tokens, updated_at) VALUES (?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at",
                (key, tokens, now),
            )
        return wait

    # -- maintenance -------------------------------------------------------------------------
    def maintain(self, now: float) -> int:
        """Expire old results, checkpoint the WAL and return free pages to the OS.

        Returns:
            The number of results that expired.
        """
        expired = self.results.expire(now)
        conn = self.db.connection()
        if not conn.in_transaction:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free > 2000:
                # execute() frees one page per call; a script frees them all.
                try:
                    wait_for_lock(
                        lambda: conn.executescript("PRAGMA incremental_vacuum(2000);"),
                        self.db.busy_timeout,
                    )
                except sqlite3.Error as exc:
                    raise translate_error(exc, self.path) from exc
        return expired

    def close(self) -> None:
        """Close this thread's connection."""
        self.db.close()

    def __repr__(self) -> str:
        return f"<Storage {self.path!r}>"


__all__ = [
    "RUNNING",
    "Claimed",
    "Completion",
    "FollowupRow",
    "Database",
    "EventRow",
    "GroupRow",
    "Lost",
    "NewTask",
    "Recovery",
    "ResultRow",
    "Storage",
    "WorkerRow",
]
