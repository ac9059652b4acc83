"""Results: :class:`AsyncResult`, :class:`EagerResult`, :class:`ResultSet`, :class:`GroupResult`.

Waiting (``get``) wakes on database changes (see :mod:`liteq.wakeup`), not on
a sleep of its own, and reports every state change in order to
``on_message``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import states
from .exceptions import (
    IncompleteStream,
    ResultTimeout,
    StorageError,
    TaskError,
    TaskRevokedError,
)
from .serialization import dict_to_exception, is_exception_dict
from .storage.results import GroupRow, ResultRow
from .timeutils import from_ts

if TYPE_CHECKING:
    from .app import Liteq


def assert_will_not_block() -> None:
    """Raise RuntimeError when called from inside a running task (Celery's rule).

    Waiting for another task's result inside a task can deadlock the pool; use
    a chain or chord, or pass ``disable_sync_subtasks=False`` if you must.
    """
    from .task import current_task

    task = current_task()
    if (
        task is not None
        and not task.request.called_directly
        and not task.request.is_eager
    ):
        raise RuntimeError(
            "Never call result.get() within a task! Use a chain or a chord instead, "
            "or pass disable_sync_subtasks=False."
        )


class AsyncResult:
    """The state and result of a task, read from the database.

    Args:
        id: The task id.
        app: The app whose database holds the result (default: the current app).
        task_name: The task's name, if known.
        parent: The result of the previous task in a chain.
    """

    #: The app of ``app.AsyncResult``, a subclass bound to it (None: the
    #: current app is the default).
    _bound_app: Liteq | None = None

    def __init__(
        self,
        id: str,  # noqa: A002 - Celery's parameter name
        backend: Any = None,
        task_name: str | None = None,
        app: Liteq | None = None,
        parent: AsyncResult | ResultSet | None = None,
    ) -> None:
        if app is None:
            app = self._bound_app or _current_app()
        self.app = app
        self.id = id if type(id) is str else str(id)
        self.task_name = task_name
        #: The previous result in a workflow (a chain step, a chord's header).
        self.parent: AsyncResult | ResultSet | None = parent
        #: The task was sent with ``ignore_result``: no result will be
        #: stored, and :meth:`get` returns None at once (as Celery's).
        self.ignored = False
        self._cache: dict[str, Any] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # An app cannot be pickled: the result names its database file and
        # comes back on this process's app for that file (see _app_for).
        return (
            _restore_result,
            (database_of(self.app), self.id, self.task_name, self.parent, self.ignored),
        )

    # -- reading the backend -------------------------------------------------------------
    @property
    def task_id(self) -> str:
        """Alias of ``id``."""
        return self.id

    def _get_meta(self) -> dict[str, Any]:
        if self._cache is not None:
            return self._cache
        row = self.app.storage.results.get(self.id)
        if row is None:
            queued = self.app.storage.broker.get_task_row(self.id)
            state = (
                states.RECEIVED
                if queued is not None and queued[0] == 2
                else states.PENDING
            )
            return {
                "task_id": self.id,
                "status": state,
                "result": None,
                "traceback": None,
                "children": [],
                "date_done": None,
            }
        meta = self.app.decode_result_row(row)
        if meta["status"] in states.READY_STATES:
            self._cache = meta
        return meta

    def _meta_if_ready(self) -> dict[str, Any] | None:
        # What get() looks at on every wake: one query, and no decoding nor
        # queue lookup (PENDING or RECEIVED) for a task that is not done.
        if self._cache is not None:
            return self._cache
        row = self.app.storage.results.get(self.id)
        if row is None or row.status not in states.READY_STATES:
            return None
        meta = self.app.decode_result_row(row)
        self._cache = meta
        return meta

    @property
    def state(self) -> str:
        """The task's state: PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED or custom.

        PENDING also covers ids nobody ever queued; :meth:`exists` tells them apart.
        """
        return str(self._get_meta()["status"])

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception (FAILURE), or the ``meta`` of a custom state."""
        return self._get_meta()["result"]

    info = result

    @property
    def traceback(self) -> str | None:
        """The formatted traceback of a failure, or None."""
        tb = self._get_meta()["traceback"]
        return str(tb) if tb is not None else None

    @property
    def date_done(self) -> datetime | None:
        """When the task reached its state (aware UTC), or None."""
        value = self._get_meta()["date_done"]
        return (
            value
            if value is None or isinstance(value, datetime)
            else from_ts(float(value))
        )

    @property
    def children(self) -> list[AsyncResult]:
        """Results of the tasks this task started: those it sent while running
        (``Task.trail``), then its callbacks or a chain's next step."""
        return [
            self.app.AsyncResult(c) if isinstance(c, str) else c
            for c in self._get_meta().get("children") or []
        ]

    def iterdeps(
        self, intermediate: bool = False
    ) -> Iterator[tuple[AsyncResult | None, AsyncResult]]:
        """Walk this result and its :attr:`children`, breadth first, as Celery's.

        Yields:
            ``(parent, result)`` pairs, ``(None, self)`` first.

        Raises:
            IncompleteStream: a task on the way has not finished (unless
                ``intermediate``: then its children are just not walked).
        """
        pending: deque[tuple[AsyncResult | None, AsyncResult]] = deque([(None, self)])
        while pending:
            parent, node = pending.popleft()
            yield parent, node
            if node.ready():
                pending.extend((node, child) for child in node.children)
            elif not intermediate:
                raise IncompleteStream(f"task {node.id} has not finished")

    def collect(
        self, intermediate: bool = False, **kwargs: Any
    ) -> Iterator[tuple[AsyncResult, Any]]:
        """Yield ``(result, value)`` for this task and every task it started, as Celery's.

        The tasks a task sends while it runs are its children (``Task.trail``),
        as are its callbacks and a chain's next step. Each task is waited for
        in turn with :meth:`get`, which ``kwargs`` go to.

        Raises:
            ResultTimeout: a ``timeout`` in ``kwargs`` ran out.
            Exception: a task's exception, as :meth:`get` raises it.
        """
        for _parent, node in self.iterdeps(intermediate=intermediate):
            yield node, node.get(**kwargs)

    @property
    def parent_id(self) -> str | None:
        """The id of the task that started this one (a chain's previous step), if stored."""
        return self._get_meta().get("parent_id")

    @property
    def root_id(self) -> str | None:
        """The id of the first task of this task's workflow, if stored."""
        return self._get_meta().get("root_id")

    @property
    def group_id(self) -> str | None:
        """The group (or chord header) this task belongs to, if stored."""
        return self._get_meta().get("group_id")

    @property
    def name(self) -> str | None:
        """The task name (stored with ``result_extended``)."""
        return self._get_meta().get("name") or self.task_name

    @property
    def args(self) -> Any:
        """The task's positional arguments (stored with ``result_extended``)."""
        return self._get_meta().get("args")

    @property
    def kwargs(self) -> Any:
        """The task's keyword arguments (stored with ``result_extended``)."""
        return self._get_meta().get("kwargs")

    @property
    def worker(self) -> str | None:
        """The hostname of the worker that ran the task."""
        return self._get_meta().get("worker")

    @property
    def retries(self) -> int | None:
        """How many times the task was retried."""
        return self._get_meta().get("retries")

    @property
    def queue(self) -> str | None:
        """The queue the task ran from."""
        return self._get_meta().get("queue")

    def ready(self) -> bool:
        """Return True if the task finished (SUCCESS, FAILURE or REVOKED)."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        """Return True if the task returned without error."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """Return True if the task failed."""
        return self.state == states.FAILURE

    def exists(self) -> bool:
        """Return True if the id is queued, running or has a stored state.

        Celery reports PENDING for unknown ids; this tells an unknown id from
        a queued one.
        """
        return self.app.storage.results.exists(self.id)

    # -- waiting -------------------------------------------------------------------------
    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        no_ack: bool = True,
        follow_parents: bool = True,
        callback: Callable[[str, Any], Any] | None = None,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
        disable_sync_subtasks: bool = True,
        EXCEPTION_STATES: frozenset[str] = states.EXCEPTION_STATES,  # noqa: N803
        PROPAGATE_STATES: frozenset[str] = states.PROPAGATE_STATES,  # noqa: N803
    ) -> Any:
        """Wait for the task to finish and return its result.

        Args:
            timeout: Seconds to wait; None waits forever.
            propagate: Re-raise the task's exception (FAILURE, REVOKED).
            interval: Seconds between fallback checks when no change
                notification arrives (wake-ups are event driven).
            on_message: Called with every state change, in order, as a
                Celery meta dict (``{"status", "result", "traceback", ...}``),
                including PROGRESS updates and the final state.
            on_interval: Called on every wake-up while waiting.
            disable_sync_subtasks: Refuse to block inside a running task.
            follow_parents: In a chain, re-raise a failed parent's error.

        Returns:
            The task's return value (or the exception, with ``propagate=False``);
            None at once for a task sent with ``ignore_result`` (:attr:`ignored`).

        Raises:
            ResultTimeout: the timeout ran out (``liteq.exceptions.TimeoutError``).
            Exception: the task's exception, with ``propagate``; in a chain,
                a parent's, as soon as that parent fails or is revoked.
            RuntimeError: called inside a task with ``disable_sync_subtasks``.
        """
        if self.ignored:
            return None
        if disable_sync_subtasks:
            assert_will_not_block()
        if follow_parents and propagate and self.parent is not None:
            self._raise_failed_parent()
            # And at every wake-up while waiting: a step whose parent failed
            # or was revoked never runs.
            on_interval = _then(self._raise_failed_parent, on_interval)
        meta = self._wait(timeout, interval, on_message, on_interval)
        if callback is not None:
            callback(self.id, meta["result"])
        return self._maybe_raise(meta, propagate, PROPAGATE_STATES)

    wait = get

    def _data_version(self) -> int:
        # Tells get() when a commit it was woken for has become visible.
        try:
            return self.app.storage.db.data_version()
        except StorageError:
            return -1  # unreadable: let the check itself find out

    def _raise_failed_parent(self) -> None:
        node = self.parent
        while node is not None:
            node.maybe_throw()
            node = node.parent

    def _wait(
        self,
        timeout: float | None,
        interval: float,
        on_message: Callable[[dict[str, Any]], Any] | None,
        on_interval: Callable[[], Any] | None,
    ) -> dict[str, Any]:
        if self._cache is not None:
            if on_message is not None:
                on_message(self._cache)
            return self._cache
        results = self.app.storage.results
        cursor = 0

        def check() -> dict[str, Any] | None:
            nonlocal cursor
            if on_interval is not None:
                on_interval()
            if on_message is None:
                return self._meta_if_ready()
            row = results.get(self.id)
            for event in results.events_since(self.id, cursor):
                cursor = event.id
                on_message(self.app.decode_event(event))
            if row is not None and row.status in states.READY_STATES:
                meta = self.app.decode_result_row(row)
                self._cache = meta
                on_message(meta)
                return meta
            return None

        meta = self.app.waker.wait_for(
            check,
            timeout,
            self.app.clock,
            fallback=max(interval, 0.05),
            version=self._data_version,
        )
        if meta is None:
            raise ResultTimeout(f"The operation timed out waiting for task {self.id}")
        return meta

    def _maybe_raise(
        self, meta: dict[str, Any], propagate: bool, propagate_states: frozenset[str]
    ) -> Any:
        result = meta["result"]
        if propagate and meta["status"] in propagate_states:
            if isinstance(result, BaseException):
                raise _raisable(self.id, result)
            if meta["status"] == states.REVOKED:
                raise TaskRevokedError(f"task {self.id} was revoked")
        return result

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> None:
        """Raise the task's exception if it failed (and ``propagate``)."""
        self._maybe_raise(self._get_meta(), propagate, states.PROPAGATE_STATES)

    maybe_reraise = maybe_throw

    def then(
        self,
        callback: Callable[[AsyncResult], Any],
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult:
        """Call ``callback(result)`` once the task is ready, from a background thread.

        Errors raised by ``callback`` go to ``on_error`` (or are logged).

        Returns:
            This result.
        """
        self.app.result_watcher.add(self, callback, on_error)
        return self

    # -- acting on the task ------------------------------------------------------------------
    def forget(self) -> None:
        """Delete the stored result (and state history)."""
        self._cache = None
        self.app.storage.results.forget([self.id])

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Revoke the task: a queued task never runs; with ``terminate`` a running one is killed.

        Revokes are stored in the database, so they survive restarts and apply
        to tasks queued while no worker runs.
        """
        self.app.control.revoke(self.id, terminate=terminate, signal=signal)
        if wait:
            self.app.waker.wait_for(
                lambda: True if self.state in states.READY_STATES else None,
                timeout,
                self.app.clock,
            )

    def get_leaf(self) -> Any:
        """Celery compatibility: the result of this task (no dependency graph here)."""
        return self.get()

    def as_tuple(self) -> tuple[Any, ...]:
        """Return ``((id, parent tuple), None)`` as Celery's serializable form."""
        parent = (
            self.parent.as_tuple()
            if isinstance(self.parent, (AsyncResult, GroupResult))
            else None
        )
        return ((self.id, parent), None)

    def build_graph(
        self,
    ) -> dict[str, Any]:  # pragma: no cover - Celery has it; rarely used
        """Return a minimal ``{id: [children ids]}`` map."""
        return {self.id: [c.id for c in self.children]}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return self.id


class EagerResult(AsyncResult):
    """The result of a task run in this process (``apply`` / ``task_always_eager``)."""

    def __init__(
        self,
        id: str,  # noqa: A002
        ret_value: Any,
        state: str,
        traceback: str | None = None,
        name: str | None = None,
        app: Liteq | None = None,
        retries: int = 0,
    ) -> None:
        super().__init__(id, task_name=name, app=app)
        self._meta = {
            "task_id": id,
            "status": state,
            "result": ret_value,
            "traceback": traceback,
            "children": [],
            "date_done": None,
            "name": name,
            "retries": retries,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_eager, (database_of(self.app), self.id, dict(self._meta)))

    def _get_meta(self) -> dict[str, Any]:
        return self._meta

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        no_ack: bool = True,
        follow_parents: bool = True,
        callback: Callable[[str, Any], Any] | None = None,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        on_interval: Callable[[], Any] | None = None,
        disable_sync_subtasks: bool = True,
        EXCEPTION_STATES: frozenset[str] = states.EXCEPTION_STATES,  # noqa: N803
        PROPAGATE_STATES: frozenset[str] = states.PROPAGATE_STATES,  # noqa: N803
    ) -> Any:
        """Return the result at once (re-raising the exception with ``propagate``)."""
        if on_message is not None:
            on_message(self._meta)
        if callback is not None:
            callback(self.id, self._meta["result"])
        return self._maybe_raise(self._meta, propagate, PROPAGATE_STATES)

    wait = get

    def forget(self) -> None:
        """Nothing is stored for an eager result unless ``task_store_eager_result``."""
        if self.app.conf.task_store_eager_result:
            super().forget()

    def revoke(self, *args: Any, **kwargs: Any) -> None:
        """Mark the eager result REVOKED (it already ran)."""
        self._meta["status"] = states.REVOKED

    def exists(self) -> bool:
        """An eager result always exists."""
        return True


class ResultSet:
    """Several results, waited on together; ``join()`` returns them in order.

    Members are task results or (for a chain ending in a group) group results.
    """

    #: The app of ``app.GroupResult``, a subclass bound to it.
    _bound_app: Liteq | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_set, (database_of(self.app), self.results, self.parent))

    def __init__(
        self,
        results: Sequence[AsyncResult | GroupResult],
        app: Liteq | None = None,
        **kwargs: Any,
    ) -> None:
        self.results: list[AsyncResult | GroupResult] = list(results)
        if app is None:
            app = self._bound_app
        if app is None and self.results:
            app = self.results[0].app
        if app is None:
            app = _current_app()
        self.app: Liteq = app
        #: The previous result in a workflow, if any.
        self.parent: AsyncResult | ResultSet | None = kwargs.get("parent")

    def add(self, result: AsyncResult | GroupResult) -> None:
        """Add a result to the set."""
        if result not in self.results:
            self.results.append(result)

    def update(self, results: Iterable[AsyncResult | GroupResult]) -> None:
        """Add several results to the set."""
        for result in results:
            self.add(result)

    def remove(self, result: AsyncResult | GroupResult | str) -> None:
        """Remove a result (or the result with that id) from the set.

        Raises:
            KeyError: it is not in the set.
        """
        for member in self.results:
            if member == result:
                self.results.remove(member)
                return
        raise KeyError(result)

    def discard(self, result: AsyncResult | GroupResult | str) -> None:
        """Remove a result if present."""
        with contextlib.suppress(KeyError):
            self.remove(result)

    def clear(self) -> None:
        """Remove every result."""
        self.results.clear()

    # -- reading -----------------------------------------------------------------------
    def _is_eager(self) -> bool:
        return all(
            m._is_eager() if isinstance(m, ResultSet) else isinstance(m, EagerResult)
            for m in self.results
        )

    def _metas(self) -> list[dict[str, Any]]:
        """The current meta of every member, in order (one query for stored ones)."""
        stored = [
            r.id
            for r in self.results
            if not isinstance(r, (EagerResult, ResultSet)) and r._cache is None
        ]
        rows = self.app.storage.results.get_many(stored) if stored else {}
        metas: list[dict[str, Any]] = []
        for member in self.results:
            if isinstance(member, ResultSet):
                metas.append(member._aggregate_meta())
            elif isinstance(member, EagerResult) or member._cache is not None:
                metas.append(member._get_meta())
            else:
                row = rows.get(member.id)
                if row is None:
                    metas.append(_pending_meta(member.id))
                    continue
                meta = self.app.decode_result_row(row)
                if meta["status"] in states.READY_STATES:
                    member._cache = meta
                metas.append(meta)
        return metas

    def _aggregate_meta(self) -> dict[str, Any]:
        """This set as one meta: FAILURE if a member failed, SUCCESS when all did."""
        metas = self._metas()
        for meta in metas:
            if meta["status"] in states.PROPAGATE_STATES:
                return {**meta, "result": meta["result"]}
        if all(m["status"] == states.SUCCESS for m in metas):
            return {"status": states.SUCCESS, "result": [m["result"] for m in metas]}
        return {"status": states.PENDING, "result": None, "traceback": None}

    def ready(self) -> bool:
        """Return True when every result is ready."""
        return all(m["status"] in states.READY_STATES for m in self._metas())

    def successful(self) -> bool:
        """Return True when every task succeeded."""
        return all(m["status"] == states.SUCCESS for m in self._metas())

    def failed(self) -> bool:
        """Return True when any task failed."""
        return any(m["status"] == states.FAILURE for m in self._metas())

    def waiting(self) -> bool:
        """Return True while any task is not ready."""
        return not self.ready()

    def completed_count(self) -> int:
        """Return how many tasks succeeded."""
        return sum(1 for m in self._metas() if m["status"] == states.SUCCESS)

    @property
    def state(self) -> str:
        """FAILURE if any failed, SUCCESS when all succeeded, else PENDING."""
        return str(self._aggregate_meta()["status"])

    @property
    def result(self) -> list[Any]:
        """The current results, in order (None where not ready)."""
        return [m["result"] for m in self._metas()]

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> None:
        """Raise the first failed member's exception (in order), if any."""
        if not propagate:
            return
        for member, meta in zip(self.results, self._metas(), strict=True):
            if meta["status"] in states.PROPAGATE_STATES:
                _raise_meta(member, meta)

    maybe_reraise = maybe_throw

    # -- acting -------------------------------------------------------------------------
    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Revoke every task in the set."""
        self.app.control.revoke(
            [r.id for r in self._leaves()], terminate=terminate, signal=signal
        )

    def forget(self) -> None:
        """Delete every stored result of the set."""
        self.app.storage.results.forget([r.id for r in self._leaves()])

    def _leaves(self) -> list[AsyncResult]:
        leaves: list[AsyncResult] = []
        for member in self.results:
            if isinstance(member, ResultSet):
                leaves.extend(member._leaves())
            else:
                leaves.append(member)
        return leaves

    # -- waiting ------------------------------------------------------------------------
    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        no_ack: bool = True,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        disable_sync_subtasks: bool = True,
        on_interval: Callable[[], Any] | None = None,
    ) -> list[Any]:
        """Wait for every task and return the results in order (see :meth:`join`)."""
        return self.join(
            timeout=timeout,
            propagate=propagate,
            interval=interval,
            callback=callback,
            on_message=on_message,
            disable_sync_subtasks=disable_sync_subtasks,
            on_interval=on_interval,
        )

    def join(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        callback: Callable[[str, Any], Any] | None = None,
        no_ack: bool = True,
        on_message: Callable[[dict[str, Any]], Any] | None = None,
        disable_sync_subtasks: bool = True,
        on_interval: Callable[[], Any] | None = None,
    ) -> list[Any]:
        """Wait for every task; return their results in the order of the set.

        Waiting wakes on database changes. With ``propagate``, the first
        failure (in order) is raised as soon as it is stored.

        Args:
            timeout: Seconds to wait; None waits forever.
            propagate: Re-raise a failed task's exception.
            interval: Seconds between fallback checks without a wake-up.
            callback: Called as ``callback(task_id, result)`` for each task;
                the return value is then None.
            on_message: Called with each task's final meta dict, in order.
            disable_sync_subtasks: Refuse to block inside a running task.
            on_interval: Called on every wake-up while waiting.

        Returns:
            The results, in order (nested groups give nested lists).

        Raises:
            ResultTimeout: ``timeout`` seconds passed before all were ready.
            Exception: the first failed task's exception, with ``propagate``.
        """
        if disable_sync_subtasks:
            assert_will_not_block()

        def check() -> list[dict[str, Any]] | None:
            if on_interval is not None:
                on_interval()
            metas = self._metas()
            if all(m["status"] in states.READY_STATES for m in metas):
                return metas
            if propagate and any(m["status"] in states.PROPAGATE_STATES for m in metas):
                return metas
            return None

        if self._is_eager():
            metas: list[dict[str, Any]] | None = self._metas()
        else:
            metas = self.app.waker.wait_for(
                check, timeout, self.app.clock, fallback=max(interval, 0.05)
            )
        if metas is None:
            raise ResultTimeout(
                "The operation timed out waiting for the group's results"
            )
        values: list[Any] = []
        for member, meta in zip(self.results, metas, strict=True):
            if propagate and meta["status"] in states.PROPAGATE_STATES:
                _raise_meta(member, meta)
            if on_message is not None:
                on_message(meta)
            if callback is not None:
                callback(member.id, meta["result"])
            values.append(meta["result"])
        return [] if callback is not None else values

    join_native = join

    def iterate(
        self, timeout: float | None = None, propagate: bool = True
    ) -> Iterator[Any]:
        """Yield results in order as they become ready."""
        for result in self.results:
            yield result.get(timeout=timeout, propagate=propagate)

    def __iter__(self) -> Iterator[AsyncResult | GroupResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> AsyncResult | GroupResult:
        return self.results[index]

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"


def _pending_meta(task_id: str) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "status": states.PENDING,
        "result": None,
        "traceback": None,
        "children": [],
        "date_done": None,
    }


def _raise_meta(member: AsyncResult | GroupResult, meta: dict[str, Any]) -> None:
    """Raise the exception a failed (or revoked) member stored."""
    if isinstance(meta["result"], BaseException):
        raise _raisable(member.id, meta["result"])
    raise TaskRevokedError(f"task {member.id} was revoked")


def _then(
    first: Callable[[], Any], second: Callable[[], Any] | None
) -> Callable[[], Any]:
    if second is None:
        return first

    def both() -> None:
        first()
        second()

    return both


def _raisable(task_id: str, exc: BaseException) -> Exception:
    """Return what ``get()`` raises for the exception a task stored.

    The exception itself, unless it is no :class:`Exception`: a task that
    raised ``SystemExit`` or ``KeyboardInterrupt`` ended FAILURE, and its
    caller gets a :class:`~liteq.exceptions.TaskError` (the stored exception
    as its ``__cause__``) rather than an exit or an interrupt of its own.
    """
    if isinstance(exc, Exception):
        return exc
    error = TaskError(f"task {task_id} raised {exc!r}")
    error.__cause__ = exc
    return error


class GroupResult(ResultSet):
    """The results of a group, in header order; can be saved and restored by id.

    Args:
        id: The group id (members carry it as ``group_id``).
        results: The member results, in order.
        parent: The previous result in a workflow, if any.
        app: The app.
    """

    def __init__(
        self,
        id: str | None = None,  # noqa: A002
        results: Sequence[AsyncResult | GroupResult] | None = None,
        parent: AsyncResult | ResultSet | None = None,
        app: Liteq | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(results or [], app=app, parent=parent)
        from .messages import new_id

        self.id = id or new_id()

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _restore_group,
            (database_of(self.app), self.id, self.results, self.parent),
        )

    def save(self, backend: Any = None) -> GroupResult:
        """Store the member ids so :meth:`restore` can rebuild the group.

        Saving a chord's header group keeps the chord's counter and body.

        Returns:
            This group.
        """
        storage = self.app.storage
        now = self.app.clock.time()
        expires = self.app.result_expires_seconds()
        with storage.db.write():
            # Read and write in one transaction: a header part finishing
            # meanwhile must not be lost from the chord's counter.
            existing = storage.results.get_group(self.id)
            row = GroupRow(
                self.id,
                [r.id for r in self.results],
                expires_at=now + expires if expires else None,
            )
            if existing is not None and existing.body is not None:
                row.remaining = existing.remaining
                row.body = existing.body
                row.content_type = existing.content_type
                row.expires_at = existing.expires_at
            storage.results.save_group(row, now)
        return self

    def delete(self, backend: Any = None) -> None:
        """Delete the saved group (the members' results stay)."""
        self.app.storage.results.delete_group(self.id)

    @classmethod
    def restore(
        cls,
        id: str,  # noqa: A002
        backend: Any = None,
        app: Liteq | None = None,
    ) -> GroupResult | None:
        """Return the saved group ``id`` (chord headers are saved), or None.

        Returns:
            The group with its members in order, or None if it was never
            saved or has expired.
        """
        if app is None:
            app = cls._bound_app or _current_app()
        row = app.storage.results.get_group(id)
        if row is None:
            return None
        return cls(id, [app.AsyncResult(t) for t in row.task_ids], app=app)

    @property
    def children(self) -> list[AsyncResult | GroupResult]:
        """The member results."""
        return self.results

    def as_tuple(self) -> tuple[Any, ...]:
        """Return ``((id, parent), [member tuples])``."""
        parent = (
            self.parent.as_tuple()
            if isinstance(self.parent, (AsyncResult, GroupResult))
            else None
        )
        return ((self.id, parent), [r.as_tuple() for r in self.results])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return other.id == self.id and other.results == self.results
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"


class ResultWatcher:
    """Runs ``AsyncResult.then`` callbacks when their results become ready."""

    def __init__(self, app: Liteq) -> None:
        self.app = app
        self._pending: list[
            tuple[AsyncResult, Callable[..., Any], Callable[..., Any] | None]
        ] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(
        self,
        result: AsyncResult,
        callback: Callable[..., Any],
        on_error: Callable[..., Any] | None,
    ) -> None:
        """Watch ``result``; call ``callback(result)`` when it is ready."""
        with self._lock:
            self._pending.append((result, callback, on_error))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="liteq-then", daemon=True
                )
                self._thread.start()
        self.app.waker.notify()

    def _fire_ready(self) -> bool:
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return True
        rows = self.app.storage.results.get_many([r.id for r, _, _ in pending])
        fired = []
        for item in pending:
            row: ResultRow | None = rows.get(item[0].id)
            if row is None or row.status not in states.READY_STATES:
                continue
            fired.append(item)
            result, callback, on_error = item
            try:
                callback(result)
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)
                else:
                    import logging

                    logging.getLogger(__name__).exception("then() callback failed")
        with self._lock:
            self._pending = [p for p in self._pending if p not in fired]
            return not self._pending

    def _run(self) -> None:
        from .clock import SYSTEM_CLOCK

        while True:
            # A background thread really waits, whatever clock the app uses
            # (an injected fake clock would make this loop spin).
            self.app.waker.wait_for(
                lambda: True if self._fire_ready() else None, None, SYSTEM_CLOCK
            )
            with self._lock:
                # add() may have queued a callback after the last check.
                if not self._pending:
                    self._thread = None
                    return

    def _decode(self, value: Any) -> Any:  # pragma: no cover - kept for symmetry
        return dict_to_exception(value) if is_exception_dict(value) else value


# -- pickling --------------------------------------------------------------------------


def _current_app() -> Liteq:
    from .app import current_app

    return current_app()


def database_of(app: Liteq) -> str | None:
    """The absolute path of ``app``'s database file, read from its settings (None: none)."""
    storage = app._storage
    if storage is not None:
        return storage.path
    from .config import resolve_database
    from .exceptions import ConfigurationError

    try:
        url = resolve_database(app.conf.broker_url, app.conf.result_backend)
    except ConfigurationError:
        return None
    return os.path.abspath(url.path)


def _app_for(database: str | None) -> Liteq:
    """This process's app for ``database``: the current one, another, or a new one."""
    from .app import Liteq
    from .exceptions import ConfigurationError
    from .registry import _apps

    try:
        current: Liteq | None = _current_app()
    except ConfigurationError:  # no app in this process yet
        current = None
    if current is not None and (database is None or database_of(current) == database):
        return current
    for app in reversed(_apps):
        if database_of(app) == database:
            return app
    return Liteq(broker=database, set_as_current=False)


def _restore_result(
    database: str | None,
    id: str,  # noqa: A002
    task_name: str | None,
    parent: AsyncResult | ResultSet | None,
    ignored: bool = False,
) -> AsyncResult:
    result = _app_for(database).AsyncResult(id, task_name=task_name, parent=parent)
    result.ignored = ignored
    return result


def _restore_eager(database: str | None, id: str, meta: dict[str, Any]) -> EagerResult:  # noqa: A002
    return EagerResult(
        id,
        meta["result"],
        meta["status"],
        traceback=meta.get("traceback"),
        name=meta.get("name"),
        app=_app_for(database),
        retries=meta.get("retries", 0),
    )


def _restore_set(
    database: str | None,
    results: list[AsyncResult | GroupResult],
    parent: AsyncResult | ResultSet | None,
) -> ResultSet:
    return ResultSet(results, app=_app_for(database), parent=parent)


def _restore_group(
    database: str | None,
    id: str,  # noqa: A002
    results: list[AsyncResult | GroupResult],
    parent: AsyncResult | ResultSet | None,
) -> GroupResult:
    return _app_for(database).GroupResult(id, results, parent=parent)
