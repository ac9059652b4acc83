"""The schema: peewee models own the DDL, the version and the migrations.

Hot-path statements live as pre-rendered SQL in ``broker.py`` and
``results.py``; these models are for creating and migrating the file and for
administrative queries (``liteq status``, inspection, tests).

Times are REAL epoch seconds supplied by the injected clock, never by SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import peewee
from peewee import (
    SQL,
    BlobField,
    FloatField,
    IntegerField,
    Model,
    TextField,
)

from ..exceptions import StorageError

#: The schema version this liteq writes; older files are migrated forward.
SCHEMA_VERSION = 3

#: Task row states in ``liteq_task`` (finished tasks are deleted from it).
SCHEDULED, READY, RUNNING = 0, 1, 2


@dataclass
class Models:
    """The model classes bound to one database."""

    meta: type[Model]
    task: type[Model]
    result: type[Model]
    event: type[Model]
    group: type[Model]
    worker: type[Model]
    lease: type[Model]
    schedule: type[Model]
    revoked: type[Model]
    ratelimit: type[Model]

    def all(self) -> list[type[Model]]:
        """Return every model, in creation order."""
        return [
            self.meta,
            self.task,
            self.result,
            self.event,
            self.group,
            self.worker,
            self.lease,
            self.schedule,
            self.revoked,
            self.ratelimit,
        ]


_TASK_ID_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS liteq_task_task_id ON liteq_task(task_id) "
    "WHERE id_derived = 0"
)


def make_models(database: peewee.Database) -> Models:
    """Create model classes bound to ``database``.

    Models are made per database (not at import time) so that two apps on two
    files can live in one process without sharing peewee's class-level binding.
    """

    class Base(Model):
        class Meta:
            legacy_table_names = False

    Base._meta.set_database(database)

    class Meta(Base):
        key = TextField(primary_key=True)
        value = TextField()

        class Meta:
            table_name = "liteq_meta"

    class Task(Base):
        id = IntegerField(primary_key=True)
        task_id = TextField()
        name = TextField()
        queue = TextField(default="celery")
        #: 0 SCHEDULED (eta in the future), 1 READY, 2 RUNNING.
        state = IntegerField()
        #: 0..255, higher runs first (AMQP semantics).
        priority = IntegerField(default=0)
        eta = FloatField()
        expires = FloatField(null=True)
        message = BlobField()
        content_type = TextField(default="application/json")
        acks_late = IntegerField(default=0)
        reject_on_worker_lost = IntegerField(default=0)
        retries = IntegerField(default=0)
        deliveries = IntegerField(default=0)
        unique_key = TextField(null=True)
        worker_id = TextField(null=True)
        claim_token = IntegerField(null=True)
        lease_until = FloatField(null=True)
        started_at = FloatField(null=True)
        #: 2 = terminate requested while running.
        revoke = IntegerField(default=0)
        revoke_signal = TextField(null=True)
        created_at = FloatField()
        #: 1: ``id`` is the rowid ``task_id`` encodes (``messages.rowid_of``),
        #: and the row is found there; 0: through ``liteq_task_task_id``.
        id_derived = IntegerField(default=0, constraints=[SQL("DEFAULT 0")])

        class Meta:
            table_name = "liteq_task"

    # Holds only the rows not found at the rowid their id encodes: the index
    # page a ``.delay()`` would write is a third of its WAL pages.
    Task.add_index(SQL(_TASK_ID_INDEX))

    Task.add_index(
        SQL(
            "CREATE INDEX IF NOT EXISTS liteq_task_ready ON liteq_task(queue, priority DESC, id) WHERE state = 1"
        )
    )
    Task.add_index(
        SQL(
            "CREATE INDEX IF NOT EXISTS liteq_task_sched ON liteq_task(eta) WHERE state = 0"
        )
    )
    # Also serves the per-worker queries (lease renewal, terminate requests,
    # recovery of a dead worker): RUNNING rows are few (workers x concurrency x
    # prefetch), so they filter this small index instead of keeping a
    # worker_id index that every claim and ack would have to write.
    # Those queries must keep ``state = 2`` literally in their WHERE.
    Task.add_index(
        SQL(
            "CREATE INDEX IF NOT EXISTS liteq_task_lease ON liteq_task(lease_until) WHERE state = 2"
        )
    )
    Task.add_index(
        SQL(
            "CREATE UNIQUE INDEX IF NOT EXISTS liteq_task_unique ON liteq_task(unique_key) "
            "WHERE unique_key IS NOT NULL"
        )
    )

    class Result(Base):
        task_id = TextField(primary_key=True)
        status = TextField()
        result = BlobField(null=True)
        content_type = TextField(null=True)
        traceback = TextField(null=True)
        name = TextField(null=True)
        args = BlobField(null=True)
        kwargs = BlobField(null=True)
        queue = TextField(null=True)
        worker = TextField(null=True)
        retries = IntegerField(null=True)
        parent_id = TextField(null=True)
        root_id = TextField(null=True)
        group_id = TextField(null=True)
        children = TextField(null=True)
        #: The undecodable message, kept for inspection (DecodeError).
        raw_message = BlobField(null=True)
        date_done = FloatField(null=True)
        expires_at = FloatField(null=True)

        class Meta:
            table_name = "liteq_result"
            # Keyed on task_id itself: storing a result writes one B-tree, not
            # the table plus its primary-key index (fewer WAL pages per ack).
            # Rows over about 1 KB go to overflow pages sooner than in a rowid
            # table; measured about even for such results.
            without_rowid = True

    Result.add_index(
        SQL(
            "CREATE INDEX IF NOT EXISTS liteq_result_expires ON liteq_result(expires_at) "
            "WHERE expires_at IS NOT NULL"
        )
    )
    Result.add_index(
        SQL(
            "CREATE INDEX IF NOT EXISTS liteq_result_failed ON liteq_result(date_done) "
            "WHERE status = 'FAILURE'"
        )
    )

    class Event(Base):
        """Every non-final state change (STARTED, RETRY, custom), in order."""

        id = IntegerField(primary_key=True)
        task_id = TextField(index=True)
        status = TextField()
        result = BlobField(null=True)
        content_type = TextField(null=True)
        created_at = FloatField()

        class Meta:
            table_name = "liteq_event"

    class Group(Base):
        group_id = TextField(primary_key=True)
        #: JSON list of member task ids, in header order.
        task_ids = TextField(null=True)
        #: Chord: header parts not finished yet; NULL for a plain group.
        remaining = IntegerField(null=True)
        #: Chord: the body signature (serialized).
        body = BlobField(null=True)
        content_type = TextField(null=True)
        date_done = FloatField(null=True)
        expires_at = FloatField(null=True)
        created_at = FloatField()

        class Meta:
            table_name = "liteq_group"

    class Worker(Base):
        worker_id = TextField(primary_key=True)
        hostname = TextField()
        pid = IntegerField()
        pid_starttime = IntegerField(null=True)
        boot_id = TextField(null=True)
        queues = TextField()
        concurrency = IntegerField()
        info = TextField(null=True)
        started_at = FloatField()
        heartbeat_at = FloatField(index=True)

        class Meta:
            table_name = "liteq_worker"

    class Lease(Base):
        name = TextField(primary_key=True)
        owner = TextField()
        expires_at = FloatField()
        acquired_at = FloatField()

        class Meta:
            table_name = "liteq_lease"

    class Schedule(Base):
        name = TextField(primary_key=True)
        task = TextField()
        #: JSON of ``BaseSchedule.to_dict()``.
        schedule = TextField()
        args = TextField(default="[]")
        kwargs = TextField(default="{}")
        options = TextField(default="{}")
        queue = TextField(null=True)
        priority = IntegerField(null=True)
        enabled = IntegerField(default=1)
        #: "config" (synced from beat_schedule) or "api" (added at runtime).
        source = TextField(default="config")
        catch_up = TextField(default="once")
        definition_hash = TextField()
        last_run_at = FloatField(null=True)
        next_run_at = FloatField(null=True)
        total_run_count = IntegerField(default=0)
        last_task_id = TextField(null=True)
        updated_at = FloatField()

        class Meta:
            table_name = "liteq_schedule"

    Schedule.add_index(
        SQL(
            "CREATE INDEX IF NOT EXISTS liteq_schedule_due ON liteq_schedule(next_run_at) "
            "WHERE enabled = 1"
        )
    )

    class Revoked(Base):
        task_id = TextField(primary_key=True)
        terminate = IntegerField(default=0)
        signal = TextField(null=True)
        expires_at = FloatField()

        class Meta:
            table_name = "liteq_revoked"

    class RateLimit(Base):
        key = TextField(primary_key=True)
        tokens = FloatField()
        updated_at = FloatField()

        class Meta:
            table_name = "liteq_ratelimit"

    return Models(
        meta=Meta,
        task=Task,
        result=Result,
        event=Event,
        group=Group,
        worker=Worker,
        lease=Lease,
        schedule=Schedule,
        revoked=Revoked,
        ratelimit=RateLimit,
    )


_RESULT_COLUMNS = (
    '"task_id", "status", "result", "content_type", "traceback", "name", "args", '
    '"kwargs", "queue", "worker", "retries", "parent_id", "root_id", "group_id", '
    '"children", "raw_message", "date_done", "expires_at"'
)


def _migrate_1_to_2(models: Models, conn: Any) -> None:
    """Drop ``liteq_task_worker``; rebuild ``liteq_result`` as WITHOUT ROWID.

    The DDL is written out (not taken from the models) so this step keeps
    producing the version-2 layout whatever later versions change.
    """
    conn.execute("DROP INDEX IF EXISTS liteq_task_worker")
    conn.execute(
        'CREATE TABLE "liteq_result_v2" ("task_id" TEXT NOT NULL PRIMARY KEY, '
        '"status" TEXT NOT NULL, "result" BLOB, "content_type" TEXT, "traceback" TEXT, '
        '"name" TEXT, "args" BLOB, "kwargs" BLOB, "queue" TEXT, "worker" TEXT, '
        '"retries" INTEGER, "parent_id" TEXT, "root_id" TEXT, "group_id" TEXT, '
        '"children" TEXT, "raw_message" BLOB, "date_done" REAL, "expires_at" REAL) '
        "WITHOUT ROWID"
    )
    conn.execute(
        f'INSERT INTO "liteq_result_v2" ({_RESULT_COLUMNS}) '
        f'SELECT {_RESULT_COLUMNS} FROM "liteq_result"'
    )
    conn.execute('DROP TABLE "liteq_result"')
    # Legacy mode renames without re-checking the whole schema: a view of the
    # user's over liteq_result would otherwise fail the rename, as its table
    # is missing for that moment (it sees the new table once the name is back).
    legacy = conn.execute("PRAGMA legacy_alter_table").fetchone()[0]
    conn.execute("PRAGMA legacy_alter_table = ON")
    try:
        conn.execute('ALTER TABLE "liteq_result_v2" RENAME TO "liteq_result"')
    finally:
        conn.execute(f"PRAGMA legacy_alter_table = {int(legacy)}")
    conn.execute(
        "CREATE INDEX liteq_result_expires ON liteq_result(expires_at) "
        "WHERE expires_at IS NOT NULL"
    )
    conn.execute(
        "CREATE INDEX liteq_result_failed ON liteq_result(date_done) "
        "WHERE status = 'FAILURE'"
    )


def _migrate_2_to_3(models: Models, conn: Any) -> None:
    """Add ``liteq_task.id_derived``; index only the rows where it is 0.

    Every row already queued keeps its rowid and gets 0, so it stays in the
    (now partial) task id index. Neither step rewrites the table's rows.
    """
    conn.execute(
        'ALTER TABLE "liteq_task" ADD COLUMN "id_derived" INTEGER NOT NULL DEFAULT 0'
    )
    conn.execute('DROP INDEX "liteq_task_task_id"')
    conn.execute(
        "CREATE UNIQUE INDEX liteq_task_task_id ON liteq_task(task_id) "
        "WHERE id_derived = 0"
    )


#: Forward migrations: ``MIGRATIONS[n]`` upgrades a file from version n to n+1.
#: Each runs inside the same IMMEDIATE transaction as the version bump.
MIGRATIONS: dict[int, Callable[[Models, Any], None]] = {
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def current_version(conn: Any) -> int:
    """Return the schema version stored in the file (0 = no liteq tables)."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='liteq_meta'"
    ).fetchone()
    if row is None:
        return 0
    row = conn.execute(
        "SELECT value FROM liteq_meta WHERE key='schema_version'"
    ).fetchone()
    return int(row[0]) if row else 0


def ensure_schema(models: Models, conn: Any, path: str) -> None:
    """Create or migrate the schema, once, under the write lock.

    Raises:
        StorageError: the file was written by a newer liteq.
    """
    if current_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = current_version(conn)
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"database {path!r} has schema version {version}, newer than this liteq "
                f"understands ({SCHEMA_VERSION}); upgrade liteq",
                path=path,
            )
        if version == 0:
            # auto_vacuum was set by the connection's first pragma.
            database = models.meta._meta.database
            database.create_tables(models.all(), safe=True)
        else:
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](models, conn)
                version += 1
        conn.execute(
            "INSERT INTO liteq_meta(key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
