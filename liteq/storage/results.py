"""The result backend: one row per task in ``liteq_result``, plus state events.

Final states (SUCCESS, FAILURE, REVOKED) and the latest state live in
``liteq_result``; every non-final state change (STARTED, RETRY, PROGRESS and
other custom states) is also appended to ``liteq_event`` so a waiter sees
each change in order, even ones that were overwritten before it looked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .broker import BY_TASK_ID, task_key
from .db import Database


@dataclass(frozen=True)
class ResultRow:
    """A task's stored state; payload bytes are opaque here."""

    task_id: str
    status: str
    result: bytes | None = None
    content_type: str | None = None
    traceback: str | None = None
    name: str | None = None
    args: bytes | None = None
    kwargs: bytes | None = None
    queue: str | None = None
    worker: str | None = None
    retries: int | None = None
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    children: list[Any] | None = None
    raw_message: bytes | None = None
    date_done: float | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class EventRow:
    """One non-final state change."""

    id: int
    task_id: str
    status: str
    result: bytes | None
    content_type: str | None
    created_at: float


@dataclass
class GroupRow:
    """A saved group or chord."""

    group_id: str
    task_ids: list[str] = field(default_factory=list)
    remaining: int | None = None
    body: bytes | None = None
    content_type: str | None = None
    date_done: float | None = None
    expires_at: float | None = None


_COLUMNS = (
    "task_id, status, result, content_type, traceback, name, args, kwargs, queue, worker, "
    "retries, parent_id, root_id, group_id, children, raw_message, date_done, expires_at"
)
_UPSERT = (
    f"INSERT INTO liteq_result({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(task_id) DO UPDATE SET status = excluded.status, result = excluded.result, "
    "content_type = excluded.content_type, traceback = excluded.traceback, "
    "name = COALESCE(excluded.name, name), args = COALESCE(excluded.args, args), "
    "kwargs = COALESCE(excluded.kwargs, kwargs), queue = COALESCE(excluded.queue, queue), "
    "worker = COALESCE(excluded.worker, worker), retries = COALESCE(excluded.retries, retries), "
    "parent_id = COALESCE(excluded.parent_id, parent_id), "
    "root_id = COALESCE(excluded.root_id, root_id), "
    "group_id = COALESCE(excluded.group_id, group_id), "
    "children = COALESCE(excluded.children, children), "
    "raw_message = COALESCE(excluded.raw_message, raw_message), "
    "date_done = excluded.date_done, expires_at = excluded.expires_at"
)
_EVENT = "INSERT INTO liteq_event(task_id, status, result, content_type, created_at) VALUES (?,?,?,?,?)"


def result_params(row: ResultRow) -> tuple[Any, ...]:
    """Return the parameters of the upsert statement for ``row``."""
    return (
        row.task_id,
        row.status,
        row.result,
        row.content_type,
        row.traceback,
        row.name,
        row.args,
        row.kwargs,
        row.queue,
        row.worker,
        row.retries,
        row.parent_id,
        row.root_id,
        row.group_id,
        json.dumps(row.children) if row.children is not None else None,
        row.raw_message,
        row.date_done,
        row.expires_at,
    )


def _row(r: Sequence[Any]) -> ResultRow:
    return ResultRow(
        task_id=r[0],
        status=r[1],
        result=r[2],
        content_type=r[3],
        traceback=r[4],
        name=r[5],
        args=r[6],
        kwargs=r[7],
        queue=r[8],
        worker=r[9],
        retries=r[10],
        parent_id=r[11],
        root_id=r[12],
        group_id=r[13],
        children=json.loads(r[14]) if r[14] else None,
        raw_message=r[15],
        date_done=r[16],
        expires_at=r[17],
    )


class Results:
    """Result-backend verbs over one :class:`Database`."""

    upsert_sql = _UPSERT
    event_sql = _EVENT

    def __init__(self, db: Database) -> None:
        self.db = db

    def store(self, row: ResultRow, event: bool = False) -> None:
        """Store a task's state (and, with ``event``, append it to the event log).

        Raises:
            StorageError: the write failed.
        """
        with self.db.write() as conn:
            conn.execute(_UPSERT, result_params(row))
            if event:
                conn.execute(
                    _EVENT,
                    (
                        row.task_id,
                        row.status,
                        row.result,
                        row.content_type,
                        row.date_done or 0.0,
                    ),
                )

    def get(self, task_id: str) -> ResultRow | None:
        """Return the stored state of ``task_id``, or None if nothing is stored."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM liteq_result WHERE task_id = ?", (task_id,)
        )
        return _row(rows[0]) if rows else None

    def get_many(self, task_ids: Sequence[str]) -> dict[str, ResultRow]:
        """Return the stored states of many tasks, keyed by id (missing ids absent)."""
        if not task_ids:
            return {}
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM liteq_result WHERE task_id IN "
            "(SELECT value FROM json_each(?))",
            (json.dumps(list(task_ids)),),
        )
        return {r[0]: _row(r) for r in rows}

    def events_since(self, task_id: str, after_id: int = 0) -> list[EventRow]:
        """Return the non-final state changes of ``task_id`` after event ``after_id``."""
        rows = self.db.execute(
            "SELECT id, task_id, status, result, content_type, created_at FROM liteq_event "
            "WHERE task_id = ? AND id > ? ORDER BY id",
            (task_id, after_id),
        )
        return [EventRow(*r) for r in rows]

    def exists(self, task_id: str) -> bool:
        """Return True if ``task_id`` is queued, running or has a stored state."""
        row = self.db.query_one(
            "SELECT EXISTS(SELECT 1 FROM liteq_result WHERE task_id = ?) "
            f"OR EXISTS(SELECT 1 FROM liteq_task WHERE {BY_TASK_ID})",
            (task_id, *task_key(task_id)),
        )
        return bool(row and row[0])

    def forget(self, task_ids: Iterable[str]) -> None:
        """Delete the stored state (and events) of the given tasks."""
        ids = json.dumps(list(task_ids))
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM liteq_result WHERE task_id IN (SELECT value FROM json_each(?))",
                (ids,),
            )
            conn.execute(
                "DELETE FROM liteq_event WHERE task_id IN (SELECT value FROM json_each(?))",
                (ids,),
            )

    def expire(self, now: float, batch: int = 1000) -> int:
        """Delete results (and their events and groups) whose ``expires_at`` passed.

        Works in batches, each its own short transaction, so workers are never
        blocked for long.

        Returns:
            The number of results deleted.
        """
        total = 0
        while True:
            with self.db.write() as conn:
                ids = [
                    r[0]
                    for r in conn.execute(
                        "DELETE FROM liteq_result WHERE task_id IN (SELECT task_id FROM "
                        "liteq_result WHERE expires_at < ? LIMIT ?) RETURNING task_id",
                        (now, batch),
                    ).fetchall()
                ]
                if ids:
                    conn.execute(
                        "DELETE FROM liteq_event WHERE task_id IN (SELECT value FROM json_each(?))",
                        (json.dumps(ids),),
                    )
                conn.execute("DELETE FROM liteq_group WHERE expires_at < ?", (now,))
                conn.execute("DELETE FROM liteq_revoked WHERE expires_at < ?", (now,))
            total += len(ids)
            if len(ids) < batch:
                return total

    # -- groups ------------------------------------------------------------------------
    def save_group(self, group: GroupRow, now: float) -> None:
        """Store (or replace) a group's member ids (and chord body/counter)."""
        self.db.run_write(
            "INSERT INTO liteq_group(group_id, task_ids, remaining, body, content_type, date_done, "
            "expires_at, created_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(group_id) DO UPDATE SET "
            "task_ids = excluded.task_ids, remaining = excluded.remaining, body = excluded.body, "
            "content_type = excluded.content_type, expires_at = excluded.expires_at",
            (
                group.group_id,
                json.dumps(group.task_ids),
                group.remaining,
                group.body,
                group.content_type,
                group.date_done,
                group.expires_at,
                now,
            ),
        )

    def get_group(self, group_id: str) -> GroupRow | None:
        """Return a saved group, or None."""
        row = self.db.query_one(
            "SELECT group_id, task_ids, remaining, body, content_type, date_done, expires_at "
            "FROM liteq_group WHERE group_id = ?",
            (group_id,),
        )
        if row is None:
            return None
        return GroupRow(
            row[0], json.loads(row[1] or "[]"), row[2], row[3], row[4], row[5], row[6]
        )

    def delete_group(self, group_id: str) -> None:
        """Delete a saved group (its members' results stay)."""
        self.db.run_write("DELETE FROM liteq_group WHERE group_id = ?", (group_id,))

    def recent_failures(self, limit: int = 10) -> list[ResultRow]:
        """Return the latest FAILURE results, newest first."""
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM liteq_result WHERE status = 'FAILURE' "
            "ORDER BY date_done DESC LIMIT ?",
            (limit,),
        )
        return [_row(r) for r in rows]

    def related(self, ids: Sequence[str], limit: int = 200) -> list[ResultRow]:
        """Return results whose root, parent or group id is one of ``ids``.

        For inspection (``liteq result``'s workflow tree); scans the table.
        """
        if not ids:
            return []
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM liteq_result WHERE root_id IN (SELECT value FROM "
            "json_each(?1)) OR parent_id IN (SELECT value FROM json_each(?1)) "
            "OR group_id IN (SELECT value FROM json_each(?1)) LIMIT ?2",
            (json.dumps(list(ids)), limit),
        )
        return [_row(r) for r in rows]
