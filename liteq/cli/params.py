"""Parsers for option values shared by several commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def parse_json(value: str | None, kind: type, option: str) -> Any:
    """Parse a ``--args``/``--kwargs`` style JSON option.

    Args:
        value: The option's text, or None when it was not given.
        kind: ``list`` or ``dict``: what the JSON must be.
        option: The option's name, for the error message.

    Returns:
        The parsed value (an empty ``kind()`` when ``value`` is None).

    Raises:
        click.BadParameter: not JSON, or not of the expected kind.
    """
    if value is None:
        return kind()
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(parsed, kind):
        what = (
            "a JSON list, e.g. '[2, 2]'"
            if kind is list
            else "a JSON object, e.g. '{\"x\": 1}'"
        )
        raise click.BadParameter(f"must be {what}", param_hint=option)
    return parsed


def task_arguments(command: F) -> F:
    """Add ``-a/--args`` and ``-k/--kwargs`` (JSON; see :func:`parse_json`) to a command."""
    command = click.option(
        "-k",
        "--kwargs",
        "task_kwargs",
        metavar="JSON",
        help="Keyword arguments, a JSON object.",
    )(command)
    return click.option(
        "-a",
        "--args",
        "task_args",
        metavar="JSON",
        help="Positional arguments, a JSON list.",
    )(command)
