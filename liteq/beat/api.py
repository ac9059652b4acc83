"""``app.schedules``: the runtime API over the stored schedule entries."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import ScheduleNotFound
from ..storage.beat_store import SOURCE_API, BeatStore
from .entries import ScheduleEntry, first_run_at, make_definition

if TYPE_CHECKING:
    from ..app import Liteq
    from ..result import AsyncResult

logger = logging.getLogger("liteq.beat")


class Schedules:
    """``app.schedules``: schedule entries stored in the database, changed at runtime.

    Every change is committed at once and reaches every running beat within a
    second. Entries added here (``source="api"``) survive configuration syncs.
    """

    def __init__(self, app: Liteq) -> None:
        self.app = app

    @property
    def store(self) -> BeatStore:
        """The schedule store of the app's database."""
        return BeatStore(self.app.storage.db)

    def add(
        self,
        name: str,
        task: Any,
        schedule: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        relative: bool = False,
        catch_up: str | None = None,
        tz: Any = None,
        enabled: bool = True,
        **options: Any,
    ) -> ScheduleEntry:
        """Add (or replace) the entry ``name``.

        Args:
            name: The entry's unique name.
            task: A task or a task name (the task need not be importable here).
            schedule: A schedule value, a timedelta or seconds, a dateutil
                rrule, a datetime (one-off) or a ``to_dict()`` mapping.
            args: Positional arguments of the task.
            kwargs: Keyword arguments of the task.
            relative: For intervals: round to the interval's unit (Celery's ``relative``).
            catch_up: ``"once"``, ``"all"`` or ``"skip"`` (default ``beat_catch_up``).
            tz: Zone of a wall-clock schedule (default: the app's ``timezone``).
            enabled: Store it disabled when False.
            **options: Calling options (``queue``, ``priority``, ``expires``...).

        Returns:
            The stored entry. Replacing an entry keeps its run state; its next
            run is recomputed only if the schedule changed.

        Raises:
            ValueError: a bad field, or arguments that cannot be stored as JSON.
            TypeError: a schedule of an unsupported type.
        """
        definition = make_definition(
            self.app,
            name,
            task,
            schedule,
            args,
            kwargs,
            options,
            relative=relative,
            catch_up=catch_up,
            tz=tz,
            source=SOURCE_API,
            enabled=enabled,
            now=self.app.clock.now(),
        )
        self.store.put(definition, self.app.clock.time())
        entry = self[name]
        if entry.enabled != enabled:
            entry = self.enable(name) if enabled else self.disable(name)
        return entry

    def remove(self, name: str) -> None:
        """Delete the entry ``name``.

        Raises:
            ScheduleNotFound: there is no such entry.
        """
        if not self.store.remove(name):
            raise ScheduleNotFound(name)

    def enable(self, name: str) -> ScheduleEntry:
        """Enable ``name``; a disabled entry resumes at its next occurrence from now.

        Raises:
            ScheduleNotFound: there is no such entry.
        """
        entry = self[name]
        if not entry.enabled:
            now = self.app.clock.now()
            self.store.set_enabled(
                name, True, now.timestamp(), first_run_at(entry.schedule, now)
            )
        return self[name]

    def disable(self, name: str) -> ScheduleEntry:
        """Disable ``name``: it fires no more until enabled.

        Raises:
            ScheduleNotFound: there is no such entry.
        """
        if not self.store.set_enabled(name, False, self.app.clock.time()):
            raise ScheduleNotFound(name)
        return self[name]

    def run_now(self, name: str) -> AsyncResult:
        """Send the entry's task now, leaving its schedule as it is.

        Returns:
            The result of the task sent.

        Raises:
            ScheduleNotFound: there is no such entry.
        """
        entry = self[name]
        now = self.app.clock.time()
        options = dict(entry.options)
        _, task = self.app.build_message(
            entry.task, entry.args, entry.kwargs, now=now, **options
        )
        if not self.store.run_now(name, task, now):
            raise ScheduleNotFound(name)
        logger.info("Scheduler: Sending task %s (%s) on request", name, entry.task)
        return self.app.AsyncResult(task.task_id, task_name=entry.task)

    def get(self, name: str) -> ScheduleEntry | None:
        """Return the entry ``name``, or None."""
        row = self.store.get(name)
        return None if row is None else ScheduleEntry.from_row(row)

    def list(self) -> builtins.list[ScheduleEntry]:
        """Return every entry, by name."""
        return [ScheduleEntry.from_row(row) for row in self.store.all()]

    def __getitem__(self, name: str) -> ScheduleEntry:
        entry = self.get(name)
        if entry is None:
            raise ScheduleNotFound(name)
        return entry

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.store.get(name) is not None

    def __iter__(self) -> Iterator[ScheduleEntry]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self.store.all())

    def __repr__(self) -> str:
        return f"<Schedules of {self.app!r}>"
