"""The schedule store: beat entries in ``liteq_schedule`` and the fire transaction.

Rows hold a schedule's definition (task, schedule as JSON, arguments,
options) and its run state (``last_run_at``, ``next_run_at``,
``total_run_count``, ``last_task_id``). Times are epoch seconds.

Exactly-once firing (:meth:`BeatStore.fire_due`) happens in ONE ``BEGIN
IMMEDIATE`` transaction: read the due rows, advance each row's ``next_run_at``
with a compare-and-set on the value just read, and insert the task rows with
the unique key ``beat:<name>:<fire time>``. A second beat that runs right after
reads the advanced ``next_run_at`` and does nothing; a crash before COMMIT
leaves no trace, so nothing is skipped either. The unique key is a second
guard (it frees itself once the task row is deleted after running).

This module knows nothing of schedule values: the caller decides what a due
row fires and where its ``next_run_at`` moves (a ``decide`` callback).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..serialization import canonical_json, json_loads
from .broker import Broker, NewTask
from .db import Database

#: ``source`` of entries synced from ``beat_schedule``.
SOURCE_CONFIG = "config"
#: ``source`` of entries added at runtime (``app.schedules.add``, the CLI).
SOURCE_API = "api"

_COLUMNS = (
    "name, task, schedule, args, kwargs, options, queue, priority, enabled, source, "
    "catch_up, definition_hash, last_run_at, next_run_at, total_run_count, "
    "last_task_id, updated_at"
)


@dataclass(frozen=True)
class ScheduleRow:
    """One stored schedule entry.

    Attributes:
        name: Unique name of the entry.
        task: Name of the task it sends.
        schedule: The schedule's definition (``BaseSchedule.to_dict()``).
        args: Positional arguments of the task.
        kwargs: Keyword arguments of the task.
        options: Other calling options (``expires``, ``headers``...).
        queue: Queue to send to (None: the task's routing decides).
        priority: Priority 0..255 (None: the task's default).
        enabled: Disabled entries never fire.
        source: :data:`SOURCE_CONFIG` or :data:`SOURCE_API`.
        catch_up: ``"once"``, ``"all"`` or ``"skip"``.
        definition_hash: Digest of the definition (config sync compares it).
        last_run_at: Fire time of the last run (epoch s), None if never run.
        next_run_at: When it is due next (epoch s); None: never again.
        total_run_count: How many times it fired.
        last_task_id: Id of the last task it sent.
        updated_at: When the row last changed (epoch s).
    """

    name: str
    task: str
    schedule: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    queue: str | None
    priority: int | None
    enabled: bool
    source: str
    catch_up: str
    definition_hash: str
    last_run_at: float | None
    next_run_at: float | None
    total_run_count: int
    last_task_id: str | None
    updated_at: float

    @property
    def schedule_json(self) -> str:
        """The schedule definition as stored (canonical JSON)."""
        return dumps(self.schedule)


@dataclass(frozen=True)
class Definition:
    """What a schedule entry *is*, without its run state (config or API input).

    Attributes:
        next_run_at: The first due time, used when the entry is new or its
            schedule changed.
    """

    name: str
    task: str
    schedule: dict[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    queue: str | None
    priority: int | None
    catch_up: str
    definition_hash: str
    next_run_at: float | None
    source: str = SOURCE_CONFIG
    enabled: bool = True


@dataclass
class Fire:
    """What one due row does, decided by beat inside the fire transaction.

    Attributes:
        tasks: Task rows to insert (each with its ``beat:`` unique key); empty
            when the occurrence is skipped.
        last_run_at: The new ``last_run_at`` (None: unchanged).
        next_run_at: The new ``next_run_at`` (None: the entry never fires again).
    """

    tasks: list[NewTask]
    last_run_at: float | None
    next_run_at: float | None


@dataclass(frozen=True)
class Fired:
    """What :meth:`BeatStore.fire_due` did for one row.

    Attributes:
        row: The row as it was read (before the update).
        fire: The decision that was applied.
        inserted: Task ids actually inserted (a unique-key duplicate is left out).
    """

    row: ScheduleRow
    fire: Fire
    inserted: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SyncReport:
    """What :meth:`BeatStore.sync` changed (entry names)."""

    added: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: list[str]


@dataclass(frozen=True)
class LeaseInfo:
    """The holder of a named lease."""

    owner: str
    expires_at: float
    acquired_at: float


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): equal values give equal text.

    Dates, times, decimals, UUIDs and bytes are kept with Celery's type tags,
    as in task messages, so an entry's arguments reach its task unchanged.

    Raises:
        TypeError: the value is not JSON-serializable.
    """
    return canonical_json(value)


def _row(r: Sequence[Any]) -> ScheduleRow:
    return ScheduleRow(
        name=r[0],
        task=r[1],
        schedule=json.loads(r[2]),
        args=json_loads(r[3] or "[]"),
        kwargs=json_loads(r[4] or "{}"),
        options=json_loads(r[5] or "{}"),
        queue=r[6],
        priority=r[7],
        enabled=bool(r[8]),
        source=r[9],
        catch_up=r[10],
        definition_hash=r[11],
        last_run_at=r[12],
        next_run_at=r[13],
        total_run_count=r[14],
        last_task_id=r[15],
        updated_at=r[16],
    )


class BeatStore:
    """Schedule verbs over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._broker = Broker(db)

    # -- reading -----------------------------------------------------------------------
    def get(self, name: str) -> ScheduleRow | None:
        """Return the entry ``name``, or None."""
        row = self.db.query_one(
            f"SELECT {_COLUMNS} FROM liteq_schedule WHERE name = ?", (name,)
        )
        return None if row is None else _row(row)

    def all(self) -> list[ScheduleRow]:
        """Return every entry, by name."""
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM liteq_schedule ORDER BY name")
        return [_row(r) for r in rows]

    def next_due_at(self) -> float | None:
        """Return the earliest ``next_run_at`` of an enabled entry (None: nothing pending).

        A read on the partial index, so idle beats never take the write lock.
        """
        row = self.db.query_one(
            "SELECT MIN(next_run_at) FROM liteq_schedule WHERE enabled = 1"
        )
        return None if row is None or row[0] is None else float(row[0])

    def lease(self, name: str) -> LeaseInfo | None:
        """Return who holds the lease ``name`` (possibly expired), or None."""
        row = self.db.query_one(
            "SELECT owner, expires_at, acquired_at FROM liteq_lease WHERE name = ?",
            (name,),
        )
        return None if row is None else LeaseInfo(row[0], row[1], row[2])

    # -- firing --------------------------------------------------------------------------
    def fire_due(
        self,
        now: float,
        decide: Callable[[ScheduleRow], Fire],
        limit: int = 100,
        report: Callable[[Fired], None] | None = None,
    ) -> list[Fired]:
        """Fire every enabled entry due at ``now``, exactly once, in one transaction.

        For each due row (earliest first, at most ``limit``), ``decide(row)``
        says which tasks to insert and where ``next_run_at`` moves. The row is
        updated only if its ``next_run_at`` still holds the value read
        (compare-and-set), and only then are the tasks inserted, with
        ``ON CONFLICT (unique_key) DO NOTHING``. ``report(fired)`` is called
        for each advanced row before the commit (so a log line about the send
        comes before anything a worker logs about the task).

        Returns:
            One :class:`Fired` per row that was advanced.

        Raises:
            StorageError: the transaction failed; nothing was written.
        """
        done: list[Fired] = []
        with self.db.write() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM liteq_schedule WHERE enabled = 1 "
                "AND next_run_at <= ? ORDER BY next_run_at, name LIMIT ?",
                (now, limit),
            ).fetchall()
            for raw in rows:
                row = _row(raw)
                fire = decide(row)
                last_id = fire.tasks[-1].task_id if fire.tasks else None
                cur = conn.execute(
                    "UPDATE liteq_schedule SET last_run_at = COALESCE(?, last_run_at), "
                    "next_run_at = ?, total_run_count = total_run_count + ?, "
                    "last_task_id = COALESCE(?, last_task_id), updated_at = ? "
                    "WHERE name = ? AND enabled = 1 AND next_run_at = ?",
                    (
                        fire.last_run_at,
                        fire.next_run_at,
                        len(fire.tasks),
                        last_id,
                        now,
                        row.name,
                        row.next_run_at,
                    ),
                )
                if cur.rowcount != 1:
                    continue
                inserted: list[str] = []
                for task in fire.tasks:
                    if self._broker.insert_in(conn, Broker._row(task, now)):
                        inserted.append(task.task_id)
                done.append(Fired(row, fire, inserted))
                if report is not None:
                    report(done[-1])
        return done

    def run_now(self, name: str, task: NewTask, now: float) -> bool:
        """Send ``task`` for entry ``name`` now, leaving its schedule as it is.

        Returns:
            False if there is no such entry (nothing is sent).
        """
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE liteq_schedule SET total_run_count = total_run_count + 1, "
                "last_task_id = ?, updated_at = ? WHERE name = ?",
                (task.task_id, now, name),
            )
            if cur.rowcount != 1:
                return False
            self._broker.insert_in(conn, Broker._row(task, now))
        return True

    # -- defining ------------------------------------------------------------------------
    def sync(self, definitions: Sequence[Definition], now: float) -> SyncReport:
        """Make the configuration's entries the stored ``config`` entries, atomically.

        New names are added. An entry whose ``definition_hash`` changed is
        updated; its run state is kept, and its ``next_run_at`` is reset to
        the definition's only if the schedule itself changed. Entries from
        configuration that are no longer in it are deleted. Entries added at
        runtime (``source="api"``) are left alone, unless the configuration
        now defines the same name: then the configuration's entry replaces it.

        Returns:
            Which names were added, updated, removed and left unchanged.
        """
        added: list[str] = []
        updated: list[str] = []
        unchanged: list[str] = []
        with self.db.write() as conn:
            for d in definitions:
                outcome = self._upsert(conn, d, now)
                {"added": added, "updated": updated, "unchanged": unchanged}[
                    outcome
                ].append(d.name)
            removed = [
                r[0]
                for r in conn.execute(
                    "DELETE FROM liteq_schedule WHERE source = ? AND name NOT IN "
                    "(SELECT value FROM json_each(?)) RETURNING name",
                    (SOURCE_CONFIG, json.dumps([d.name for d in definitions])),
                ).fetchall()
            ]
        return SyncReport(added, updated, sorted(removed), unchanged)

    def put(self, definition: Definition, now: float) -> str:
        """Add or replace one entry (kept run state as in :meth:`sync`).

        Returns:
            ``"added"``, ``"updated"`` or ``"unchanged"``.
        """
        with self.db.write() as conn:
            return self._upsert(conn, definition, now)

    def _upsert(self, conn: Any, d: Definition, now: float) -> str:
        existing = conn.execute(
            "SELECT definition_hash, schedule, source FROM liteq_schedule WHERE name = ?",
            (d.name,),
        ).fetchone()
        schedule_json = dumps(d.schedule)
        definition = (
            d.task,
            schedule_json,
            dumps(d.args),
            dumps(d.kwargs),
            dumps(d.options),
            d.queue,
            d.priority,
            d.source,
            d.catch_up,
            d.definition_hash,
            now,
        )
        if existing is None:
            conn.execute(
                "INSERT INTO liteq_schedule(task, schedule, args, kwargs, options, queue, "
                "priority, source, catch_up, definition_hash, updated_at, name, enabled, "
                "next_run_at, total_run_count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)",
                (*definition, d.name, int(d.enabled), d.next_run_at),
            )
            return "added"
        if existing[0] == d.definition_hash and existing[2] == d.source:
            return "unchanged"
        conn.execute(
            "UPDATE liteq_schedule SET task = ?, schedule = ?, args = ?, kwargs = ?, "
            "options = ?, queue = ?, priority = ?, source = ?, catch_up = ?, "
            "definition_hash = ?, updated_at = ? WHERE name = ?",
            (*definition, d.name),
        )
        if existing[1] != schedule_json:
            conn.execute(
                "UPDATE liteq_schedule SET next_run_at = ? WHERE name = ?",
                (d.next_run_at, d.name),
            )
        return "updated"

    def remove(self, name: str) -> bool:
        """Delete the entry ``name``; return False if there was none."""
        rows = self.db.run_write(
            "DELETE FROM liteq_schedule WHERE name = ? RETURNING name", (name,)
        )
        return bool(rows)

    def set_enabled(
        self, name: str, enabled: bool, now: float, next_run_at: float | None = None
    ) -> bool:
        """Enable or disable the entry ``name``.

        A disabled entry being enabled starts afresh at ``next_run_at`` (the
        occurrences it missed while disabled are not caught up); enabling an
        enabled entry changes nothing.

        Returns:
            False if there is no such entry.
        """
        if enabled:
            rows = self.db.run_write(
                "UPDATE liteq_schedule SET next_run_at = CASE WHEN enabled = 1 "
                "THEN next_run_at ELSE ? END, enabled = 1, updated_at = ? "
                "WHERE name = ? RETURNING name",
                (next_run_at, now, name),
            )
        else:
            rows = self.db.run_write(
                "UPDATE liteq_schedule SET enabled = 0, updated_at = ? WHERE name = ? "
                "RETURNING name",
                (now, name),
            )
        return bool(rows)


__all__ = [
    "SOURCE_API",
    "SOURCE_CONFIG",
    "BeatStore",
    "Definition",
    "Fire",
    "Fired",
    "LeaseInfo",
    "ScheduleRow",
    "SyncReport",
    "dumps",
]
