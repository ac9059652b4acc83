"""The prefork pool's child process: run the tasks the parent hands over.

The child is started with ``spawn`` or ``forkserver``, never plain ``fork``
of a process holding a database connection. It receives only picklable data
(:class:`ChildSpec`), re-imports the app from its import path (or builds an
equivalent one from the database path and settings) and then loops: receive
a batch of claimed tasks, run them, send back their :class:`~.runner.Report`. It never
claims: the parent does the queue work, and acks batches. A batch of one
task that the parent claimed from a queue it found empty (a lone task) is
acked here, right after it ran, before the report goes back: whoever waits
for its result need not wait for the parent too. The child opens its own
database connection lazily, for these acks and ``update_state``, STARTED,
subtasks.

Messages are pickled tuples. Parent to child, on the main pipe:
``("run", [(seq, claimed), ...], marked, ack)`` — a batch, run in order
(``marked``: see :mod:`.handoff`; ``ack``: a lone task to ack here) — and
``("stop",)``; on a control pipe read by a second thread, so that it is
answered even while a task runs: ``("cancel", seqs)`` and ``("terminate",
seq, signum)``. Child to parent: ``("ready", pid)``, ``("error", text)``,
``("done", [(seq, report), ...], skipped_seqs, retire, end_of_batch)`` and
``("cancelled", seqs, signum)`` (those tasks will not start). Which task
runs, and its hard deadline, are kept in memory shared with the parent
(:class:`_State`), so that a batch costs one message each way however many
tasks it holds.

Signals: SIGINT and SIGHUP are ignored (the parent decides how to shut
down); SIGTERM keeps its default action, which ``revoke(terminate=True)``
uses; SIGALRM raises :class:`~liteq.exceptions.SoftTimeLimitExceeded` while a
task with a soft time limit runs; a terminate request makes the child
signal itself. The child exits by itself when the parent process
disappears (its control pipe closes), so a killed worker leaves no task
running behind it.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from .. import signals
from ..exceptions import SoftTimeLimitExceeded
from ..log import (
    TaskFormatter,
    current_process_index,
    logfile_for_process,
    logging_set_up,
    real_stream,
    redirect_stdouts,
    setup_logging_taken_over,
    worker_logging,
)
from ..result import database_of
from .frames import FrameReader
from .handoff import StartMarks
from .runner import Limits, Report, failed_outcome, prepare, run_task, store_completion

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ..app import Liteq
    from ..execution import Outcome
    from ..storage import Completion
    from ..storage.broker import Claimed

logger = logging.getLogger("liteq.worker")


@dataclass(frozen=True)
class LogSpec:
    """How the parent logs, so that a spawned child logs the same way."""

    level: int
    #: ``"stderr"``, ``"stdout"``, a file path, or None (leave logging alone).
    target: str | None = None
    fmt: str | None = None
    task_fmt: str | None = None
    #: Send ``sys.stdout``/``sys.stderr`` to the log at this level (None: don't);
    #: set only under ``liteq worker`` (``worker_redirect_stdouts``).
    redirect_level: int | None = None
    #: The log file with ``%i``/``%I`` still to expand: each child opens its
    #: own (see :func:`liteq.log.logfile_for_process`) instead of ``target``.
    logfile_template: str | None = None
    #: The worker's ``-l`` level, given to the logging signals (None: ``level``).
    loglevel: int | None = None


@dataclass(frozen=True)
class ChildSpec:
    """Everything a child needs, all picklable."""

    #: ``"module:attr"`` of the app; None: build one from ``database``.
    app_path: str | None
    #: The database file.
    database: str
    #: Settings for an app built from ``database`` (picklable values only).
    settings: dict[str, Any] = field(default_factory=dict)
    #: Modules to import at start (see :func:`.spec.start_modules`).
    modules: tuple[str, ...] = ()
    hostname: str = "liteq@localhost"
    autoimport: bool = True
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_tasks: int | None = None
    #: KiB of resident memory after which the child is replaced.
    max_memory: int | None = None
    log: LogSpec | None = None
    #: Build the SUCCESS log line (the parent logs at INFO).
    info: bool = False


def capture_logging(info: bool) -> LogSpec:
    """Describe the root logger's level and first real output, for children."""
    root = logging.getLogger()

    def describe(handlers: list[logging.Handler]) -> tuple[str | None, str | None]:
        for handler in handlers:
            fmt = getattr(handler.formatter, "_fmt", None)
            if isinstance(handler, logging.FileHandler):
                return handler.baseFilename, fmt
            stream = getattr(handler, "stream", None)
            try:
                fd = stream.fileno() if stream is not None else -1
            except (OSError, ValueError, AttributeError):
                continue
            if fd == 2:
                return "stderr", fmt
            if fd == 1:
                return "stdout", fmt
            name = getattr(stream, "name", None)
            if isinstance(name, str) and os.path.isfile(name):
                return name, fmt
        return None, None

    target, fmt = describe(root.handlers)
    _, task_fmt = describe(logging.getLogger("liteq.task").handlers)
    redirect_level = template = loglevel = None
    settings = worker_logging()
    if settings is not None:
        redirect_level = settings.redirect_level
        loglevel = settings.loglevel
        # Only if the main process logs to that template's file (index 0),
        # not to a handler someone else put first on the root logger.
        if (
            settings.logfile is not None
            and target not in (None, "stderr", "stdout")
            and os.path.abspath(str(target))
            == os.path.abspath(logfile_for_process(settings.logfile, 0))
        ):
            template = settings.logfile
    return LogSpec(
        root.level, target, fmt, task_fmt, redirect_level, template, loglevel
    )


def _apply_logging(spec: LogSpec | None) -> None:
    if spec is None:
        return
    root = logging.getLogger()
    root.setLevel(spec.level)
    if spec.target is not None:
        _log_to(spec, root)
    if spec.redirect_level is not None:
        # After the handlers, which hold the real stream: a task's print()
        # becomes a record such as "WARNING/PoolWorker-1] hello".
        redirect_stdouts(spec.redirect_level)


def _log_to(spec: LogSpec, root: logging.Logger) -> None:
    for old in list(root.handlers):
        root.removeHandler(old)
    target = spec.target
    if spec.logfile_template is not None:
        target = logfile_for_process(spec.logfile_template, current_process_index())
    if target == "stderr":
        # Never a redirected stream: the handler's records would loop back.
        stream: Any = real_stream(sys.stderr)
    elif target == "stdout":
        stream = real_stream(sys.stdout)
    else:
        # Open for the life of the process.
        stream = open(str(target), "a", encoding="utf-8")  # noqa: SIM115
    handler = logging.StreamHandler(stream)
    if spec.fmt:
        handler.setFormatter(logging.Formatter(spec.fmt))
    root.addHandler(handler)
    if spec.task_fmt:
        task_handler = logging.StreamHandler(stream)
        task_handler.setFormatter(TaskFormatter(spec.task_fmt))
        task_logger = logging.getLogger("liteq.task")
        # Whatever this process inherited: a task line is written once.
        for old in list(task_logger.handlers):
            task_logger.removeHandler(old)
        task_logger.addHandler(task_handler)
        task_logger.propagate = False


def _logging_signals(spec: LogSpec | None) -> None:
    """Send the logging signals here, as a Celery pool process does.

    Once the app's modules are imported, so that their receivers listen: a
    ``setup_logging`` receiver configures this process's logging itself;
    otherwise ``after_setup_logger`` and ``after_setup_task_logger`` receivers
    may add to what the worker set up.
    """
    if spec is None:
        return
    logfile = spec.target if spec.target not in (None, "stderr", "stdout") else None
    level = spec.level if spec.loglevel is None else spec.loglevel
    if not setup_logging_taken_over(level, logfile, spec.fmt):
        logging_set_up(level, logfile, spec.fmt)


def load_app(spec: ChildSpec) -> Liteq:
    """Import the app (or build it from the database path) and its task modules.

    Raises:
        Exception: the app or a task module cannot be imported.
    """
    from ..app import Liteq
    from ..config import import_object

    app: Liteq | None = None
    if spec.app_path:
        module, _, attr = spec.app_path.partition(":")
        if module == "__main__":
            # spawn and forkserver import the parent's main script under this name.
            module = "__mp_main__" if "__mp_main__" in sys.modules else ""
        if module:
            found = import_object(f"{module}:{attr or 'app'}")
            if not isinstance(found, Liteq):
                raise TypeError(f"{spec.app_path} is not a liteq app: {found!r}")
            app = found
    if app is None:
        app = Liteq(broker=spec.database, **spec.settings)
    elif database_of(app) != spec.database:
        # The worker's file wins (``liteq -A proj worker other.db``): the
        # child must write states and subtasks where its parent acks.
        app.config_from_object({"broker_url": spec.database, "result_backend": None})
    for name in spec.modules:
        if name not in sys.modules:
            importlib.import_module(name)
    app.import_modules()
    return app


class _SoftAlarm:
    """Raises SoftTimeLimitExceeded in this (main) thread after a delay."""

    def __init__(self) -> None:
        self.armed = False
        self.usable = hasattr(signal, "setitimer")
        if self.usable:
            signal.signal(signal.SIGALRM, self._fire)

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False
            raise SoftTimeLimitExceeded("soft time limit exceeded")

    def arm(self, seconds: float | None) -> None:
        if seconds is not None and self.usable:
            self.armed = True
            signal.setitimer(signal.ITIMER_REAL, seconds)

    def disarm(self) -> None:
        # Only ``arm`` starts the (one-shot) timer and sets ``armed``; the
        # timer firing clears it: nothing can be pending when it is False.
        if self.armed:
            self.armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)


def _memory_over(limit_kib: int | None) -> bool:
    if not limit_kib:
        return False
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return False
    used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # pragma: no cover - bytes there
        used //= 1024
    return used > limit_kib


#: Slots of the array a child shares with the parent (doubles).
RUNNING, STARTED, DEADLINE, LIMIT = range(4)
#: Size of that array.
SHARED_SIZE = 4
#: Seconds of finished work after which a child reports before going on.
FLUSH_AFTER = 0.005


class _State:
    """What the child's two threads share: which task runs, which must not start.

    ``values`` is also read by the parent, without locking: ``RUNNING`` (the
    sequence number of the task started last), ``STARTED`` (when, monotonic)
    and ``DEADLINE``/``LIMIT`` (its hard time limit; 0: none). Starting a task,
    cancelling one and terminating one happen under ``lock``, so the answer
    the parent gets to a cancel or terminate request is exact.
    """

    def __init__(self, values: Any) -> None:
        self.values = values
        self.lock = threading.Lock()
        self.busy = False
        self.cancelled: set[int] = set()

    def start(self, seq: int) -> bool:
        """Mark task ``seq`` as started; False if the parent cancelled it."""
        with self.lock:
            if seq in self.cancelled:
                self.cancelled.discard(seq)
                return False
            self.values[RUNNING] = seq
            self.values[STARTED] = time.monotonic()
            self.busy = True
        return True

    def limit(self, hard: float | None) -> None:
        """Publish the running task's hard time limit for the parent to enforce."""
        if hard is not None:
            values = self.values
            values[LIMIT] = hard
            values[DEADLINE] = values[STARTED] + hard

    def finished(self) -> None:
        """The running task ended."""
        with self.lock:
            self.values[DEADLINE] = 0.0
            self.busy = False

    def cancel(self, seqs: list[int]) -> list[int]:
        """Cancel the tasks of ``seqs`` that have not started; return those."""
        with self.lock:
            running = int(self.values[RUNNING])
            done = [seq for seq in seqs if seq > running]
            self.cancelled.update(done)
        return done

    def terminate(self, seq: int, signum: int) -> bool:
        """Signal this process if task ``seq`` runs now; True if it does."""
        with self.lock:
            if self.busy and int(self.values[RUNNING]) == seq:
                os.kill(os.getpid(), signum)
                return True
        return False


def _control(control: Connection, send: Any, state: _State) -> None:
    """The child's second thread: answer the parent at once, even during a task."""
    while True:
        try:
            msg = pickle.loads(control.recv_bytes())
        except (EOFError, OSError):
            # The worker is gone: its tasks are being recovered elsewhere, so
            # this one must not keep running (or finish) behind their back.
            os._exit(70)
        if msg[0] == "cancel":
            send(("cancelled", state.cancel(msg[1]), None))
        elif msg[0] == "terminate":
            _, seq, signum = msg
            if not state.terminate(seq, signum):
                send(("cancelled", state.cancel([seq]), signum))


def child_main(
    conn: Connection,
    control: Connection,
    spec: ChildSpec,
    values: Any,
    marks: str | None = None,
) -> None:
    """Entry point of a prefork child (a top-level function, so spawn can find it).

    ``marks``: the file of the child's pool slot, where it marks the tasks of
    a recorded batch as it starts them (see :mod:`.handoff`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _apply_logging(spec.log)
    send_lock = threading.Lock()

    def send(obj: object) -> None:
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        with send_lock:
            conn.send_bytes(data)

    state = _State(values)
    threading.Thread(
        target=_control, args=(control, send, state), name="liteq-control", daemon=True
    ).start()
    try:
        app = load_app(spec)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        send(
            (
                "error",
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            )
        )
        return
    _logging_signals(spec.log)
    signals.worker_process_init.send(sender=None)
    start_marks = StartMarks(marks) if marks else None
    if start_marks is not None:
        start_marks.open()  # before any batch can come (see .handoff)
    send(("ready", os.getpid()))
    try:
        _Server(conn, send, app, spec, state, start_marks).serve()
    finally:
        signals.worker_process_shutdown.send(sender=None, pid=os.getpid(), exitcode=0)


class _Server:
    """The child's loop: receive a batch, run it, report."""

    def __init__(
        self,
        conn: Connection,
        send: Any,
        app: Liteq,
        spec: ChildSpec,
        shared: _State,
        marks: StartMarks | None = None,
    ) -> None:
        self.marks = marks
        self.conn = conn
        self.send = send
        self.app = app
        self.spec = spec
        self.shared = shared
        self.alarm = _SoftAlarm()
        self.defaults = Limits(spec.time_limit, spec.soft_time_limit)
        self.done = 0

    def serve(self) -> None:
        reader = FrameReader(self.conn.fileno())
        try:
            while True:
                try:
                    data = reader.read_one()
                except (EOFError, OSError):
                    return
                msg = pickle.loads(data)
                if msg[0] != "run" or self.run_batch(msg[1], msg[2], msg[3]):
                    return
        finally:
            reader.close()
            if self.marks is not None:
                self.marks.close()

    def run_batch(
        self, batch: list[tuple[int, Claimed]], marked: bool = False, ack: bool = False
    ) -> bool:
        """Run a batch in order; return True when this child must retire.

        ``marked``: the batch is recorded in the slot's file, and each task
        is marked there before it starts; a task that cannot be marked does
        not start, nor do the ones after it (they go back to the queue).
        ``ack``: store the outcome of the batch's (single) task here.
        """
        reports: list[tuple[int, Report]] = []
        skipped: list[int] = []
        flushed = time.monotonic()
        retire = False
        marks = self.marks if marked else None
        unmarked = False
        for i, (seq, claimed) in enumerate(batch):
            if marks is not None and not (retire or unmarked):
                unmarked = not marks.started(i + 1)
            if retire or unmarked or not self.shared.start(seq):
                skipped.append(seq)
                continue
            reports.append((seq, self.run_one(claimed, ack)))
            self.done += 1
            retire = bool(
                self.spec.max_tasks and self.done >= self.spec.max_tasks
            ) or _memory_over(self.spec.max_memory)
            now = time.monotonic()
            if i + 1 < len(batch) and now - flushed > FLUSH_AFTER:
                # Slow batch: let the parent ack what is done before going on.
                self.send(("done", reports, [], False, False))
                reports, flushed = [], now
        self.send(("done", reports, skipped, retire, True))
        return retire

    def run_one(self, claimed: Claimed, ack: bool = False) -> Report:
        """Run one task; with ``ack``, also store its outcome (see :meth:`ack`)."""
        app, spec, shared, alarm = self.app, self.spec, self.shared, self.alarm
        try:
            message, limits = prepare(app, claimed, spec.autoimport, self.defaults)
        except Exception as exc:  # noqa: BLE001 - e.g. a time limit that is no number
            failed = failed_outcome(app, claimed, exc, spec.hostname)
            return Report.from_outcome(failed, spec.info)
        shared.limit(limits.hard)
        outcome = None
        try:
            alarm.arm(limits.soft)
            outcome = run_task(
                app,
                claimed,
                message,
                spec.hostname,
                spec.autoimport,
                self.store,
            )
            alarm.disarm()
        except SoftTimeLimitExceeded as exc:
            # The alarm went off just as the task ended.
            alarm.disarm()
            if outcome is None:
                from ..execution import end_claimed

                outcome = end_claimed(app, claimed, exc, hostname=spec.hostname)
        shared.finished()
        acked = outcome.acked
        if acked is None and ack:
            acked = self.ack(claimed, outcome)
        return Report.from_outcome(outcome, spec.info, acked)

    def ack(self, claimed: Claimed, outcome: Outcome) -> bool | None:
        """Store ``outcome`` (the ack) from this process, as the parent would.

        After the task counts as finished (its hard time limit no longer
        applies): if this process dies during the ack, the transaction rolls
        back and the parent reports the task lost, as for any death after a
        task ended.

        Returns:
            Whether the ack applied (False: the claim's lease was lost), or
            None if it failed: the parent then acks it from the report.
        """
        completion = outcome.completion
        completion.claimed = claimed
        return self.store(completion)

    def store(self, completion: Completion) -> bool | None:
        """Apply ``completion`` (the ack, with the result) from this process.

        Also what :func:`~liteq.execution.execute` calls before the end
        hooks of a task that has any.

        Returns:
            See :func:`~.runner.store_completion` (None: the parent acks it
            from the report).
        """
        # The worker's checkpoint thread checkpoints; none of our own.
        self.app.storage.db.checkpoint_wal = False
        return store_completion(self.app, completion)
