"""The ``liteq`` command line.

``liteq [OPTIONS] COMMAND [ARGS]``, with Celery's argument orders: the app
may be given before the command (``liteq -A proj worker``) or after it
(``liteq worker -A proj``), or left out when the database file is named
(``liteq worker tasks.db``). Every option can also be set through the
environment: the group's and the worker's options as ``LITEQ_<NAME>``
(``LITEQ_APP``, ``LITEQ_DATABASE``, ``LITEQ_CONCURRENCY``, ``LITEQ_QUEUES``...),
and every option of every command as ``LITEQ_<COMMAND>_<NAME>``
(``LITEQ_CALL_QUEUE``, ``LITEQ_WORKER_POOL``). This package is the only place
in liteq that reads the environment.

Commands live in the modules listed in :data:`COMMAND_MODULES`; each module
lists its commands in a ``COMMANDS`` sequence.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import LiteqError
from .loader import CliState

if TYPE_CHECKING:
    from ..app import Liteq

#: Modules that add commands to ``liteq``; adding a command module is one line here.
COMMAND_MODULES: tuple[str, ...] = (
    "liteq.cli.worker",
    "liteq.cli.admin",
    "liteq.cli.result",
    "liteq.cli.beat",
)

#: Group options that take a value (used to keep Celery 3 argument orders working).
_GROUP_VALUE_OPTIONS = frozenset(
    {
        "-A",
        "--app",
        "-b",
        "--broker",
        "--result-backend",
        "--config",
        "--workdir",
        "--loader",
    }
)
#: Group options that are flags.
_GROUP_FLAGS = frozenset(
    {"-q", "--quiet", "-C", "--no-color", "--skip-checks", "--version", "-h", "--help"}
)


class LiteqGroup(click.Group):
    """A click group that shows liteq's errors as ``Error: ...`` lines.

    A :class:`LiteqError` escaping a command (a locked database, a bad
    setting...) becomes a one-line message and exit status 1, not a traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LiteqError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            state = ctx.find_object(CliState)
            if state is not None:
                state.close()


def _version() -> str:
    from .. import __version__

    return __version__


@click.group(
    cls=LiteqGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "-A",
    "--app",
    "app_spec",
    envvar="LITEQ_APP",
    metavar="MODULE[:ATTR]",
    help="The app: a module holding it (proj, proj.celery) or module:attr.",
)
@click.option(
    "-b",
    "--broker",
    "--database",
    "broker",
    envvar=["LITEQ_DATABASE", "LITEQ_BROKER"],
    metavar="DATABASE",
    help="The database file (or sqlite:/// URL); overrides the app's broker_url.",
)
@click.option(
    "--result-backend",
    envvar="LITEQ_RESULT_BACKEND",
    metavar="URL",
    help="Accepted for Celery compatibility; must name the same file.",
)
@click.option(
    "--config",
    envvar="LITEQ_CONFIG",
    metavar="MODULE",
    help="Configuration module to load into the app (like app.config_from_object).",
)
@click.option(
    "--workdir",
    envvar="LITEQ_WORKDIR",
    type=click.Path(exists=True, file_okay=False),
    help="Change to this directory first.",
)
@click.option("--loader", hidden=True, help="Ignored (Celery compatibility).")
@click.option("--skip-checks", is_flag=True, hidden=True, help="Ignored.")
@click.option("-q", "--quiet", is_flag=True, envvar="LITEQ_QUIET", help="No banner.")
@click.option(
    "-C", "--no-color", is_flag=True, envvar="LITEQ_NO_COLOR", help="No colours."
)
@click.version_option(version=_version(), prog_name="liteq")
@click.pass_context
def cli(
    ctx: click.Context,
    app_spec: str | None,
    broker: str | None,
    result_backend: str | None,
    config: str | None,
    workdir: str | None,
    loader: str | None,
    skip_checks: bool,
    quiet: bool,
    no_color: bool,
) -> None:
    """liteq: Celery's task queue on one SQLite file.

    \b
    Examples:
      liteq worker tasks.db -l info         run tasks queued in tasks.db
      liteq -A proj worker -l info          the app in proj (proj.celery)
      liteq status tasks.db                 queues, workers, recent failures
      liteq call tasks.db tasks.add --args '[2, 2]'
      liteq result tasks.db TASK_ID --follow
    """
    state = ctx.ensure_object(CliState)
    if workdir:
        os.chdir(workdir)
    state.app_spec = app_spec
    state.broker = broker
    state.result_backend = result_backend
    state.config = config
    state.workdir = workdir
    state.quiet = quiet
    state.no_color = no_color
    if no_color:
        ctx.color = False


def register(module_name: str) -> None:
    """Add the commands listed in ``module_name.COMMANDS`` to ``liteq``."""
    module = importlib.import_module(module_name)
    for command in module.COMMANDS:
        cli.add_command(command)


for _name in COMMAND_MODULES:
    register(_name)


def normalize_argv(args: Sequence[str]) -> list[str]:
    """Move options given before the command name to after it.

    Celery 3 accepted ``celery -B -A proj worker``; click would reject ``-B``
    as an unknown group option. Options the group does not know that appear
    before the command are moved behind it; everything else is unchanged.
    """
    items = list(args)
    head: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(items):
        token = items[i]
        if token == "--":
            break
        if token in cli.commands:
            if not moved:
                return items
            return [*head, token, *moved, *items[i + 1 :]]
        name = token.split("=", 1)[0]
        if name in _GROUP_VALUE_OPTIONS:
            head.append(token)
            if "=" not in token and i + 1 < len(items):
                head.append(items[i + 1])
                i += 1
        elif name in _GROUP_FLAGS or token[:2] in ("-A", "-b"):
            head.append(token)
        else:
            moved.append(token)
        i += 1
    return items


def main(argv: Sequence[str] | None = None, app: Liteq | None = None) -> None:
    """Run the command line and exit with its status.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).
        app: An app to use when no ``-A`` is given (``Liteq.start``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    cli.main(
        args=normalize_argv(args),
        prog_name="liteq",
        obj=CliState(preset_app=app),
        auto_envvar_prefix="LITEQ",
    )


__all__ = ["COMMAND_MODULES", "cli", "main", "normalize_argv", "register"]
