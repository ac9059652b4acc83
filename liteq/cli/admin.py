"""Administration commands: ``status``, ``purge``, ``revoke`` and ``call``.

Each takes the database as its first argument (``liteq status tasks.db``) or
finds it through the app (``liteq -A proj status``). Commands that only read
or remove tasks never create a missing database file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from ..exceptions import LiteqError
from ..storage import ResultRow
from ..timeutils import parse_iso
from .loader import CliState, Loaded, split_database
from .loader import app_option as app_option  # re-exported for command modules
from .params import parse_json, task_arguments
from .worker import split_list

#: Failures shown by ``liteq status``.
RECENT_FAILURES = 5
#: A live worker whose heartbeat is older than this many leases is shown as stale.
STALE_LEASES = 1.0


def _load(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    required: int,
    create: bool = False,
) -> tuple[Loaded, list[str]]:
    state = ctx.ensure_object(CliState)
    database, rest = split_database(args, state, required=required, app_spec=app_spec)
    loaded = state.load(database, app_spec=app_spec, create=create)
    return loaded, rest


def format_age(seconds: float) -> str:
    """Return a short human age: ``3s``, ``4m``, ``2h``, ``5d``."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def describe_failure(loaded: Loaded, row: ResultRow) -> str:
    """Return the stored exception of a failed task as one short line."""
    try:
        value = loaded.app.decode_result_row(row)["result"]
    except Exception as exc:  # a result this process cannot decode
        return f"<undecodable result: {exc!r}>"
    text = repr(value) if isinstance(value, BaseException) else str(value)
    return text if len(text) <= 160 else text[:157] + "..."


# -- status -------------------------------------------------------------------------------


@click.command()
@click.argument("args", nargs=-1, metavar="[DATABASE]")
@app_option
@click.option(
    "--failures",
    "failures",
    type=click.IntRange(min=0),
    default=RECENT_FAILURES,
    show_default=True,
    help="How many recent failures to list.",
)
@click.pass_context
def status(
    ctx: click.Context, args: tuple[str, ...], app_spec: str | None, failures: int
) -> None:
    """Show queues (ready, scheduled, running), live workers and recent failures."""
    from ..worker.liveness import HostIdentity, is_alive

    loaded, rest = _load(ctx, args, app_spec, required=0)
    if rest:
        raise click.UsageError(f"unexpected argument {rest[0]!r}")
    app = loaded.app
    storage = app.storage
    now = app.clock.time()
    click.echo(f"Database: {loaded.database}")
    click.echo("")
    stats = storage.broker.queue_stats(now)
    click.echo("Queues:")
    if not stats:
        click.echo("  (no tasks waiting or running)")
    else:
        width = max(12, *(len(q) for q in stats))
        click.echo(
            f"  {'QUEUE':<{width}}  {'READY':>7}  {'SCHEDULED':>9}  {'RUNNING':>7}"
        )
        for queue in sorted(stats):
            row = stats[queue]
            click.echo(
                f"  {queue:<{width}}  {row['ready']:>7}  {row['scheduled']:>9}  {row['running']:>7}"
            )
    click.echo("")
    workers = storage.workers()
    lease = float(app.conf.task_lease)
    me = HostIdentity.current()
    click.echo(f"Workers ({len(workers)}):")
    if not workers:
        click.echo("  (none running)")
    for w in workers:
        age = now - w.heartbeat_at
        if not is_alive(w, me, now, lease):
            mark = "  GONE (its tasks will be recovered)"
        elif age > lease * STALE_LEASES:
            mark = "  STALE"
        else:
            mark = ""
        click.echo(
            f"  {w.hostname}  pid {w.pid}  queues {','.join(w.queues)}  "
            f"concurrency {w.concurrency}  heartbeat {format_age(age)} ago  "
            f"up {format_age(now - w.started_at)}{mark}"
        )
    if failures:
        click.echo("")
        rows = storage.results.recent_failures(failures)
        click.echo("Recent failures:")
        if not rows:
            click.echo("  (none)")
        for r in rows:
            when = (
                datetime.fromtimestamp(r.date_done).strftime("%Y-%m-%d %H:%M:%S")
                if r.date_done
                else "?"
            )
            click.echo(
                f"  {when}  {r.name or '?'}[{r.task_id}]  {describe_failure(loaded, r)}"
            )


# -- purge ---------------------------------------------------------------------------------


@click.command()
@click.argument("args", nargs=-1, metavar="[DATABASE]")
@app_option
@click.option(
    "-Q",
    "--queues",
    multiple=True,
    metavar="QUEUE[,QUEUE]",
    help="Only these queues (comma separated)  [default: all]",
)
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    queues: tuple[str, ...],
    force: bool,
) -> None:
    """Delete every waiting task (ready or scheduled); running tasks are left alone."""
    loaded, rest = _load(ctx, args, app_spec, required=0)
    if rest:
        raise click.UsageError(f"unexpected argument {rest[0]!r}")
    broker = loaded.app.storage.broker
    names = split_list(queues)
    stats = broker.queue_stats(loaded.app.clock.time())
    chosen = names or sorted(stats)
    waiting = sum(
        stats.get(q, {}).get("ready", 0) + stats.get(q, {}).get("scheduled", 0)
        for q in chosen
    )
    where = ", ".join(chosen) if chosen else "any queue"
    if waiting == 0:
        click.echo(f"No waiting tasks in {where}.")
        return
    if not force:
        click.confirm(
            f"Delete {waiting} waiting task{'s' if waiting != 1 else ''} from {where}? "
            "This cannot be undone (use -f to skip this question)",
            default=False,
            abort=True,
        )
    purged = broker.purge(names or None)
    click.echo(f"Purged {purged} task{'s' if purged != 1 else ''} from {where}.")


# -- revoke ---------------------------------------------------------------------------------

_REVOKE_MESSAGES = {
    "revoked": "revoked (it will not run)",
    "terminating": "running: the worker was asked to terminate it",
    "running": "running: it will finish (use --terminate to stop it)",
}


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] TASK_ID...")
@app_option
@click.option("--terminate", is_flag=True, help="Also kill the task if it is running.")
@click.option(
    "-s",
    "--signal",
    "signal_name",
    default=None,
    metavar="SIGNAL",
    help="Signal for --terminate  [default: SIGTERM]",
)
@click.pass_context
def revoke(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    terminate: bool,
    signal_name: str | None,
) -> None:
    """Revoke tasks: a waiting task never runs; with --terminate a running one is killed.

    Revokes are stored in the database, so a revoked id that is published
    later is discarded too. Exits with status 1 if an id is unknown.
    """
    loaded, ids = _load(ctx, args, app_spec, required=1)
    if not ids:
        raise click.UsageError("give at least one TASK_ID")
    sig = _signal_name(signal_name) if signal_name else None
    if sig and not terminate:
        raise click.UsageError("--signal only applies with --terminate")
    app = loaded.app
    known = {tid: _known_state(loaded, tid) for tid in ids}
    outcome = app.control.revoke(ids, terminate=terminate, signal=sig)
    unknown = 0
    for tid in ids:
        what = outcome.get(tid, "remembered")
        if what in _REVOKE_MESSAGES:
            click.echo(f"{tid}: {_REVOKE_MESSAGES[what]}")
        elif known[tid] is not None:
            click.echo(f"{tid}: already finished ({known[tid]})")
        else:
            unknown += 1
            click.echo(
                f"{tid}: unknown task id; remembered, so it will not run if it is "
                "published later",
                err=True,
            )
    if unknown:
        ctx.exit(1)


def _known_state(loaded: Loaded, task_id: str) -> str | None:
    row = loaded.app.storage.results.get(task_id)
    return row.status if row is not None else None


def _signal_name(value: str) -> str:
    import signal as signal_module

    name = value.strip().upper()
    if name.isdigit():
        try:
            return signal_module.Signals(int(name)).name
        except ValueError:
            raise click.BadParameter(
                f"unknown signal {value!r}", param_hint="--signal"
            ) from None
    if not name.startswith("SIG"):
        name = "SIG" + name
    if not hasattr(signal_module, name):
        raise click.BadParameter(f"unknown signal {value!r}", param_hint="--signal")
    return name


# -- call --------------------------------------------------------------------------------------


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] NAME")
@app_option
@task_arguments
@click.option(
    "--queue", "-Q", "queue", help="Queue  [default: the task's route or celery]"
)
@click.option(
    "--countdown",
    type=float,
    metavar="SECONDS",
    help="Run no earlier than this from now.",
)
@click.option("--eta", metavar="ISO-8601", help="Run no earlier than this time.")
@click.option(
    "--expires",
    metavar="SECONDS|ISO-8601",
    help="Discard the task if not started by then.",
)
@click.option(
    "--priority", type=click.IntRange(0, 255), help="0-255, higher runs first."
)
@click.option(
    "--serializer",
    type=click.Choice(["json", "pickle", "msgpack", "yaml"]),
    help="Message serializer  [default: task_serializer]",
)
@click.option("--task-id", metavar="ID", help="Use this id instead of a new one.")
@click.option("--exchange", hidden=True)
@click.option("--routing-key", hidden=True)
@click.pass_context
def call(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    task_args: str | None,
    task_kwargs: str | None,
    queue: str | None,
    countdown: float | None,
    eta: str | None,
    expires: str | None,
    priority: int | None,
    serializer: str | None,
    task_id: str | None,
    exchange: str | None,
    routing_key: str | None,
) -> None:
    """Queue task NAME by name and print its id (the task's code is not needed here)."""
    state = ctx.ensure_object(CliState)
    if countdown is not None and eta is not None:
        raise click.UsageError("give --countdown or --eta, not both")
    positional = parse_json(task_args, list, "--args")
    keywords = parse_json(task_kwargs, dict, "--kwargs")
    when = _parse_time(eta, "--eta") if eta else None
    expiry: float | datetime | None = None
    if expires:
        try:
            expiry = float(expires)
        except ValueError:
            expiry = _parse_time(expires, "--expires")
    database, rest = split_database(args, state, required=1, app_spec=app_spec)
    if len(rest) != 1:
        raise click.UsageError("give exactly one task NAME")
    name = rest[0]
    loaded = state.load(database, app_spec=app_spec, create=True)
    options: dict[str, Any] = {}
    if queue or routing_key:
        options["queue"] = queue or routing_key
    if priority is not None:
        options["priority"] = priority
    if serializer:
        options["serializer"] = serializer
    result = loaded.app.send_task(
        name,
        args=positional,
        kwargs=keywords,
        countdown=countdown,
        eta=when,
        expires=expiry,
        task_id=task_id,
        **options,
    )
    click.echo(result.id)


def _parse_time(value: str, option: str) -> datetime:
    try:
        return parse_iso(value)
    except (ValueError, OverflowError, LiteqError) as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time ({exc})", param_hint=option
        ) from None


COMMANDS = [status, purge, revoke, call]
