"""The queue: enqueue, claim with a lease, give back, retry, recover, revoke.

Every verb is one short transaction with pre-rendered SQL (peewee's query
builder costs ~100x raw SQL per statement). Messages are opaque bytes here.

Delivery semantics:

* a claimed row moves to RUNNING with ``lease_until`` and a random
  ``claim_token`` (fencing token): every later transition of that row names the
  token, so a worker that lost its lease changes nothing;
* an expired lease is recovered by any live worker: ``acks_late`` rows go back
  to READY (counting deliveries, up to a cap), the others are finished as
  FAILURE(WorkerLostError) by the caller;
* priority is 0..255 and higher runs first (AMQP semantics); ties run FIFO.
"""

from __future__ import annotations

import json
import operator
import os
import random
import secrets
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..exceptions import StorageError
from ..messages import SEQ_BITS, rowid_of
from .db import Database
from .schema import READY, RUNNING, SCHEDULED


@dataclass(frozen=True)
class NewTask:
    """A row to insert into the queue."""

    task_id: str
    name: str
    message: bytes
    content_type: str = "application/json"
    queue: str = "celery"
    priority: int = 0
    #: Epoch seconds when the task becomes due (None: now).
    eta: float | None = None
    expires: float | None = None
    acks_late: bool = False
    reject_on_worker_lost: bool = False
    retries: int = 0
    unique_key: str | None = None


class _ClaimedFields(NamedTuple):
    id: int
    task_id: str
    name: str
    queue: str
    priority: int
    message: bytes
    content_type: str
    retries: int
    deliveries: int
    acks_late: bool
    reject_on_worker_lost: bool
    claim_token: int
    eta: float
    expires: float | None
    lease_until: float


class Claimed(_ClaimedFields):
    """A task claimed by a worker, with the fencing token for later transitions.

    A named tuple: the claim statement's rows become claims without copying,
    and a batch of them pickles compactly on its way to a pool process. The
    two flags are stored as SQLite gives them (0/1) and read as bools.
    """

    __slots__ = ()

    @property
    def acks_late(self) -> bool:
        """Whether the task is acknowledged after it ran (at-least-once)."""
        return bool(self[9])

    @property
    def reject_on_worker_lost(self) -> bool:
        """Whether the task goes back to the queue when its pool process dies."""
        return bool(self[10])


@dataclass(frozen=True)
class Lost:
    """A running task whose worker is gone and which will not be re-run."""

    id: int
    task_id: str
    name: str
    queue: str
    worker_id: str | None
    retries: int
    deliveries: int
    reason: str
    #: The task's message, so the caller can end the chord it belonged to.
    message: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Recovery:
    """What ``recover_expired`` did."""

    requeued: list[str]
    lost: list[Lost]


_INSERT = (
    "INSERT INTO liteq_task(task_id, name, queue, state, priority, eta, expires, message, "
    "content_type, acks_late, reject_on_worker_lost, retries, deliveries, unique_key, "
    "revoke, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0,?,0,?)"
)
_ON_CONFLICT = " ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING"
_INSERT_UNIQUE = _INSERT + _ON_CONFLICT
_INSERT_HEAD, _INSERT_VALUES = _INSERT.split(" VALUES ")
_AT_ID_HEAD = _INSERT_HEAD.replace("liteq_task(", "liteq_task(id, id_derived, ", 1)
#: ``_INSERT`` at the rowid the task id encodes (``messages.rowid_of``),
#: passed first, unless the task id index holds a row of that id (?2).
#: ``_INSERT`` lets SQLite pick the rowid, and the row is found through the
#: ``liteq_task_task_id`` index instead.
_INSERT_AT_ID = (
    _AT_ID_HEAD
    + f" SELECT ?,1,{_INSERT_VALUES[1:-1]}"
    # The WHERE also keeps an upsert clause after it unambiguous.
    + " WHERE NOT EXISTS (SELECT 1 FROM liteq_task WHERE task_id = ?2 AND id_derived = 0)"
)
#: Without a unique key, the only conflict is the rowid being taken.
_INSERT_AT_FREE_ID = _INSERT_AT_ID + " ON CONFLICT DO NOTHING"
#: ``_INSERT_AT_FREE_ID`` for an id made for this very task, which cannot be
#: queued yet: without the look into the task id index (about 1 µs).
_INSERT_NEW_AT_FREE_ID = (
    f"{_AT_ID_HEAD} VALUES (?,1,{_INSERT_VALUES[1:]} ON CONFLICT DO NOTHING"
)
_INSERT_AT_ID_UNIQUE = _INSERT_AT_ID + _ON_CONFLICT
#: A task id's time may be this far (ms) from now for its row to be stored at
#: the rowid it encodes: a task sent with an id made earlier (a chain's next
#: step, an id sent again) goes to the back of its queue, as a new message
#: would, instead of among the tasks sent when its id was made.
_AT_ID_WINDOW_MS = 1_000

#: Selects a task's queue row by its id, with the parameters from
#: :func:`task_key`: at the rowid the id encodes, or through the task id
#: index, which holds only the rows stored elsewhere (the planner probes both).
BY_TASK_ID = "task_id = ? AND (id = ? OR id_derived = 0)"


def task_key(task_id: str) -> tuple[str, int | None]:
    """Return the parameters of :data:`BY_TASK_ID` for ``task_id``."""
    return task_id, rowid_of(task_id)


#: Rows per statement of ``Broker.insert_uniform``, largest first: a batch is
#: written by the largest that fit, so at most this many statement texts
#: (twice: with and without ON CONFLICT) ever reach the statement cache.
_UNIFORM_SIZES = (128, 32, 8, 1)


def _uniform_sql(n_shared: int, at: int, n_rows: int, unique: bool) -> str:
    """``_INSERT`` for ``n_rows`` rows alike but for their id and message.

    The shared values are parameters ``?1``..``?n_shared`` (in row order,
    without the id and the message), each row's id and message the two
    parameters after them; ``at`` is where the message is in ``_INSERT``'s
    values (the id leads).
    """
    head, values = _INSERT.split(" VALUES ")
    items = values.strip("()").split(",")
    places = [i for i, item in enumerate(items) if item == "?"]
    if len(places) != n_shared + 2 or places[0] != 0 or at >= len(places):
        raise ValueError(f"{n_shared} shared values do not fit the queue row")
    rows = []
    for row in range(n_rows):
        first = n_shared + 1 + 2 * row
        shared = iter(range(1, n_shared + 1))
        numbered = list(items)
        for k, place in enumerate(places):
            if k == 0:
                numbered[place] = f"?{first}"
            elif k == at:
                numbered[place] = f"?{first + 1}"
            else:
                numbered[place] = f"?{next(shared)}"
        rows.append("(" + ",".join(numbered) + ")")
    return f"{head} VALUES {','.join(rows)}{_ON_CONFLICT if unique else ''}"


_UNIFORM_SQL: dict[tuple[int, int, int, bool], str] = {}

_PROMOTE = (
    "UPDATE liteq_task SET state = 1 WHERE id IN (SELECT id FROM liteq_task "
    "WHERE state = 0 AND eta <= ? ORDER BY eta LIMIT 1000)"
)
#: In the order of :class:`Claimed`'s fields: a row is a claim as it is.
_CLAIM_COLUMNS = ", ".join(Claimed._fields)
_BY_ID = operator.itemgetter(0)
_BY_PRIORITY = operator.itemgetter(4)


def _queue_filter(n_queues: int) -> str:
    """`` AND queue ...`` for ``n_queues`` bound queue names (none: every queue)."""
    if n_queues == 0:
        return ""
    if n_queues == 1:
        return " AND queue = ?"
    return f" AND queue IN ({','.join('?' * n_queues)})"


def _claim_sql(n_queues: int) -> str:
    return (
        "UPDATE liteq_task SET state = 2, worker_id = ?, claim_token = ?, "
        "deliveries = deliveries + 1, lease_until = ?, started_at = ? "
        f"WHERE id IN (SELECT id FROM liteq_task WHERE state = 1{_queue_filter(n_queues)} "
        "ORDER BY priority DESC, id LIMIT ?) AND state = 1 "
        f"RETURNING {_CLAIM_COLUMNS}"
    )


def _idle_sql(n_queues: int) -> str:
    # Each part is answered from its partial index (ready, sched, lease).
    return (
        "SELECT EXISTS(SELECT 1 FROM liteq_task WHERE state = 1"
        f"{_queue_filter(n_queues)}), "
        "(SELECT MIN(eta) FROM liteq_task WHERE state = 0), "
        "(SELECT MIN(lease_until) FROM liteq_task WHERE state = 2)"
    )


#: Where the unique key is in the values of ``_INSERT``.
_UNIQUE_KEY = 12
#: Where the message is in them (its content type follows).
MESSAGE_AT = 7


def task_values(
    task_id: str,
    name: str,
    message: bytes,
    content_type: str,
    queue: str,
    priority: int,
    eta: float | None,
    expires: float | None,
    acks_late: bool,
    reject_on_worker_lost: bool,
    retries: int,
    unique_key: str | None,
    now: float,
) -> tuple[Any, ...]:
    """Return the queue row of a task, for :meth:`Broker.insert`.

    The fields are those of :class:`NewTask`; ``now`` is the enqueue time
    (an ``eta`` of None means now). Publishing builds these directly, since
    a :class:`NewTask` per call costs as much as the rest of the row.
    """
    if eta is None:
        eta = now
    return (
        task_id,
        name,
        queue,
        SCHEDULED if eta > now else READY,
        priority,
        eta,
        expires,
        message,
        content_type,
        int(acks_late),
        int(reject_on_worker_lost),
        retries,
        unique_key,
        now,
    )


#: Fencing tokens only have to differ between claims of one row, not be
#: secret: a generator seeded from the OS (again in a forked child) spares
#: every claim a system call.
_tokens = random.Random(secrets.randbits(128))


def _reseed_tokens() -> None:
    _tokens.seed(secrets.randbits(128))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed_tokens)


def new_token() -> int:
    """Return a random 63-bit fencing token."""
    return _tokens.getrandbits(63) or 1


class Broker:
    """Queue verbs over one :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._claim_sql: dict[int, str] = {}
        self._idle_sql: dict[int, str] = {}
        #: The highest rowid this process stored a new task at.
        self._high = 0

    # -- producing -----------------------------------------------------------------
    @staticmethod
    def _row(task: NewTask, now: float) -> tuple[object, ...]:
        return task_values(
            task.task_id,
            task.name,
            task.message,
            task.content_type,
            task.queue,
            task.priority,
            task.eta,
            task.expires,
            task.acks_late,
            task.reject_on_worker_lost,
            task.retries,
            task.unique_key,
            now,
        )

    def enqueue(self, task: NewTask, now: float) -> bool:
        """Insert one task, committed on return (or with the caller's transaction).

        A task whose ``eta`` is in the future is stored SCHEDULED and promoted
        when due; it is never held in a worker's memory.

        Returns:
            False if ``unique_key`` is already queued (nothing inserted).

        Raises:
            StorageError: the write failed (``DatabaseLocked`` after busy_timeout).
        """
        return self.insert(self._row(task, now))

    def enqueue_many(
        self, tasks: Iterable[NewTask], now: float, fresh_ids: bool = False
    ) -> int:
        """Insert many tasks in one transaction (``fresh_ids``: see :meth:`insert_many`).

        Returns:
            How many rows were inserted (unique-key duplicates are skipped).

        Raises:
            StorageError: the write failed, or a task with one of the ids is queued.
        """
        row = self._row
        return self.insert_many([row(t, now) for t in tasks], fresh_ids)

    def insert(self, values: tuple[object, ...], fresh_id: bool = False) -> bool:
        """:meth:`enqueue` for a row made by :func:`task_values`.

        A row whose id :func:`~liteq.messages.new_id` made within the last
        second is stored at the rowid the id encodes, so no index on the task
        id has to be written (measured: a third fewer WAL pages per
        ``.delay()``). If that rowid is taken (another process made an id in
        the same millisecond with the same sequence number), or the id is not
        one of those, SQLite picks the rowid and the task id index holds the
        row. ``fresh_id``: the id was made for this very call, so no task with
        it can be queued (spares a look into the index).

        Returns:
            False if its unique key is already queued (nothing inserted).

        Raises:
            StorageError: the write failed, or a task with this id is queued.
        """
        if values[_UNIQUE_KEY] is None:
            rowid = self._rowid_for(str(values[0]))
            if (
                rowid is not None
                and self.db.count_write(
                    _INSERT_NEW_AT_FREE_ID if fresh_id else _INSERT_AT_FREE_ID,
                    (rowid, *values),
                )
                == 1
            ):
                self._high = max(self._high, rowid)
                return True
        with self.db.write() as conn:
            return self.insert_in(conn, values)

    def _rowid_for(self, task_id: str) -> int | None:
        """Return the rowid to store a new task at, or None to let SQLite pick.

        The tasks a process sends keep their order in the queue: an id's
        rowid is used only above every rowid the process stored a task at
        before (a row SQLite places goes above every row of the table).
        """
        rowid = rowid_of(task_id)
        if (
            rowid is None
            or rowid <= self._high
            or abs((rowid >> SEQ_BITS) - time.time_ns() // 1_000_000) > _AT_ID_WINDOW_MS
        ):
            return None
        return rowid

    def insert_in(self, conn: sqlite3.Connection, values: tuple[object, ...]) -> bool:
        """:meth:`insert` inside the caller's write transaction ``conn``.

        Returns:
            False if its unique key is already queued (nothing inserted).

        Raises:
            StorageError: a task with this id is queued.
        """
        task_id = str(values[0])
        rowid = self._rowid_for(task_id)
        if rowid is not None:
            try:
                cur = conn.execute(_INSERT_AT_ID_UNIQUE, (rowid, *values))
            except sqlite3.IntegrityError:
                pass  # the rowid is taken: store the row elsewhere
            else:
                if cur.rowcount == 1:
                    self._high = max(self._high, rowid)
                    return True
                # Nothing inserted: its id or its unique key is queued.
                self._refuse_queued(conn, [task_id])
                return False
        self._refuse_queued(conn, [task_id])
        if conn.execute(_INSERT_UNIQUE, values).rowcount != 1:
            return False
        self._placed(conn)
        return True

    def _refuse_queued(self, conn: sqlite3.Connection, task_ids: Sequence[str]) -> None:
        """Raise if any of ``task_ids`` is queued, however its row was stored.

        The task id index holds only rows stored elsewhere than at their id's
        rowid, so its unique constraint alone misses the others.
        """
        pairs = [(rowid_of(i), i) for i in task_ids]
        # Rows stored elsewhere are in the task id index, whose unique
        # constraint refuses a second one; a bulk only looks at the rowids.
        if len(pairs) == 1:
            found = conn.execute(
                f"SELECT task_id FROM liteq_task WHERE {BY_TASK_ID}",
                (pairs[0][1], pairs[0][0]),
            ).fetchone()
        else:
            found = conn.execute(
                "SELECT t.task_id FROM json_each(?) AS j JOIN liteq_task AS t "
                "ON t.id = json_extract(j.value, '$[0]') "
                "AND t.task_id = json_extract(j.value, '$[1]') LIMIT 1",
                (json.dumps([p for p in pairs if p[0] is not None]),),
            ).fetchone()
        if found:
            raise StorageError(
                f"database {self.db.path!r}: UNIQUE constraint failed: "
                f"liteq_task.task_id ({found[0]!r} is already queued)",
                path=self.db.path,
            )

    def task_id_for_unique_key(self, unique_key: str) -> str | None:
        """Return the id of the waiting or running task holding ``unique_key``, or None."""
        row = self.db.query_one(
            "SELECT task_id FROM liteq_task WHERE unique_key = ?", (unique_key,)
        )
        return None if row is None else str(row[0])

    def insert_many(
        self, rows: Sequence[tuple[object, ...]], fresh_ids: bool = False
    ) -> int:
        """:meth:`enqueue_many` for rows made by :func:`task_values`.

        ``fresh_ids``: the ids were just made for these rows (by
        :func:`~liteq.messages.new_ids` or ``new_id``), so none can be queued
        already (spares the check).

        Returns:
            How many rows were inserted (unique-key duplicates are skipped).

        Raises:
            StorageError: the write failed, or a task with one of the ids is queued.
        """
        if not rows:
            return 0
        with self.db.write() as conn:
            if not fresh_ids:
                self._refuse_queued(conn, [str(r[0]) for r in rows])
            before = conn.total_changes
            conn.executemany(_INSERT_UNIQUE, rows)
            self._placed(conn)
            return conn.total_changes - before

    def _placed(self, conn: sqlite3.Connection) -> None:
        # Rows SQLite placed went above every row of the table: the next
        # task this process sends may not go below them.
        (last,) = conn.execute("SELECT last_insert_rowid()").fetchone()
        self._high = max(self._high, last)

    def insert_uniform(
        self,
        head: Sequence[object],
        ids: Sequence[str],
        messages: Sequence[bytes],
        tail: Sequence[object],
        fresh_ids: bool = False,
    ) -> int:
        """:meth:`insert_many` for rows alike but for their id and message.

        Row ``i`` is ``(ids[i], *head, messages[i], *tail)``, a row of
        :func:`task_values`. The shared values are bound once per statement
        of many rows rather than once per row (measured: about a third less
        CPU per row than :meth:`insert_many` for a large bulk enqueue).

        Returns:
            How many rows were inserted (unique-key duplicates are skipped).

        Raises:
            StorageError: the write failed, or a task with one of the ids is queued.
        """
        count = len(ids)
        if count != len(messages):
            raise ValueError(f"{count} task ids for {len(messages)} messages")
        if not count:
            return 0
        shared = [*head, *tail]
        n_shared, at = len(shared), len(head) + 1
        # Rows without a unique key cannot conflict on it: no ON CONFLICT.
        unique = tail[_UNIQUE_KEY - at - 1] is not None
        pairs: list[object] = [None] * (2 * count)
        pairs[0::2] = ids
        pairs[1::2] = messages
        with self.db.write() as conn:
            if not fresh_ids:
                self._refuse_queued(conn, ids)
            before = conn.total_changes
            start = 0
            for size in _UNIFORM_SIZES:
                stop = start + (count - start) // size * size
                if stop == start:
                    continue
                key = (n_shared, at, size, unique)
                sql = _UNIFORM_SQL.get(key)
                if sql is None:
                    sql = _UNIFORM_SQL[key] = _uniform_sql(*key)
                step = 2 * size
                conn.executemany(
                    sql,
                    [
                        shared + pairs[i : i + step]
                        for i in range(2 * start, 2 * stop, step)
                    ],
                )
                start = stop
            self._placed(conn)
            return conn.total_changes - before

    # -- consuming ---------------------------------------------------------------
    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease: float,
    ) -> list[Claimed]:
        """Lease up to ``limit`` ready tasks from ``queues`` (None: every queue).

        Due SCHEDULED rows are promoted in the same transaction. Rows come back
        sorted by priority (higher first), then FIFO.

        Returns:
            The claimed tasks (possibly empty).
        """
        if limit <= 0:
            return []
        with self.db.write() as conn:
            return self.claim_in(conn, worker_id, queues, limit, now, lease)

    def claim_in(
        self,
        conn: sqlite3.Connection,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        now: float,
        lease: float,
    ) -> list[Claimed]:
        """:meth:`claim` inside an open write transaction ``conn``."""
        if limit <= 0:
            return []
        queues = list(queues) if queues else []
        sql = self._claim_sql.get(len(queues))
        if sql is None:
            sql = self._claim_sql[len(queues)] = _claim_sql(len(queues))
        params = (worker_id, new_token(), now + lease, now, *queues, limit)
        conn.execute(_PROMOTE, (now,))
        rows = conn.execute(sql, params).fetchall()
        # RETURNING gives rowid order, not the subquery's ORDER BY: sort by id,
        # then (stable) by priority, higher first. Both sorts are C-level and
        # linear on the usual already-ordered rows.
        if len(rows) > 1:
            rows.sort(key=_BY_ID)
            rows.sort(key=_BY_PRIORITY, reverse=True)
        new = tuple.__new__
        return [new(Claimed, r) for r in rows]

    def idle_facts(
        self, queues: Sequence[str] | None
    ) -> tuple[bool, float | None, float | None]:
        """Read-only: what a worker with nothing claimable needs to know, in one query.

        Returns:
            ``(ready, next_eta, next_lease)``: whether a READY task waits in
            ``queues`` (None: any queue), the earliest ETA of a SCHEDULED task
            (due ones are promoted by the next claim) and the earliest lease
            expiry of a RUNNING one (None: there is none).
        """
        queues = list(queues) if queues else []
        sql = self._idle_sql.get(len(queues))
        if sql is None:
            sql = self._idle_sql[len(queues)] = _idle_sql(len(queues))
        row = self.db.query_one(sql, queues)
        return bool(row[0]), row[1], row[2]

    def give_back(self, claimed: Iterable[Claimed]) -> int:
        """Return claimed-but-not-started tasks to READY (warm shutdown).

        The delivery is not counted. Returns the number of rows given back.
        """
        rows = [(c.id, c.claim_token) for c in claimed]
        if not rows:
            return 0
        with self.db.write() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE liteq_task SET state = 1, worker_id = NULL, claim_token = NULL, "
                "lease_until = NULL, started_at = NULL, deliveries = MAX(deliveries - 1, 0) "
                "WHERE id = ? AND claim_token = ? AND state = 2",
                rows,
            )
            return conn.total_changes - before

    def defer(self, items: Iterable[tuple[Claimed, float]], now: float) -> int:
        """Put claimed-but-not-started tasks back, each due at its own time.

        For a task over its rate limit: it waits in the database (SCHEDULED)
        until a token is due, instead of in a worker's memory. The delivery
        is not counted. Returns the number of rows deferred.
        """
        rows = [
            (SCHEDULED if eta > now else READY, eta, c.id, c.claim_token)
            for c, eta in items
        ]
        if not rows:
            return 0
        with self.db.write() as conn:
            before = conn.total_changes
            conn.executemany(
                "UPDATE liteq_task SET state = ?, eta = ?, worker_id = NULL, "
                "claim_token = NULL, lease_until = NULL, started_at = NULL, "
                "deliveries = MAX(deliveries - 1, 0) "
                "WHERE id = ? AND claim_token = ? AND state = 2",
                rows,
            )
            return conn.total_changes - before

    def set_delivery_mode(
        self, claimed: Claimed, acks_late: bool, reject_on_worker_lost: bool
    ) -> None:
        """Record the task's real ``acks_late`` (the producer may not have known it)."""
        self.db.run_write(
            "UPDATE liteq_task SET acks_late = ?, reject_on_worker_lost = ? "
            "WHERE id = ? AND claim_token = ? AND state = 2",
            (
                int(acks_late),
                int(reject_on_worker_lost),
                claimed.id,
                claimed.claim_token,
            ),
        )

    # -- leases ------------------------------------------------------------------------
    def extend_lease(
        self, worker_id: str, now: float, lease: float
    ) -> list[tuple[str, str | None]]:
        """Renew the lease of every task ``worker_id`` runs, and heartbeat the worker.

        Returns:
            ``(task_id, signal)`` of running tasks someone asked to terminate.
        """
        with self.db.write() as conn:
            conn.execute(
                "UPDATE liteq_worker SET heartbeat_at = ? WHERE worker_id = ?",
                (now, worker_id),
            )
            conn.execute(
                "UPDATE liteq_task SET lease_until = ? WHERE worker_id = ? AND state = 2",
                (now + lease, worker_id),
            )
        return self.terminate_requests(worker_id)

    def holds(self, claimed: Claimed) -> bool:
        """True if ``claimed``'s claim still holds its task (not acked, not recovered).

        Raises:
            StorageError: the read failed.
        """
        row = self.db.query_one(
            "SELECT 1 FROM liteq_task WHERE id = ? AND claim_token = ? AND state = 2",
            (claimed.id, claimed.claim_token),
        )
        return row is not None

    def terminate_requests(self, worker_id: str) -> list[tuple[str, str | None]]:
        """Return ``(task_id, signal)`` of this worker's tasks marked for termination."""
        rows = self.db.execute(
            "SELECT task_id, revoke_signal FROM liteq_task WHERE worker_id = ? AND state = 2 "
            "AND revoke = 2",
            (worker_id,),
        )
        return [(r[0], r[1]) for r in rows]

    def recover_expired(
        self,
        now: float,
        max_deliveries: int,
        dead_workers: Sequence[str] = (),
    ) -> Recovery:
        """Recover running tasks whose lease expired or whose worker is dead.

        ``acks_late`` (or ``reject_on_worker_lost``) tasks with deliveries left go
        back to READY; the others are deleted from the queue and returned as
        :class:`Lost` so the caller stores FAILURE(WorkerLostError) in the same
        transaction it opened (see ``Storage.recover``).
        """
        with self.db.write() as conn:
            requeued, lost = self.recover_in(conn, now, max_deliveries, dead_workers)
        return Recovery(requeued, lost)

    def recover_in(
        self,
        conn: object,
        now: float,
        max_deliveries: int,
        dead_workers: Sequence[str] = (),
        unstarted: Sequence[tuple[str, int, Sequence[int]]] = (),
    ) -> tuple[list[str], list[Lost]]:
        """:meth:`recover_expired` inside an open write transaction ``conn``.

        ``unstarted`` holds ``(worker_id, claim_token, row ids)`` of tasks a
        dead worker had claimed and never started: they go back to the queue
        whatever their ``acks_late``, their delivery not counted.
        """
        execute = conn.execute  # type: ignore[attr-defined]
        requeued: list[str] = []
        for worker_id, token, ids in unstarted:
            requeued.extend(
                r[0]
                for r in execute(
                    "UPDATE liteq_task SET state = 1, worker_id = NULL, claim_token = NULL, "
                    "lease_until = NULL, started_at = NULL, "
                    "deliveries = MAX(deliveries - 1, 0) WHERE state = 2 AND worker_id = ? "
                    "AND claim_token = ? AND revoke = 0 "
                    "AND id IN (SELECT value FROM json_each(?)) RETURNING task_id",
                    (worker_id, token, json.dumps(list(ids))),
                ).fetchall()
            )
        if dead_workers:
            execute(
                "UPDATE liteq_task SET lease_until = 0 WHERE state = 2 AND worker_id IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(list(dead_workers)),),
            )
        requeued.extend(
            r[0]
            for r in execute(
                "UPDATE liteq_task SET state = 1, worker_id = NULL, claim_token = NULL, "
                "lease_until = NULL, started_at = NULL WHERE state = 2 AND lease_until < ? "
                "AND (acks_late = 1 OR reject_on_worker_lost = 1) AND deliveries < ? "
                "AND revoke = 0 RETURNING task_id",
                (now, max_deliveries),
            ).fetchall()
        )
        lost = [
            Lost(
                id=r[0],
                task_id=r[1],
                name=r[2],
                queue=r[3],
                worker_id=r[4],
                retries=r[5],
                deliveries=r[6],
                reason=(
                    "revoked"
                    if r[8] == 2
                    else "max_deliveries"
                    if (r[7] or r[9])
                    else "worker_lost"
                ),
                message=r[10],
                content_type=r[11],
            )
            for r in execute(
                "DELETE FROM liteq_task WHERE state = 2 AND lease_until < ? RETURNING id, "
                "task_id, name, queue, worker_id, retries, deliveries, acks_late, revoke, "
                "reject_on_worker_lost, message, content_type",
                (now,),
            ).fetchall()
        ]
        return requeued, lost

    def next_eta(self) -> float | None:
        """Return the earliest ETA of a scheduled task, or None."""
        row = self.db.query_one("SELECT MIN(eta) FROM liteq_task WHERE state = 0")
        return row[0] if row else None

    # -- administration ---------------------------------------------------------------
    def mark_revoked_running(self, task_id: str, signal: str | None) -> str | None:
        """Ask the worker running ``task_id`` to terminate it; return that worker's id."""
        rows = self.db.run_write(
            f"UPDATE liteq_task SET revoke = 2, revoke_signal = ? WHERE {BY_TASK_ID} "
            "AND state = 2 RETURNING worker_id",
            (signal, *task_key(task_id)),
        )
        return rows[0][0] if rows else None

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every waiting (ready or scheduled) task; running ones are left alone.

        Returns:
            The number of tasks deleted.
        """
        if queues:
            marks = ",".join("?" * len(queues))
            rows = self.db.run_write(
                f"DELETE FROM liteq_task WHERE state IN (0, 1) AND queue IN ({marks}) RETURNING id",
                list(queues),
            )
        else:
            rows = self.db.run_write(
                "DELETE FROM liteq_task WHERE state IN (0, 1) RETURNING id"
            )
        return len(rows)

    def queue_stats(self, now: float) -> dict[str, dict[str, int]]:
        """Return ``{queue: {"ready": n, "scheduled": n, "running": n}}``."""
        stats: dict[str, dict[str, int]] = {}
        for queue, state, eta_due, count in self.db.execute(
            "SELECT queue, state, (state = 0 AND eta <= ?), COUNT(*) FROM liteq_task "
            "GROUP BY queue, state, (state = 0 AND eta <= ?)",
            (now, now),
        ):
            entry = stats.setdefault(queue, {"ready": 0, "scheduled": 0, "running": 0})
            if state == READY or (state == SCHEDULED and eta_due):
                entry["ready"] += count
            elif state == SCHEDULED:
                entry["scheduled"] += count
            elif state == RUNNING:
                entry["running"] += count
        return stats

    def get_task_row(self, task_id: str) -> tuple[int, str, str, int, float] | None:
        """Return ``(state, name, queue, deliveries, eta)`` of a queued task, or None."""
        row = self.db.query_one(
            f"SELECT state, name, queue, deliveries, eta FROM liteq_task WHERE {BY_TASK_ID}",
            task_key(task_id),
        )
        return None if row is None else (row[0], row[1], row[2], row[3], row[4])
