"""``liteq worker``: run tasks from the database.

``liteq worker tasks.db`` needs no app: tasks are named ``module.function``
and the worker imports ``module`` the first time it meets such a name.
``liteq -A proj worker`` (or ``liteq worker -A proj``) uses the app's
configuration. Celery's worker options are accepted; the few that make no
sense on one SQLite file are ignored with a one-line note, so command lines
copied from Celery documentation run unchanged.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click

from ..log import (
    WorkerLogging,
    expand_placeholders,
    parse_level,
    process_index_values,
    worker_logging_installed,
)
from .loader import CliState, Loaded, split_database
from .logs import loglevel_option, setup_logging
from .pidfile import Pidfile

if TYPE_CHECKING:
    from ..app import Liteq
    from ..worker import Worker

logger = logging.getLogger(__name__)

#: ``-P`` values liteq runs, and what each becomes.
POOLS: dict[str, str] = {
    "prefork": "prefork",
    "processes": "prefork",
    "threads": "threads",
    "solo": "solo",
    "eventlet": "threads",
    "gevent": "threads",
}
#: Default node name prefix, as Celery's ``celery@``.
NODE_PREFIX = "liteq"

#: Celery options with no effect here: option -> why (shown as a one-line note).
_IGNORED: dict[str, str] = {
    "events": "-E/--task-events: liteq stores task states in the database; there is no event stream",
    "without_gossip": "--without-gossip: workers share one database, there is no gossip",
    "without_mingle": "--without-mingle: workers share one database, there is nothing to sync at start",
    "without_heartbeat": "--without-heartbeat: the heartbeat renews task leases and cannot be turned off",
    "optimization": "-O: claiming is already fair (a worker claims only for free pool slots)",
    "prefetch_multiplier": "--prefetch-multiplier: a worker claims only for free pool slots",
    "disable_prefetch": "--disable-prefetch: a worker claims only for free pool slots",
    "heartbeat_interval": "--heartbeat-interval: heartbeats follow the lease (--lease / 3)",
    "pool_restarts": "--pool-restarts: pool restarts are always allowed",
    "statedb": "-S/--statedb: revokes are stored in the database and survive restarts",
    "schedule_filename": "-s/--schedule: beat keeps its schedule state in the database",
    "scheduler": "--scheduler: beat uses liteq's database scheduler",
    "exclude_queues": "-X/--exclude-queues: name the queues to consume with -Q",
    "executable": "--executable: pool children use this Python",
}


def node_name(name: str | None, host: str | None = None) -> str:
    """Return a full node name, expanding Celery's ``%h``, ``%n`` and ``%d``.

    ``%h`` is the host name with its domain, ``%n`` the part before the first
    dot and ``%d`` the domain; ``%%`` is a literal ``%``. A name without ``@``
    gets the ``liteq@`` prefix, as Celery adds ``celery@``.
    """
    host = host or socket.gethostname()
    if not name:
        return f"{NODE_PREFIX}@{host}"
    if "@" not in name:
        name = f"{NODE_PREFIX}@{name}"
    return expand_node_format(name, host)


def expand_node_format(
    text: str, host: str | None = None, node: str = "", index: int | None = 0
) -> str:
    """Expand Celery's variables in file paths (``--logfile``, ``--pidfile``).

    With ``node`` (``name@host``): ``%p`` is the node name, ``%n`` its name
    part, ``%h`` its host part and ``%d`` that host's domain. Without it,
    ``%h`` is ``host`` (this machine's name by default), ``%n`` the part
    before its first dot and ``%d`` the rest. ``%i`` is the pool process
    ``index`` (0 in the main process) and ``%I`` the same with a ``-``
    before it (empty in the main process); ``%%`` is a literal ``%``. Other
    ``%`` sequences stay as they are.

    ``index=None`` keeps ``%i``, ``%I`` and ``%%`` for each pool process to
    expand (see :func:`liteq.log.logfile_for_process`).
    """
    name, at, node_host = node.partition("@")
    if not at:
        name, node_host = "", node
    host = node_host or host or socket.gethostname()
    short, _, domain = host.partition(".")
    values = {"h": host, "n": name or short, "d": domain, "p": node}
    if index is None:
        values.update({"i": "%i", "I": "%I", "%": "%%"})
    else:
        values.update(process_index_values(index))
        values["%"] = "%"
    return expand_placeholders(text, values)


def split_list(values: Iterable[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values (``-Q a,b -Q c``)."""
    items: list[str] = []
    for value in values or ():
        items.extend(part.strip() for part in value.split(",") if part.strip())
    return items


def _ignored_option(name: str, *decls: str, flag: bool = False) -> Callable[[Any], Any]:
    return click.option(
        *decls,
        name,
        is_flag=flag,
        default=None,
        hidden=True,
        help="Accepted for Celery compatibility; no effect.",
    )


def _apply_ignored(opts: dict[str, Any], quiet: bool) -> None:
    for key, why in _IGNORED.items():
        value = opts.pop(key, None)
        if value and not quiet:
            click.echo(f"liteq: ignoring {why}", err=True)


@click.command(context_settings={"show_default": True})
@click.argument("args", nargs=-1, metavar="[DATABASE]")
@click.option(
    "-A",
    "--app",
    "app_spec",
    envvar="LITEQ_APP",
    metavar="MODULE[:ATTR]",
    help="The app (same as the liteq -A option).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    envvar="LITEQ_CONCURRENCY",
    help="Pool size  [default: number of CPUs]",
)
@click.option(
    "-P",
    "--pool",
    type=click.Choice(sorted(POOLS), case_sensitive=False),
    envvar="LITEQ_POOL",
    help="Pool: prefork (processes), threads or solo  [default: prefork]",
)
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    envvar="LITEQ_QUEUES",
    metavar="QUEUE[,QUEUE]",
    help="Queues to consume, comma separated  [default: celery]",
)
@loglevel_option
@click.option(
    "-n",
    "--hostname",
    envvar="LITEQ_HOSTNAME",
    help="Node name; %h, %n and %d expand to host, short host and domain.",
)
@click.option(
    "-I",
    "--include",
    multiple=True,
    envvar="LITEQ_INCLUDE",
    metavar="MODULE[,MODULE]",
    help="Import these modules at start (repeatable, comma separated).",
)
@click.option(
    "--autoimport/--no-autoimport",
    default=None,
    envvar="LITEQ_AUTOIMPORT",
    help="Import the module of an unknown 'module.function' task on demand.  [default: on]",
)
@click.option(
    "--max-tasks-per-child",
    type=click.IntRange(min=1),
    envvar="LITEQ_MAX_TASKS_PER_CHILD",
    help="Replace a pool child after this many tasks.",
)
@click.option(
    "--max-memory-per-child",
    type=click.IntRange(min=1),
    envvar="LITEQ_MAX_MEMORY_PER_CHILD",
    metavar="KIB",
    help="Replace a pool child whose resident memory exceeds this (KiB).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    envvar="LITEQ_TIME_LIMIT",
    metavar="SECONDS",
    help="Kill a task running longer than this.",
)
@click.option(
    "--soft-time-limit",
    type=click.FloatRange(min=0, min_open=True),
    envvar="LITEQ_SOFT_TIME_LIMIT",
    metavar="SECONDS",
    help="Raise SoftTimeLimitExceeded in a task running longer than this.",
)
@click.option(
    "--burst",
    is_flag=True,
    envvar="LITEQ_BURST",
    help="Exit (status 0) once no task is due: for cron jobs and CI.",
)
@click.option(
    "--pidfile",
    envvar="LITEQ_PIDFILE",
    help="Write the pid here; refuse to start twice (%n, %h, %d, %p, %i expand).",
)
@click.option(
    "-f",
    "--logfile",
    envvar="LITEQ_LOGFILE",
    help="Log to this file instead of stderr; %n, %h, %d, %p, %i and %I expand "
    "as in Celery (%i: one file per pool process).",
)
@click.option(
    "--autoreload",
    "--reload",
    "autoreload",
    is_flag=True,
    envvar="LITEQ_AUTORELOAD",
    help="Restart the pool when a .py file under the working directory changes.",
)
@click.option(
    "-B",
    "--beat",
    is_flag=True,
    envvar="LITEQ_BEAT",
    help="Also run the periodic task scheduler.",
)
@click.option(
    "--start-method",
    type=click.Choice(["fork", "spawn", "forkserver"]),
    envvar="LITEQ_START_METHOD",
    help="How prefork children start.",
)
@click.option(
    "--lease",
    "--visibility-timeout",
    "lease",
    type=click.FloatRange(min=0, min_open=True),
    envvar="LITEQ_LEASE",
    metavar="SECONDS",
    help="Seconds a claimed task stays ours without a heartbeat  [default: task_lease]",
)
@click.option(
    "--fallback-poll",
    type=click.FloatRange(min=0, min_open=True),
    envvar="LITEQ_FALLBACK_POLL",
    metavar="SECONDS",
    help="Check the database at least this often.",
)
@click.option(
    "--claim-linger",
    type=click.FloatRange(min=0, max=1),
    envvar="LITEQ_CLAIM_LINGER",
    metavar="SECONDS",
    help="While a stream of short tasks keeps the queue nearly empty, claim at "
    "most this often, so that each claim takes a batch  [default: "
    "worker_claim_linger, 0: claim as soon as a slot is free]",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    envvar="LITEQ_SHUTDOWN_GRACE",
    metavar="SECONDS",
    help="On SIGTERM, wait this long for running tasks.",
)
@click.option(
    "--purge",
    "--discard",
    "purge",
    is_flag=True,
    envvar="LITEQ_PURGE",
    help="Delete every waiting task of the worker's queues before starting.",
)
@click.option(
    "--umask", envvar="LITEQ_UMASK", help="Set this umask (octal) before starting."
)
@click.option(
    "--autoscale",
    envvar="LITEQ_AUTOSCALE",
    metavar="MAX,MIN",
    help="Celery's autoscaling: liteq runs MAX children.",
)
@click.option("-D", "--detach", is_flag=True, hidden=True)
@click.option("--uid", hidden=True)
@click.option("--gid", hidden=True)
@_ignored_option("events", "-E", "--task-events", "--events", flag=True)
@_ignored_option("without_gossip", "--without-gossip", flag=True)
@_ignored_option("without_mingle", "--without-mingle", flag=True)
@_ignored_option("without_heartbeat", "--without-heartbeat", flag=True)
@_ignored_option("optimization", "-O", "--optimization")
@_ignored_option("prefetch_multiplier", "--prefetch-multiplier")
@_ignored_option("disable_prefetch", "--disable-prefetch", flag=True)
@_ignored_option("heartbeat_interval", "--heartbeat-interval")
@_ignored_option("pool_restarts", "--pool-restarts", flag=True)
@_ignored_option("statedb", "-S", "--statedb")
@_ignored_option("schedule_filename", "-s", "--schedule", "--schedule-filename")
@_ignored_option("scheduler", "--scheduler")
@_ignored_option("exclude_queues", "-X", "--exclude-queues")
@_ignored_option("executable", "--executable")
@click.pass_context
def worker(
    ctx: click.Context, /, args: tuple[str, ...], app_spec: str | None, **opts: Any
) -> None:
    """Run a worker: claim tasks from the database and run them in a pool.

    \b
    Examples:
      liteq worker tasks.db -l info
      liteq -A proj worker -l info -Q celery,priority.high
      liteq worker tasks.db --burst          run what is due, then exit 0
    """
    state = ctx.ensure_object(CliState)
    _apply_ignored(opts, state.quiet)
    for unsupported in ("detach", "uid", "gid"):
        if opts.pop(unsupported):
            raise click.UsageError(
                f"--{unsupported} is not supported: run liteq under your service "
                "manager (systemd, supervisord) as the user it should run as"
            )
    database, rest = split_database(args, state, required=0, app_spec=app_spec)
    if rest:
        raise click.UsageError(
            f"unexpected argument {rest[0]!r}: the worker takes one DATABASE file"
            + (" (the app already names one)" if database is None else "")
        )
    if opts["umask"]:
        os.umask(_parse_umask(opts["umask"]))
    loaded = state.load(database, app_spec=app_spec, create=True)
    code = run_worker(loaded, opts, quiet=state.quiet)
    ctx.exit(code)


def _parse_umask(value: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an octal umask (for example 022)", param_hint="--umask"
        ) from None


def _concurrency(opts: dict[str, Any]) -> int | None:
    concurrency: int | None = opts["concurrency"]
    autoscale: str | None = opts["autoscale"]
    if autoscale and concurrency is None:
        head = autoscale.split(",")[0].strip()
        if not head.isdigit() or int(head) < 1:
            raise click.BadParameter(
                f"{autoscale!r} is not MAX,MIN", param_hint="--autoscale"
            )
        concurrency = int(head)
    return concurrency


def _pool(opts: dict[str, Any], loaded: Loaded, quiet: bool) -> str:
    chosen = opts["pool"] or loaded.app.conf.worker_pool or "prefork"
    pool = POOLS.get(str(chosen).lower())
    if pool is None:
        raise click.BadParameter(
            f"unknown pool {chosen!r}; use prefork, threads or solo",
            param_hint="--pool",
        )
    if chosen.lower() in ("eventlet", "gevent") and not quiet:
        click.echo(
            f"liteq: -P {chosen} runs as the threads pool (liteq has no green threads)",
            err=True,
        )
    return pool


def build_worker(loaded: Loaded, opts: dict[str, Any], quiet: bool = False) -> Worker:
    """Import the app's task modules and make the :class:`Worker` the options ask for.

    Raises:
        click.ClickException: a module given with ``--include`` (or listed in
            ``include``/``imports``) cannot be imported.
    """
    from ..worker import Worker

    app = loaded.app
    includes = split_list(opts["include"])
    if includes:
        app.conf.include = [*(app.conf.include or ()), *includes]
    try:
        app.import_modules()
    except Exception as exc:
        raise click.ClickException(
            f"cannot import the app's task modules: {exc!r}"
        ) from exc
    autoimport = opts["autoimport"]
    if autoimport is None:
        autoimport = bool(app.conf.worker_autoimport)
    queues = split_list(opts["queues"]) or None
    hostname = node_name(opts["hostname"]) if opts["hostname"] else None
    return Worker(
        app,
        queues=queues,
        concurrency=_concurrency(opts),
        pool=_pool(opts, loaded, quiet),
        hostname=hostname,
        max_tasks_per_child=opts["max_tasks_per_child"],
        max_memory_per_child=opts["max_memory_per_child"],
        time_limit=opts["time_limit"],
        soft_time_limit=opts["soft_time_limit"],
        autoimport=autoimport,
        lease=opts["lease"],
        fallback_poll=opts["fallback_poll"],
        claim_linger=opts["claim_linger"],
        shutdown_grace=opts["shutdown_grace"],
        beat=bool(opts["beat"]),
        start_method=opts["start_method"],
        install_signal_handlers=True,
        app_path=loaded.app_path,
    )


def run_worker(loaded: Loaded, opts: dict[str, Any], quiet: bool = False) -> int:
    """Set up logging, build the worker and run it until it stops.

    Returns:
        The worker's exit status.
    """
    app = loaded.app
    node = node_name(opts["hostname"])
    logfile = opts["logfile"]
    process_logging = _process_logging(app, logfile, node, opts["loglevel"])
    if logfile:
        logfile = expand_node_format(logfile, node=node)
    setup_logging(
        opts["loglevel"],
        logfile=logfile,
        fmt=app.conf.worker_log_format,
        task_fmt=app.conf.worker_task_log_format,
        hijack_root=bool(app.conf.worker_hijack_root_logger),
    )
    the_worker = build_worker(loaded, opts, quiet=quiet)
    if opts["purge"]:
        purged = app.storage.broker.purge(the_worker.queues)
        click.echo(
            f"Purged {purged} waiting task{'s' if purged != 1 else ''} from "
            f"{', '.join(the_worker.queues)}."
        )
    pidfile = (
        Pidfile(expand_node_format(opts["pidfile"], node=node))
        if opts["pidfile"]
        else None
    )
    if pidfile is not None:
        pidfile.acquire()
    reloader = None
    try:
        if not quiet:
            click.echo(the_worker.banner())
        if opts["autoreload"]:
            reloader = _start_reloader(the_worker)
        # The log handlers above hold the real stderr or log file; from here
        # on, prints (a task's, a signal handler's) become log records.
        with worker_logging_installed(process_logging):
            return int(the_worker.run(burst=bool(opts["burst"])) or 0)
    finally:
        if reloader is not None:
            reloader.stop()
        if pidfile is not None:
            pidfile.release()


def _process_logging(
    app: Liteq, logfile: str | None, node: str, loglevel: int | None = None
) -> WorkerLogging:
    """Return how this worker's processes log beyond the handlers of ``setup_logging``.

    Raises:
        click.ClickException: ``worker_redirect_stdouts_level`` is no log level.
    """
    level: int | None = None
    if app.conf.worker_redirect_stdouts:
        value = app.conf.worker_redirect_stdouts_level
        try:
            level = parse_level(value if value is not None else "WARNING")
        except ValueError as exc:
            raise click.ClickException(
                f"worker_redirect_stdouts_level: {exc}"
            ) from None
    template = None
    if logfile:
        kept = expand_node_format(logfile, node=node, index=None)
        # Only %i and %I (and %% beside them) are left in ``kept``.
        if expand_placeholders(kept, {"i": "", "I": "", "%": "%%"}) != kept:
            template = os.path.abspath(kept)
    return WorkerLogging(level, template, loglevel)


def _start_reloader(the_worker: Worker) -> Any:
    from ..reload import Reloader

    def restart(changed: list[str]) -> None:
        shown = ", ".join(os.path.relpath(p) for p in changed[:3])
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        logger.info("%s changed%s: restarting the pool", shown, more)
        the_worker.request_pool_restart()

    reloader = Reloader(os.getcwd(), restart)
    if reloader.start():
        logger.info("autoreload: watching .py files under %s", reloader.root)
    return reloader


COMMANDS = [worker]
