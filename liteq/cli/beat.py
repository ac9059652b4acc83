"""``liteq beat`` (send scheduled tasks) and ``liteq schedule`` (change the schedule).

``liteq beat tasks.db`` (or ``liteq -A proj beat``) syncs the app's
``beat_schedule`` into the database and sends due tasks until SIGINT or
SIGTERM. Any number of beats (and ``worker -B``) may run on one file: one of
them leads, and each occurrence is sent exactly once.

``liteq schedule list|add|remove|enable|disable|run DATABASE ...`` changes the
entries stored in the database; running beats pick the change up within a
second, without a restart.
"""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from .. import __version__
from ..exceptions import ScheduleNotFound
from ..schedules import BaseSchedule, clocked, crontab, rrule
from ..schedules import schedule as interval
from ..timeutils import parse_iso
from .loader import CliState, Loaded, app_option, split_database
from .logs import loglevel_option, setup_logging
from .params import parse_json, task_arguments
from .pidfile import Pidfile

if TYPE_CHECKING:
    from ..beat import ScheduleEntry

#: ``--every`` units.
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d|w)", re.IGNORECASE)

#: Celery beat options with no effect here.
_IGNORED = {
    "schedule_filename": "-s/--schedule: beat keeps its schedule state in the database",
    "scheduler": "-S/--scheduler: beat uses liteq's database scheduler",
}


def parse_every(text: str) -> float:
    """Parse ``--every``: seconds (``90``) or units (``30s``, ``5m``, ``1h30m``, ``1d``).

    Raises:
        click.BadParameter: not a positive duration.
    """
    value = text.strip()
    seconds: float | None = None
    try:
        seconds = float(value)
    except ValueError:
        pos, total = 0, 0.0
        for match in _DURATION.finditer(value):
            if value[pos : match.start()].strip():
                break
            total += float(match.group(1)) * _UNITS[match.group(2).lower()]
            pos = match.end()
        else:
            if pos and not value[pos:].strip():
                seconds = total
    if seconds is None or not seconds > 0:
        raise click.BadParameter(
            f"{text!r} is not a positive duration (30s, 5m, 1h30m, 1d, or seconds)",
            param_hint="--every",
        )
    return seconds


def build_schedule(
    every: str | None,
    cron: str | None,
    at: str | None,
    rule: str | None,
    sun: str | None,
) -> BaseSchedule:
    """Make the schedule of ``liteq schedule add`` from exactly one of its options.

    Raises:
        click.UsageError: none or several were given.
        click.BadParameter: the value is malformed (the message says why).
    """
    given = [
        name
        for name, value in (
            ("--every", every),
            ("--cron", cron),
            ("--at", at),
            ("--rrule", rule),
            ("--solar", sun),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of --every, --cron, --at, --rrule or --solar"
            + (f" (got {', '.join(given)})" if given else "")
        )
    try:
        if every is not None:
            return interval(parse_every(every))
        if cron is not None:
            return crontab.from_string(cron)
        if at is not None:
            try:
                when = parse_iso(at)
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"{at!r} is not an ISO-8601 time ({exc})") from None
            return clocked(when)
        if rule is not None:
            return rrule(rule)
        assert sun is not None
        return _solar(sun)
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(str(exc), param_hint=given[0]) from None


def _solar(text: str) -> BaseSchedule:
    from ..solar import solar

    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(
            f"{text!r} is not EVENT:LATITUDE:LONGITUDE (sunset:31.23:121.47)"
        )
    try:
        lat, lon = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"{text!r}: latitude and longitude must be numbers") from None
    return solar(parts[0], lat, lon)


def _load(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    required: int,
    create: bool = False,
) -> tuple[Loaded, list[str]]:
    state = ctx.ensure_object(CliState)
    database, rest = split_database(args, state, required=required, app_spec=app_spec)
    if len(rest) != required:
        raise click.UsageError(
            f"expected {required} argument{'s' if required != 1 else ''} after the "
            f"database, got {len(rest)}"
        )
    return state.load(database, app_spec=app_spec, create=create), rest


def _when(value: datetime | None, tz: Any) -> str:
    if value is None:
        return "never"
    return value.astimezone(tz).isoformat(sep=" ", timespec="seconds")


def _describe(entry: ScheduleEntry, tz: Any) -> dict[str, Any]:
    return {
        "name": entry.name,
        "task": entry.task,
        "schedule": repr(entry.schedule),
        "definition": entry.schedule.to_dict(),
        "args": list(entry.args),
        "kwargs": entry.kwargs,
        "options": entry.options,
        "enabled": entry.enabled,
        "source": entry.source,
        "catch_up": entry.catch_up,
        "last_run_at": _when(entry.last_run_at, tz) if entry.last_run_at else None,
        "next_run_at": _when(entry.next_run_at, tz) if entry.next_run_at else None,
        "total_run_count": entry.total_run_count,
        "last_task_id": entry.last_task_id,
    }


# -- liteq beat ---------------------------------------------------------------------------
@click.command()
@click.argument("args", nargs=-1, metavar="[DATABASE]")
@app_option
@loglevel_option
@click.option("-f", "--logfile", metavar="FILE", help="Log to this file.")
@click.option("--pidfile", metavar="FILE", help="Write the pid here (empty: none).")
@click.option(
    "--max-interval",
    type=click.FloatRange(min=0.001),
    metavar="SECONDS",
    help="Longest sleep between checks  [default: beat_max_loop_interval]",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Leader lease: another beat takes over this long after the leader dies; "
    "0 = no leader  [default: beat_lease_ttl]",
)
@click.option("-s", "--schedule", "schedule_filename", hidden=True)
@click.option("-S", "--scheduler", hidden=True)
@click.option("--detach", is_flag=True, hidden=True)
@click.pass_context
def beat(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    loglevel: int,
    logfile: str | None,
    pidfile: str | None,
    max_interval: float | None,
    lease_ttl: float | None,
    schedule_filename: str | None,
    scheduler: str | None,
    detach: bool,
) -> None:
    """Send the scheduled tasks of the app's beat_schedule and of the database.

    \b
    Examples:
      liteq beat tasks.db -l info
      liteq -A proj beat -l info
    """
    state = ctx.ensure_object(CliState)
    if detach:
        raise click.UsageError(
            "--detach is not supported: run liteq beat under your service manager"
        )
    for key, value in (
        ("schedule_filename", schedule_filename),
        ("scheduler", scheduler),
    ):
        if value and not state.quiet:
            click.echo(f"liteq: ignoring {_IGNORED[key]}", err=True)
    loaded, _ = _load(ctx, args, app_spec, required=0, create=True)
    app = loaded.app
    setup_logging(
        loglevel,
        logfile=logfile,
        fmt=app.conf.worker_log_format,
        task_fmt=app.conf.worker_task_log_format,
        hijack_root=bool(app.conf.worker_hijack_root_logger),
    )
    from ..beat import Beat

    runner = Beat(app, lease_ttl=lease_ttl, max_interval=max_interval)
    if not state.quiet:
        click.echo(
            f"liteq beat v{__version__} is starting.\n"
            f"LocalTime -> {datetime.now().astimezone().isoformat(sep=' ', timespec='seconds')}\n"
            "Configuration ->\n"
            f"    . database -> {loaded.database}\n"
            f"    . timezone -> {app.timezone}\n"
            f"    . maxinterval -> {runner.max_interval:g} s\n"
            f"    . lease -> {runner.lease_ttl:g} s"
        )
    lock = Pidfile(pidfile) if pidfile else None
    if lock is not None:
        lock.acquire()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if lock is not None:
            lock.release()


# -- liteq schedule ------------------------------------------------------------------------
@click.group()
def schedule() -> None:
    """List and change the schedule entries in the database.

    \b
    Examples:
      liteq schedule list tasks.db
      liteq schedule add tasks.db cleanup tasks.cleanup --every 30s
      liteq schedule add tasks.db report tasks.report --cron "30 7 * * mon"
      liteq schedule disable tasks.db cleanup
    """


@schedule.command("list")
@click.argument("args", nargs=-1, metavar="[DATABASE]")
@app_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@click.pass_context
def list_(
    ctx: click.Context, args: tuple[str, ...], app_spec: str | None, as_json: bool
) -> None:
    """Show every entry: its schedule, task, next and last run."""
    loaded, _ = _load(ctx, args, app_spec, required=0)
    app = loaded.app
    tz = app.timezone
    entries = app.schedules.list()
    if as_json:
        for entry in entries:
            click.echo(json.dumps(_describe(entry, tz), sort_keys=True))
        return
    if not entries:
        click.echo("No schedule entries.")
        return
    for entry in entries:
        flags = [] if entry.enabled else ["disabled"]
        if entry.source == "api":
            flags.append("runtime")
        note = f"  [{', '.join(flags)}]" if flags else ""
        click.echo(f"{entry.name}: {entry.task} {entry.schedule!r}{note}")
        click.echo(
            f"    next {_when(entry.next_run_at, tz) if entry.enabled else '-'}"
            f"  last {_when(entry.last_run_at, tz)}  runs {entry.total_run_count}"
        )


@schedule.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] NAME TASK")
@app_option
@click.option(
    "--every", metavar="DURATION", help="Interval: 30s, 5m, 1h30m, 1d or seconds."
)
@click.option("--cron", metavar="LINE", help='Cron line: "*/5 * * * *", "@daily".')
@click.option("--at", metavar="ISO-8601", help="Once, at this time.")
@click.option(
    "--rrule", "rule", metavar="RULE", help='"FREQ=WEEKLY;BYDAY=MO;BYHOUR=9".'
)
@click.option("--solar", "sun", metavar="EVENT:LAT:LON", help="sunset:31.23:121.47")
@task_arguments
@click.option("-Q", "--queue", help="Queue  [default: the task's route or celery]")
@click.option(
    "--priority", type=click.IntRange(0, 255), help="0-255, higher runs first."
)
@click.option(
    "--tz",
    metavar="ZONE",
    help="Zone of --cron/--rrule/--at  [default: the app's timezone]",
)
@click.option(
    "--catch-up",
    type=click.Choice(["once", "all", "skip"]),
    help="Missed runs after downtime  [default: beat_catch_up]",
)
@click.option("--disabled", is_flag=True, help="Store it disabled.")
@click.pass_context
def add(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    every: str | None,
    cron: str | None,
    at: str | None,
    rule: str | None,
    sun: str | None,
    task_args: str | None,
    task_kwargs: str | None,
    queue: str | None,
    priority: int | None,
    tz: str | None,
    catch_up: str | None,
    disabled: bool,
) -> None:
    """Add (or replace) entry NAME sending TASK; running beats pick it up at once."""
    value = build_schedule(every, cron, at, rule, sun)
    positional = parse_json(task_args, list, "--args")
    keywords = parse_json(task_kwargs, dict, "--kwargs")
    loaded, (name, task) = _load(ctx, args, app_spec, required=2, create=True)
    options: dict[str, Any] = {}
    if queue:
        options["queue"] = queue
    if priority is not None:
        options["priority"] = priority
    try:
        entry = loaded.app.schedules.add(
            name,
            task,
            value,
            positional,
            keywords,
            catch_up=catch_up,
            tz=tz,
            enabled=not disabled,
            **options,
        )
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    when = _when(entry.next_run_at, loaded.app.timezone)
    click.echo(f"Added {entry.name}: {entry.task} {entry.schedule!r}, next run {when}")


def _verb(
    ctx: click.Context, args: tuple[str, ...], app_spec: str | None
) -> tuple[Loaded, str]:
    loaded, (name,) = _load(ctx, args, app_spec, required=1)
    if loaded.app.schedules.get(name) is None:
        raise click.ClickException(str(ScheduleNotFound(name)))
    return loaded, name


@schedule.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] NAME")
@app_option
@click.pass_context
def remove(ctx: click.Context, args: tuple[str, ...], app_spec: str | None) -> None:
    """Delete entry NAME."""
    loaded, name = _verb(ctx, args, app_spec)
    loaded.app.schedules.remove(name)
    click.echo(f"Removed {name}.")


@schedule.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] NAME")
@app_option
@click.pass_context
def enable(ctx: click.Context, args: tuple[str, ...], app_spec: str | None) -> None:
    """Enable entry NAME: it resumes at its next occurrence from now."""
    loaded, name = _verb(ctx, args, app_spec)
    entry = loaded.app.schedules.enable(name)
    click.echo(
        f"Enabled {name}, next run {_when(entry.next_run_at, loaded.app.timezone)}."
    )


@schedule.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] NAME")
@app_option
@click.pass_context
def disable(ctx: click.Context, args: tuple[str, ...], app_spec: str | None) -> None:
    """Disable entry NAME: it sends nothing until enabled."""
    loaded, name = _verb(ctx, args, app_spec)
    loaded.app.schedules.disable(name)
    click.echo(f"Disabled {name}.")


@schedule.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] NAME")
@app_option
@click.pass_context
def run(ctx: click.Context, args: tuple[str, ...], app_spec: str | None) -> None:
    """Send entry NAME's task now (its schedule is unchanged) and print the task id."""
    loaded, name = _verb(ctx, args, app_spec)
    click.echo(loaded.app.schedules.run_now(name).id)


#: ``liteq`` commands defined here.
COMMANDS = [beat, schedule]
