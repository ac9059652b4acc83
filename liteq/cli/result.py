"""``liteq result``: a task's state and result, its progress, its workflow.

``--follow`` waits for the task to finish and shows its progress: a task that
reports ``update_state(state="PROGRESS", meta={"current": i, "total": n})``
(or ``meta={"p": percent}``) gets a progress bar on a terminal and one line
per update otherwise. For a task that is part of a workflow (chain, group,
chord) the related tasks the database knows about are shown as a tree.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import click

from .. import states
from ..result import AsyncResult
from ..storage import ResultRow
from .loader import CliState, Loaded, app_option, split_database

#: How many related tasks the workflow tree shows at most.
MAX_TREE = 200


def pretty(value: Any) -> str:
    """Render a result value: JSON when it is JSON, ``repr`` otherwise."""
    if isinstance(value, BaseException):
        return repr(value)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


def progress_of(info: Any) -> tuple[int, int] | None:
    """Return ``(done, total)`` from a progress ``meta``, or None if it has none.

    Understands ``{"current": i, "total": n}`` and ``{"p": percent}`` (also
    ``"percent"``).
    """
    if not isinstance(info, dict):
        return None
    current, total = info.get("current"), info.get("total")
    if isinstance(current, (int, float)) and isinstance(total, (int, float)):
        if total > 0 and not isinstance(current, bool):
            return int(current), int(total)
    for key in ("p", "percent"):
        pct = info.get(key)
        if isinstance(pct, (int, float)) and not isinstance(pct, bool):
            return int(round(pct)), 100
    return None


class ProgressView:
    """Shows state changes and progress while following a task.

    Args:
        label: Shown before the bar.
        out: Where to write (default stdout). A terminal gets a progress
            bar; anything else one line per change.
    """

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        self.label = label
        self.out: TextIO = out if out is not None else sys.stdout
        self.tty = self.out.isatty()
        self.bar: Any = None
        self.last: tuple[str, Any] | None = None

    def on_message(self, meta: dict[str, Any]) -> None:
        """Handle one state change (``AsyncResult.get(on_message=...)``)."""
        state = str(meta.get("status"))
        if state in states.READY_STATES:
            self.close()
            return
        progress = progress_of(meta.get("result"))
        if progress is not None:
            self._progress(state, *progress)
            return
        if self.last is not None and self.last[0] == state:
            return
        self.close()
        self.last = (state, None)
        click.echo(f"{self.label}: {state}", file=self.out)

    def _progress(self, state: str, done: int, total: int) -> None:
        if self.tty:
            if self.bar is None:
                self.bar = click.progressbar(
                    length=total, label=self.label, file=self.out, show_pos=True
                )
                self.bar.__enter__()
            self.bar.length = total
            self.bar.update(done - self.bar.pos)
            return
        if self.last == (state, (done, total)):
            return
        self.last = (state, (done, total))
        pct = 100.0 * done / total if total else 0.0
        click.echo(f"{self.label}: {state} {done}/{total} ({pct:.0f}%)", file=self.out)

    def close(self) -> None:
        """Finish the progress bar, if one is shown."""
        bar, self.bar = self.bar, None
        if bar is not None:
            bar.__exit__(None, None, None)


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="[DATABASE] TASK_ID")
@app_option
@click.option(
    "--traceback",
    "show_traceback",
    is_flag=True,
    help="Show the traceback of a failure.",
)
@click.option(
    "-F",
    "--follow",
    is_flag=True,
    help="Wait for the task to finish, showing its progress.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="With --follow: give up after this long.",
)
@click.option(
    "--tree/--no-tree",
    default=True,
    show_default=True,
    help="Show the workflow the task belongs to.",
)
@click.option(
    "-t", "--task", "task_name", hidden=True, help="Ignored (Celery compatibility)."
)
@click.pass_context
def result(
    ctx: click.Context,
    args: tuple[str, ...],
    app_spec: str | None,
    show_traceback: bool,
    follow: bool,
    timeout: float | None,
    tree: bool,
    task_name: str | None,
) -> None:
    """Show the state and result of a task (or of a saved group).

    Exits with status 1 if the task failed or was revoked, or the id is unknown.
    """
    state = ctx.ensure_object(CliState)
    database, rest = split_database(args, state, required=1, app_spec=app_spec)
    if len(rest) != 1:
        raise click.UsageError("give exactly one TASK_ID")
    task_id = rest[0]
    loaded = state.load(database, app_spec=app_spec)
    app = loaded.app
    res = app.AsyncResult(task_id)
    if not res.exists():
        group = app.storage.results.get_group(task_id)
        if group is None:
            raise click.ClickException(
                f"unknown task id {task_id!r}: nothing is queued under it and no "
                "result is stored (results expire after result_expires)"
            )
        ctx.exit(show_group(loaded, task_id, group.task_ids))
    queued = app.storage.broker.get_task_row(task_id)
    label = res.name or (queued[1] if queued is not None else task_id)
    if follow:
        # A fresh result object: it replays the task's state history from
        # the start, so progress shows even for a task that already finished.
        view = ProgressView(label)
        if res.state in (states.PENDING, states.RECEIVED):
            view.on_message({"status": res.state, "result": None})
        try:
            app.AsyncResult(task_id).get(
                timeout=timeout,
                propagate=False,
                on_message=view.on_message,
                disable_sync_subtasks=False,
            )
        finally:
            view.close()
    ctx.exit(show_task(loaded, res, show_traceback, tree))


def show_task(
    loaded: Loaded, res: AsyncResult, show_traceback: bool, tree: bool
) -> int:
    """Print one task's state and result.

    Returns:
        1 if it failed or was revoked, else 0.
    """
    state = res.state
    click.echo(f"Task {res.name or '?'}[{res.id}]: {state}")
    value = res.result
    if value is not None or state == states.SUCCESS:
        click.echo(f"Result: {pretty(value)}")
    if show_traceback and res.traceback:
        click.echo(res.traceback.rstrip())
    if tree:
        show_tree(loaded, res.id)
    return 1 if state in states.PROPAGATE_STATES else 0


def show_group(loaded: Loaded, group_id: str, task_ids: list[str]) -> int:
    """Print a saved group's members with their states.

    Returns:
        1 if a member failed or was revoked, else 0.
    """
    rows = loaded.app.storage.results.get_many(task_ids)
    done = sum(
        1 for t in task_ids if t in rows and rows[t].status in states.READY_STATES
    )
    click.echo(f"Group {group_id}: {done}/{len(task_ids)} finished")
    failed = False
    for tid in task_ids:
        row = rows.get(tid)
        status = row.status if row is not None else states.PENDING
        failed = failed or status in states.PROPAGATE_STATES
        name = row.name if row is not None and row.name else "?"
        click.echo(f"  {name}[{tid}]: {status}")
    return 1 if failed else 0


def show_tree(loaded: Loaded, task_id: str) -> None:
    """Print the workflow ``task_id`` belongs to, if it has more than one task."""
    rows = family(loaded, task_id)
    if len(rows) < 2:
        return
    children: dict[str | None, list[ResultRow]] = {}
    for row in rows.values():
        parent = row.parent_id if row.parent_id in rows else None
        children.setdefault(parent, []).append(row)
    click.echo("Workflow:")
    for line in _render(children, None, "", task_id):
        click.echo(line)


def _render(
    children: dict[str | None, list[ResultRow]],
    parent: str | None,
    indent: str,
    marked: str,
) -> Iterable[str]:
    kids = sorted(
        children.get(parent, []), key=lambda r: (r.date_done or 0.0, r.task_id)
    )
    for i, row in enumerate(kids):
        last = i == len(kids) - 1
        branch = "" if parent is None else ("└─ " if last else "├─ ")
        here = "  <-" if row.task_id == marked else ""
        group = f" (group {row.group_id})" if row.group_id else ""
        yield f"  {indent}{branch}{row.name or '?'}[{row.task_id}] {row.status}{group}{here}"
        deeper = indent if parent is None else indent + ("   " if last else "│  ")
        yield from _render(children, row.task_id, deeper, marked)


def family(loaded: Loaded, task_id: str) -> dict[str, ResultRow]:
    """Return the stored results of the workflow ``task_id`` belongs to.

    Starts from the task's root and adds tasks whose root, parent or group is
    already in the set, until nothing new turns up (at most :data:`MAX_TREE`).
    """
    results = loaded.app.storage.results
    start = results.get(task_id)
    if start is None:
        return {}
    found: dict[str, ResultRow] = {start.task_id: start}
    frontier = {start.task_id, start.root_id or start.task_id}
    if start.group_id:
        frontier.add(start.group_id)
    seen: set[str] = set()
    while frontier and len(found) < MAX_TREE:
        ids = sorted(frontier - seen)
        seen.update(frontier)
        frontier = set()
        for row in results.related(ids, limit=MAX_TREE):
            if row.task_id not in found:
                found[row.task_id] = row
                frontier.add(row.task_id)
                if row.group_id:
                    frontier.add(row.group_id)
    return found


COMMANDS = [result]
