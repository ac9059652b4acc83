"""Beat: sends the scheduled tasks, exactly once, from as many processes as you like.

Entries live in the database (``liteq_schedule``), so every ``liteq beat``
and every ``liteq worker -B`` on one file sees the same schedule:

* entries from the configuration (``beat_schedule`` / ``CELERYBEAT_SCHEDULE``)
  are synced when a beat starts: new ones are added, changed ones updated
  (their run state is kept; their next run is recomputed only if the schedule
  itself changed), and entries dropped from the configuration are **deleted**;
* entries added at runtime (``app.schedules.add(...)``, ``liteq schedule
  add``) are never touched by a sync, unless the configuration defines the same
  name (the configuration wins);
* a change made by any process reaches every running beat within a second
  (beats wake on database changes and re-read the due entries every tick).

Exactly once: the due entries are read, advanced (compare-and-set on their
``next_run_at``) and their tasks inserted (unique key ``beat:<name>:<time>``)
in one transaction, so two beats never send the same occurrence and a crash
never loses one. A leader lease (``beat_lease_ttl``, default 10 s) keeps that
work on one process; when the leader dies another takes over once its lease
expires. ``Beat(app, lease_ttl=0)`` works without a lease (every beat tries;
the transaction alone keeps it exactly once).

Catch-up policy (per entry ``catch_up``, default ``beat_catch_up``) for
occurrences missed while no beat ran:

* ``"once"`` (default, Celery's behaviour): the missed occurrences are sent
  once, as the latest of them; the schedule then continues after now;
* ``"all"``: every missed occurrence is sent, oldest first (at most
  :data:`ALL_LIMIT` per entry and tick, the rest right after);
* ``"skip"``: missed occurrences are dropped; an occurrence still fires when
  beat reaches it within :data:`SKIP_GRACE` seconds.

Time zones: times are aware UTC. crontab, rrule, clocked (naive) and relative
interval schedules are evaluated in the entry's ``tz`` or else the app's
``timezone`` (``CELERY_TIMEZONE``), pinned when the entry is stored. DST: a
wall time that does not exist fires once at the end of the gap; one that
occurs twice fires at its first occurrence (see :mod:`liteq.schedules`).
"""

from __future__ import annotations

from .api import Schedules
from .entries import (
    ALL_LIMIT,
    CATCH_UP_POLICIES,
    ENTRY_KEYS,
    SKIP_GRACE,
    ScheduleEntry,
    definition_from_entry,
    first_run_at,
    make_definition,
    plan,
    unique_key,
)
from .scheduler import CHANGE_SETTLE, ERROR_BACKOFF, LEASE_NAME, Beat, EmbeddedBeat

__all__ = [
    "ALL_LIMIT",
    "CATCH_UP_POLICIES",
    "CHANGE_SETTLE",
    "ENTRY_KEYS",
    "ERROR_BACKOFF",
    "LEASE_NAME",
    "SKIP_GRACE",
    "Beat",
    "EmbeddedBeat",
    "ScheduleEntry",
    "Schedules",
    "definition_from_entry",
    "first_run_at",
    "make_definition",
    "plan",
    "unique_key",
]
