"""``liteq schedule`` and ``liteq beat`` options, in-process with click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from liteq import Liteq
from liteq.cli import cli
from liteq.cli.beat import build_schedule, parse_every
from liteq.cli.loader import CliState
from liteq.schedules import clocked, crontab, rrule, schedule
from liteq.solar import solar


def liteq(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=CliState())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("0.5s", 0.5),
    ],
)
def test_parse_every_reads_durations(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "0s", "soon", "5 minutes", "5x", "m5"])
def test_parse_every_rejects_what_is_not_a_positive_duration(text: str) -> None:
    with pytest.raises(click.BadParameter, match="not a positive duration"):
        parse_every(text)


def test_build_schedule_makes_each_kind() -> None:
    assert build_schedule("30s", None, None, None, None) == schedule(30)
    assert build_schedule(None, "*/5 * * * *", None, None, None) == crontab("*/5")
    at = build_schedule(None, None, "2030-01-01T10:00:00+00:00", None, None)
    assert isinstance(at, clocked)
    assert build_schedule(None, None, None, "FREQ=DAILY", None) == rrule("FREQ=DAILY")
    sun = build_schedule(None, None, None, None, "sunset:31.23:121.47")
    assert sun == solar("sunset", 31.23, 121.47)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((None, None, None, None, None), "give exactly one of"),
        (("30s", "* * * * *", None, None, None), "got --every, --cron"),
    ],
)
def test_build_schedule_wants_exactly_one_kind(
    values: tuple[str | None, ...], message: str
) -> None:
    with pytest.raises(click.UsageError, match=message):
        build_schedule(*values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((None, "61 * * * *", None, None, None), "minute: 61 is out of range"),
        ((None, None, "tomorrow", None, None), "not an ISO-8601 time"),
        ((None, None, None, "FREQ=SOMETIMES", None), "rrule: invalid rule"),
        ((None, None, None, None, "sunset:north:east"), "must be numbers"),
        ((None, None, None, None, "sunset"), "EVENT:LATITUDE:LONGITUDE"),
        ((None, None, None, None, "moonrise:1:2"), "unknown event"),
    ],
)
def test_build_schedule_explains_a_bad_value(
    values: tuple[str | None, ...], message: str
) -> None:
    with pytest.raises(click.BadParameter, match=message):
        build_schedule(*values)


def test_schedule_commands_change_the_stored_entries(db_path: Path) -> None:
    db = str(db_path)
    added = liteq(
        "schedule", "add", db, "report", "tasks.report", "--cron", "30 7 * * mon",
        "--args", "[1, 2]", "--kwargs", '{"z": 3}', "--queue", "reports",
        "--priority", "5", "--tz", "Asia/Shanghai", "--catch-up", "skip",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.output.startswith("Added report: tasks.report <crontab: 30 7 * * mon")
    listed = liteq("schedule", "list", db, "--json")
    entry = json.loads(listed.output)
    assert (entry["args"], entry["kwargs"], entry["options"], entry["catch_up"]) == (
        [1, 2],
        {"z": 3},
        {"queue": "reports", "priority": 5},
        "skip",
    )
    assert entry["definition"]["tz"] == "Asia/Shanghai"
    assert liteq("schedule", "disable", db, "report").output == "Disabled report.\n"
    assert "[disabled, runtime]" in liteq("schedule", "list", db).output
    assert liteq("schedule", "enable", db, "report").output.startswith("Enabled report")
    task_id = liteq("schedule", "run", db, "report").output.strip()
    app = Liteq("check", broker=db)
    try:
        assert app.schedules["report"].last_task_id == task_id
    finally:
        app.close()
    assert liteq("schedule", "remove", db, "report").output == "Removed report.\n"
    assert liteq("schedule", "list", db).output == "No schedule entries.\n"


@pytest.mark.parametrize("verb", ["remove", "enable", "disable", "run"])
def test_schedule_verbs_on_an_unknown_name_fail_clearly(
    db_path: Path, verb: str
) -> None:
    liteq("schedule", "add", str(db_path), "x", "t", "--every", "1m")
    result = liteq("schedule", verb, str(db_path), "nope")
    assert result.exit_code == 1
    assert "no schedule entry named 'nope'" in result.output


def test_schedule_add_rejects_bad_input(db_path: Path) -> None:
    db = str(db_path)
    no_kind = liteq("schedule", "add", db, "x", "t")
    assert no_kind.exit_code == 2 and "give exactly one of" in no_kind.output
    bad_args = liteq("schedule", "add", db, "x", "t", "--every", "1s", "--args", "{}")
    assert bad_args.exit_code == 2 and "must be a JSON list" in bad_args.output
    bad_tz = liteq(
        "schedule", "add", db, "x", "t", "--cron", "@daily", "--tz", "Mars/Base"
    )
    assert bad_tz.exit_code == 1 and "unknown time zone" in bad_tz.output
    missing_task = liteq("schedule", "add", db, "x", "--every", "1s")
    assert missing_task.exit_code == 2


def test_schedule_list_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    result = liteq("schedule", "list", str(tmp_path / "none.db"))
    assert result.exit_code == 1 and "does not exist" in result.output
    assert not (tmp_path / "none.db").exists()


def test_beat_refuses_detach(db_path: Path) -> None:
    result = liteq("beat", str(db_path), "--detach")
    assert result.exit_code == 2 and "--detach is not supported" in result.output
