"""One SQLite file: connections, pragmas, write transactions, fork safety.

Rules this module enforces (see the design notes on SQLite):

* every transaction that writes starts with ``BEGIN IMMEDIATE``, so a writer
  waits for the lock instead of failing on a lock upgrade;
* one connection per thread, opened lazily in the process that uses it; a
  connection inherited across ``fork()`` is never used nor closed (closing it
  in the child could checkpoint or unlink the parent's WAL);
* a lock held longer than ``busy_timeout`` becomes :class:`DatabaseLocked`
  naming the file, and any other driver error a :class:`StorageError`, with
  the transaction rolled back, so nothing is half-written;
* waiting for the write lock happens here, in short steps
  (:data:`BUSY_SLEEPS`), not in SQLite's busy handler, whose first sleep is a
  whole millisecond while a commit holds the lock for tens of microseconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import peewee

from ..exceptions import ConfigurationError, DatabaseLocked, StorageError
from .wal import START_COMMITS, WalCheckpointer

#: Oldest SQLite with everything liteq uses (RETURNING).
MIN_SQLITE = (3, 35, 0)
#: WAL pages after which a commit checkpoints (SQLite's default is 1,000).
WAL_AUTOCHECKPOINT = 4000

#: Connections opened by this process, with the thread that owns each.
_OPEN: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []
_OPEN_LOCK = threading.Lock()
_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()
_savepoint_ids = itertools.count(1)
#: Seconds to sleep between attempts at a write lock that another connection
#: holds (the last value repeats until ``busy_timeout``). SQLite's own busy
#: handler sleeps 1, 2, 5, 10, 15... ms: measured here, a process inserting
#: while another committed every 1.5 ms waited up to 38 ms for one insert.
BUSY_SLEEPS = (0.0, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005)
#: SQLite's extended code for a write in a transaction whose snapshot is
#: stale: waiting cannot help.
_SQLITE_BUSY_SNAPSHOT = 517
_T = TypeVar("_T")

#: This process's id, kept current by the fork hook: spares every statement
#: a getpid() system call.
_pid = os.getpid()


def _before_fork() -> None:
    # SQLite keeps per-process lock bookkeeping in memory; a child that
    # inherits it believes it holds locks it does not. Closing this thread's
    # idle connections first leaves the child nothing stale in the common case
    # (a single-threaded parent); the parent reopens lazily.
    for database in list(_DATABASES):
        database._close_idle()


def _after_fork_child() -> None:
    global _OPEN_LOCK, _pid
    _pid = os.getpid()
    # Connections still open at the fork (other threads', or one inside a
    # transaction) belong to the parent: never use them, and never let them be
    # finalized here, since closing could checkpoint or delete the parent's WAL.
    inherited = [conn for _, conn in _OPEN]
    _OPEN.clear()
    _OPEN_LOCK = threading.Lock()
    if inherited:
        _leak(inherited)
    for database in list(_DATABASES):
        database._forget_connections()


def _leak(connections: list[sqlite3.Connection]) -> None:
    """Keep ``connections`` alive until the process ends, without ever closing them."""
    import ctypes

    for conn in connections:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_child)


def check_sqlite_version() -> None:
    """Raise ConfigurationError when the linked SQLite is too old."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise ConfigurationError(
            f"liteq needs SQLite >= 3.35 (for RETURNING); this Python is linked with "
            f"{sqlite3.sqlite_version}. Use a newer Python build, or install "
            "pysqlite3-binary and run with it."
        )


def translate_error(exc: BaseException, path: str) -> StorageError:
    """Return the liteq error for a driver error on the file at ``path``."""
    message = str(exc)
    lowered = message.lower()
    if "locked" in lowered or "busy" in lowered:
        return DatabaseLocked(
            f"database {path!r} is locked: another process held the write lock longer "
            f"than busy_timeout ({message})",
            path=path,
        )
    if "readonly" in lowered or "read-only" in lowered:
        return StorageError(f"database {path!r} is read-only: {message}", path=path)
    if "full" in lowered:
        return StorageError(
            f"database {path!r}: disk or database full: {message}", path=path
        )
    return StorageError(f"database {path!r}: {message}", path=path)


def is_busy(exc: BaseException, in_transaction: bool = False) -> bool:
    """Return True if ``exc`` says another connection holds the lock (worth waiting).

    Inside a transaction only a plain SQLITE_BUSY qualifies: a stale snapshot
    (SQLITE_BUSY_SNAPSHOT) never clears by waiting, and before Python 3.11
    the two cannot be told apart.
    """
    if isinstance(exc, peewee.PeeweeException):
        # peewee re-raises the driver's error as its own, chained to it.
        for inner in (*exc.args[:1], exc.__cause__, exc.__context__):
            if isinstance(inner, sqlite3.Error):
                exc = inner
                break
        else:
            return not in_transaction and "database is locked" in str(exc)
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return not in_transaction and "database is locked" in str(exc)
    return code & 0xFF == 5 and code != _SQLITE_BUSY_SNAPSHOT


def wait_for_lock(
    attempt: Callable[[], _T],
    timeout: float,
    in_transaction: Callable[[], bool] = lambda: False,
) -> _T:
    """Run ``attempt()``, again after short sleeps while the database is busy.

    Returns:
        What ``attempt`` returned.

    Raises:
        Exception: what the last attempt raised: a busy error once
            ``timeout`` seconds have passed, any other error at once.
    """
    try:
        return attempt()
    except (sqlite3.OperationalError, peewee.OperationalError) as exc:
        if not is_busy(exc, in_transaction()):
            raise
    return retry_busy(attempt, timeout, in_transaction)


def _fetch_rows(cursor: sqlite3.Cursor) -> list[Any]:
    return cursor.fetchall()


def _row_count(cursor: sqlite3.Cursor) -> int:
    return cursor.rowcount


def retry_busy(
    attempt: Callable[[], _T],
    timeout: float,
    in_transaction: Callable[[], bool] = lambda: False,
) -> _T:
    """:func:`wait_for_lock` after a first attempt found the database busy.

    For callers that make the first attempt themselves, without a closure
    (the one-statement write every ``.delay()`` makes).

    Returns:
        What ``attempt`` returned.

    Raises:
        Exception: what the last attempt raised (as :func:`wait_for_lock`).
    """
    deadline = time.monotonic() + timeout
    last = len(BUSY_SLEEPS) - 1
    tries = 0
    while True:
        time.sleep(BUSY_SLEEPS[min(tries, last)])
        tries += 1
        try:
            return attempt()
        except (sqlite3.OperationalError, peewee.OperationalError) as exc:
            if time.monotonic() >= deadline or not is_busy(exc, in_transaction()):
                raise


class _Peewee(peewee.SqliteDatabase):
    """peewee's SQLite database, waiting for the lock the way liteq does.

    liteq's connections have SQLite's busy timeout at 0 (see
    :data:`BUSY_SLEEPS`), so statements and BEGINs that the user's own models
    run on them wait here instead.
    """

    #: Seconds to wait for the lock; set by :class:`Database`.
    busy_wait = 5.0

    def execute_sql(
        self, sql: str, params: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        parent = super().execute_sql
        return wait_for_lock(
            lambda: parent(sql, params, *args, **kwargs),  # type: ignore[no-untyped-call]
            self.busy_wait,
            self._conn_in_transaction,
        )

    def begin(self, *args: Any, **kwargs: Any) -> None:
        parent = super().begin
        wait_for_lock(lambda: parent(*args, **kwargs), self.busy_wait)

    def _conn_in_transaction(self) -> bool:
        conn = self._state.conn  # type: ignore[attr-defined]
        return bool(conn is not None and conn.in_transaction)


class Database:
    """A SQLite file shared by every process of one liteq deployment.

    Args:
        path: File path; created with mode 0600 if missing.
        durable: ``synchronous=FULL`` (survives power loss) instead of NORMAL
            (survives a process crash; the last commits may be lost on power loss).
        busy_timeout: Seconds a writer waits for the lock before failing.
    """

    def __init__(
        self, path: str, durable: bool = False, busy_timeout: float = 5.0
    ) -> None:
        check_sqlite_version()
        self.path = os.path.abspath(path)
        self.durable = durable
        self.busy_timeout = busy_timeout
        pragmas = [
            # Must come first: once journal_mode=wal has written the header of
            # a new file, auto_vacuum can no longer be switched on (measured).
            # On an existing file it changes nothing.
            ("auto_vacuum", "incremental"),
            ("journal_mode", "wal"),
            ("synchronous", "full" if durable else "normal"),
            ("foreign_keys", 0),
            # 2 MB per connection (SQLite's default): the page cache becomes
            # resident memory of every connection that reads; 16 MB cost the
            # worker 13 MB during a 20,000-task drain for no measured speed.
            ("cache_size", -2000),
            ("temp_store", "memory"),
            ("journal_size_limit", 64 * 1024 * 1024),
            # Each WAL cycle costs whichever commit ends it a checkpoint and
            # the next one a header sync (ms each): 4x SQLite's default makes
            # them rarer; a worker copies most pages in a thread beforehand
            # (see liteq.worker.checkpoint).
            ("wal_autocheckpoint", WAL_AUTOCHECKPOINT),
        ]
        #: The peewee database: bind your own models to it to write in the
        #: same transactions as liteq (see ``Liteq.transaction``).
        self.pw = _Peewee(
            self.path, pragmas=pragmas, timeout=busy_timeout, autoconnect=True
        )
        self.pw.busy_wait = busy_timeout
        self._local = threading.local()
        self._commit_hooks: list[Callable[[], None]] = []
        #: Commits this process made through liteq: whoever keeps an answer
        #: read from the file can tell whether this process changed it since.
        self.commits = 0
        #: Whether a process that commits a lot checkpoints the WAL in parts
        #: from a thread (see :mod:`liteq.storage.wal`). The worker turns it
        #: off: its own checkpoint thread does that work.
        self.checkpoint_wal = True
        self._wal_checkpointer: WalCheckpointer | None = None
        # Not _ensure_lock: a commit made while the schema is ensured (under
        # that lock) may be the one that starts the thread.
        self._wal_checkpointer_lock = threading.Lock()
        self._ensure_lock = threading.Lock()
        self._ensured_pid: int | None = None
        self._ensure_callbacks: list[Callable[[Database], None]] = []
        _DATABASES.add(self)

    # -- connections -------------------------------------------------------------
    def _forget_connections(self) -> None:
        # In a forked child: locks copied from the parent may be held forever.
        self._ensure_lock = threading.Lock()
        self.pw._lock = threading.RLock()  # type: ignore[attr-defined]
        self.pw.dispose()
        self._local = threading.local()
        self._ensured_pid = None
        # The parent's thread did not come along.
        self._wal_checkpointer_lock = threading.Lock()
        if self._wal_checkpointer is not None:
            self.remove_commit_hook(self._wal_checkpointer.poke)
            self._wal_checkpointer = None

    def _close_idle(self) -> None:
        conn = getattr(self._local, "conn", None)
        if (
            conn is not None
            and self._local.pid == os.getpid()
            and not conn.in_transaction
            and not self.pw.in_transaction()
        ):
            self.close()

    def connection(self) -> sqlite3.Connection:
        """Return this thread's connection, opening it (and the schema) on first use.

        Raises:
            StorageError: the file cannot be opened or created.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if (
            conn is not None
            and self.pw._state.conn is conn  # type: ignore[attr-defined]
            and self._local.pid == _pid
        ):
            return conn
        # First use in this thread, or the user closed (and maybe reopened)
        # the peewee database, as a web app's per-request hooks do.
        return self._open()

    def _open(self) -> sqlite3.Connection:
        pid = os.getpid()
        if getattr(self._local, "pid", pid) != pid:
            self.pw.dispose()
        self._create_file()
        try:
            conn: sqlite3.Connection = self.pw.connection()  # type: ignore[no-untyped-call]
        except (peewee.PeeweeException, sqlite3.Error) as exc:
            raise translate_error(exc, self.path) from exc
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise StorageError(
                f"database {self.path!r} could not switch to WAL mode (got {mode!r}); "
                "is it on a network filesystem? Put it on a local disk.",
                path=self.path,
            )
        with _OPEN_LOCK:
            # Forget connections of finished threads (their thread-local state
            # is gone); keep this thread's until it ends.
            stale = getattr(self._local, "conn", None)
            _OPEN[:] = [
                (ref, c)
                for ref, c in _OPEN
                if (t := ref()) is not None and t.is_alive() and c is not stale
            ]
            _OPEN.append((weakref.ref(threading.current_thread()), conn))
        self._local.conn = conn
        self._local.pid = pid
        if self._ensured_pid != pid:
            try:
                with self._ensure_lock:
                    if self._ensured_pid != pid:
                        for callback in self._ensure_callbacks:
                            callback(self)
                        self._ensured_pid = pid
            except BaseException as exc:
                # Never hand out a connection to a file whose schema is not
                # ready: the next call tries again from the start.
                self.close()
                if isinstance(exc, (sqlite3.Error, peewee.PeeweeException)):
                    raise translate_error(exc, self.path) from exc
                raise
        # From here on, liteq waits for the lock itself (see BUSY_SLEEPS);
        # opening, the pragmas and the schema above still use SQLite's wait.
        conn.execute("PRAGMA busy_timeout = 0")
        return conn

    def _create_file(self) -> None:
        if os.path.exists(self.path):
            return
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            raise StorageError(
                f"directory {directory!r} for database does not exist", path=self.path
            )
        try:
            # Create the file ourselves so it is private to the user (0600);
            # SQLite gives its -wal and -shm files the same mode.
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise StorageError(
                f"cannot create database {self.path!r}: {exc}", path=self.path
            ) from exc
        os.close(fd)

    def on_open(self, callback: Callable[[Database], None]) -> None:
        """Run ``callback(db)`` once per process, at the first connection."""
        self._ensure_callbacks.append(callback)

    def close(self) -> None:
        """Close this thread's connection (outside any transaction)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            self._local.conn = None
            with _OPEN_LOCK:
                _OPEN[:] = [(ref, c) for ref, c in _OPEN if c is not conn]
            with contextlib.suppress(Exception):
                self.pw.close()

    # -- statements --------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement and return all its rows (the cursor is exhausted).

        Raises:
            StorageError: the statement failed (``DatabaseLocked`` for a busy lock).
        """
        conn = self.connection()
        try:
            return wait_for_lock(
                lambda: conn.execute(sql, params).fetchall(),
                self.busy_timeout,
                lambda: conn.in_transaction,
            )
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from exc

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run a query and return its first row, or None."""
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def in_transaction(self) -> bool:
        """Return True if this thread has a transaction open on the file."""
        conn = getattr(self._local, "conn", None)
        return bool(
            conn is not None and self._local.pid == os.getpid() and conn.in_transaction
        )

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``.

        Inside a transaction the caller already has open (``app.transaction()``
        or the user's own ``atomic()``), it becomes a SAVEPOINT, and commits
        with the caller's transaction.

        Raises:
            StorageError: the lock or a statement failed; nothing was written.
        """
        conn = self.connection()
        if conn.in_transaction:
            name = f"liteq_sp{next(_savepoint_ids)}"
            try:
                conn.execute(f"SAVEPOINT {name}")
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path) from exc
            try:
                yield conn
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
                if isinstance(exc, sqlite3.Error):
                    raise translate_error(exc, self.path) from exc
                raise
            else:
                try:
                    conn.execute(f"RELEASE {name}")
                except sqlite3.Error as exc:
                    raise translate_error(exc, self.path) from exc
                self._after_commit_later()
            return
        try:
            wait_for_lock(lambda: conn.execute("BEGIN IMMEDIATE"), self.busy_timeout)
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from exc
        try:
            yield conn
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise translate_error(exc, self.path) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise translate_error(exc, self.path) from exc
        self.notify_commit()

    def run_write(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one writing statement on its own (autocommit, or in the open txn).

        A single statement is atomic in SQLite, so no explicit BEGIN is needed.

        Returns:
            The rows the statement returned (RETURNING), fetched completely.
        """
        return self._write_one(sql, params, _fetch_rows)

    def count_write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """:meth:`run_write` for a statement without RETURNING.

        Returns:
            How many rows it inserted, updated or deleted (a RETURNING
            clause costs a commit about 2 µs, measured on an insert).
        """
        return self._write_one(sql, params, _row_count)

    def _write_one(
        self, sql: str, params: Sequence[Any], result: Callable[[sqlite3.Cursor], _T]
    ) -> _T:
        conn = self.connection()
        in_txn = conn.in_transaction
        try:
            # The first attempt inline: waiting is the rare case.
            value = result(conn.execute(sql, params))
        except sqlite3.OperationalError as exc:
            if not is_busy(exc, in_txn):
                raise translate_error(exc, self.path) from exc
            try:
                value = retry_busy(
                    lambda: result(conn.execute(sql, params)),
                    self.busy_timeout,
                    lambda: in_txn,
                )
            except sqlite3.Error as again:
                raise translate_error(again, self.path) from again
        except sqlite3.Error as exc:
            raise translate_error(exc, self.path) from exc
        if in_txn:
            self._after_commit_later()
        else:
            self.notify_commit()
        return value

    # -- commit notifications (same-process wake-ups) ------------------------------
    def add_commit_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` after every commit this process makes through liteq."""
        # Replaced, never changed in place: notify_commit iterates without a copy.
        self._commit_hooks = [*self._commit_hooks, hook]

    def remove_commit_hook(self, hook: Callable[[], None]) -> None:
        """Stop calling ``hook`` (no error if it was not registered)."""
        hooks = list(self._commit_hooks)
        with contextlib.suppress(ValueError):
            hooks.remove(hook)
        self._commit_hooks = hooks

    def notify_commit(self) -> None:
        """Tell same-process waiters that the file changed (and count the commit)."""
        self.commits += 1
        if (
            self.commits >= START_COMMITS
            and self._wal_checkpointer is None
            and self.checkpoint_wal
        ):
            self._start_wal_checkpointer()
        for hook in self._commit_hooks:
            hook()

    def _start_wal_checkpointer(self) -> None:
        with self._wal_checkpointer_lock:
            if self._wal_checkpointer is not None:
                return
            thread = WalCheckpointer(self.connection, self.close, self.path)
            thread.start()
            self._wal_checkpointer = thread
        self.add_commit_hook(thread.poke)

    def stop_wal_checkpointer(self) -> None:
        """Stop this process's WAL checkpoint thread, if it runs.

        It starts again after the next commit unless :attr:`checkpoint_wal`
        is False.
        """
        thread = self._wal_checkpointer
        if thread is not None:
            self.remove_commit_hook(thread.poke)
            thread.stop()
            self._wal_checkpointer = None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the user's open transaction commits; at once outside one.

        Inside :meth:`transaction` (a peewee transaction on this file) the
        call waits for the outermost commit and is dropped on rollback.
        """
        if self.pw.in_transaction():
            try:
                self.pw.after_commit(callback)
            except ValueError:  # no peewee transaction after all
                pass
            else:
                return
        callback()

    def _after_commit_later(self) -> None:
        # Inside the user's peewee transaction: notify when it commits.
        # (Inside a raw BEGIN of the user's, other processes still see the
        # commit through the file watcher.)
        if self.pw.in_transaction():
            with contextlib.suppress(ValueError):
                self.pw.after_commit(self.notify_commit)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[peewee.SqliteDatabase]:
        """The user's transaction on this file (``BEGIN IMMEDIATE``, nests as savepoints).

        Everything written inside — the user's own models bound to ``self.pw``,
        plain SQL on ``self.connection()``, and every ``.delay()`` — commits or
        rolls back together.
        """
        self.connection()
        atomic = self.pw.atomic("IMMEDIATE")
        try:
            atomic.__enter__()
        except (sqlite3.Error, peewee.PeeweeException) as exc:
            raise translate_error(exc, self.path) from exc
        try:
            yield self.pw
        except BaseException as exc:
            # The user's own error propagates unchanged, after the rollback.
            atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        try:
            atomic.__exit__(None, None, None)
        except (sqlite3.Error, peewee.PeeweeException) as exc:
            raise translate_error(exc, self.path) from exc
        if not self.pw.in_transaction():
            self.notify_commit()

    def data_version(self) -> int:
        """Return ``PRAGMA data_version``: it changes when another connection commits."""
        row = self.query_one("PRAGMA data_version")
        return int(row[0])

    def __repr__(self) -> str:
        return f"<Database {self.path!r}{' durable' if self.durable else ''}>"
