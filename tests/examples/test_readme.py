"""The README's promises: its first command works in a fresh virtualenv, and the
quick start prints exactly what the README shows."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.examples.support import (
    EXAMPLES,
    ROOT,
    copy_example,
    describe,
    program_env,
    python,
    succeeded,
    worker,
)

pytestmark = pytest.mark.examples

RUN_PY = "examples/quickstart/run.py"


def quickstart_output(markdown: Path) -> list[str]:
    """Return the ```text block that follows the ```bash block running run.py.

    Raises:
        AssertionError: the file has no such block.
    """
    text = markdown.read_text(encoding="utf-8")
    found = re.search(
        r"```bash\n[^`]*" + re.escape(RUN_PY) + r"[^`]*```\s*\n```text\n(.*?)```",
        text,
        re.S,
    )
    assert found, (
        f"{markdown.relative_to(ROOT)} has no ```text block right after a ```bash "
        f"block running {RUN_PY}: the quick start's output is not shown "
        "(merge the quick start from examples/quickstart/README.md)"
    )
    return found.group(1).rstrip("\n").splitlines()


def first_command(readme: Path) -> str:
    """Return the README's first shell command (the "Two commands" section).

    Raises:
        AssertionError: no such section or command.
    """
    text = readme.read_text(encoding="utf-8")
    section = text.split("## Two commands", 1)
    assert len(section) == 2, "README.md has no '## Two commands' section"
    block = re.search(r"```bash\n(.*?)```", section[1], re.S)
    assert block, "README.md's 'Two commands' section has no ```bash block"
    commands = [
        line
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands, "README.md's 'Two commands' block has no command"
    return commands[0]


def test_readme_quickstart_output_matches_run_py(tmp_path: Path) -> None:
    copy_example("quickstart", tmp_path)
    printed = python("quickstart/run.py", cwd=tmp_path).stdout.splitlines()
    assert printed == quickstart_output(EXAMPLES / "quickstart" / "README.md")
    assert printed == quickstart_output(ROOT / "README.md")


def test_readme_quickstart_two_terminals_print_4(tmp_path: Path) -> None:
    worker_command = "liteq worker tasks.db -l info"
    client_code = "from tasks import add; print(add.delay(2, 2).get(timeout=10))"
    readme = (EXAMPLES / "quickstart" / "README.md").read_text(encoding="utf-8")
    assert worker_command in readme
    assert f'python -c "{client_code}"' in readme
    folder = copy_example("quickstart", tmp_path)
    with worker(*worker_command.split()[1:], cwd=folder) as w:
        out = python("-c", client_code, cwd=folder).stdout
        log = w.stop()
    assert out == "4\n"
    assert succeeded(log, "tasks.add", "4"), log


@pytest.mark.slow
def test_readme_first_command_runs_the_quickstart_in_a_fresh_virtualenv(
    tmp_path: Path,
) -> None:
    """A newcomer's path: a clean copy of the project, the README's first command."""
    command = first_command(ROOT / "README.md")
    assert RUN_PY in command, (
        f"the README's first command does not run {RUN_PY}: {command}"
    )
    project = tmp_path / "liteq"
    project.mkdir()
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.pyc", "*.db", "*.db-*", "*.egg-info"
    )
    shutil.copytree(ROOT / "liteq", project / "liteq", ignore=ignore)
    shutil.copytree(
        EXAMPLES / "quickstart", project / RUN_PY.rsplit("/", 1)[0], ignore=ignore
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, project / name)
    env = program_env()
    env.pop("VIRTUAL_ENV", None)
    # Leave this virtualenv off PATH, as in a new shell.
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = ":".join(p for p in env["PATH"].split(":") if p != venv_bin)
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, describe(proc)
    expected = quickstart_output(EXAMPLES / "quickstart" / "README.md")
    assert proc.stdout.splitlines() == expected, describe(proc)
