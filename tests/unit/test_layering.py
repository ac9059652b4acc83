"""Imports inside liteq point downward only (STYLE.md 3.3), checked on the AST."""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

import liteq

PACKAGE = Path(liteq.__file__).parent

#: Layer of each top-level part of the package; a module may import its own
#: layer or lower ones.
LAYERS = {
    "exceptions": 0,
    "states": 0,
    "clock": 0,
    "timeutils": 0,
    "serialization": 1,
    "config": 1,
    "messages": 1,
    "schedules": 1,
    "solar": 1,
    "signals": 1,
    "wakeup": 1,
    "storage": 2,
    "task": 3,
    "result": 3,
    "canvas": 3,
    "execution": 3,
    "followups": 3,
    "registry": 3,
    "control": 3,
    "publishing": 3,
    "prepared": 3,
    "resultrows": 3,
    "log": 3,
    "utils": 3,
    "app": 4,
    "__init__": 4,
    "worker": 5,
    "beat": 5,
    "cli": 6,
    "reload": 6,
    "testing": 6,
    "__main__": 6,
}

#: Third-party modules the producer side never loads at import time.
HEAVY = ("click", "watchdog", "multiprocessing")

#: Function-level imports that may point upward, with the reason.
ALLOWED_LAZY = {
    # ``app.start()`` / ``app.worker_main()`` run the command line on request.
    ("app", "Liteq.start", "cli"),
    # The runtime schedule API lives with beat; only loaded when used.
    ("app", "Liteq.schedules", "beat"),
    # ``add_periodic_task`` builds a beat entry; only loaded when used.
    ("app", "Liteq.add_periodic_task", "beat"),
    # Celery compatibility: objects made without an app use the current one.
    ("result", "_current_app", "app"),
    # An unpickled result comes back on an app of the process (or a new one).
    ("result", "_app_for", "app"),
    ("canvas", "Signature.app", "app"),
}

#: Function-level imports of third-party modules allowed below the CLI.
ALLOWED_LAZY_THIRD_PARTY = {
    # The file watcher starts only when something waits for a change.
    ("wakeup", "watchdog"),
}


@dataclass(frozen=True)
class Import:
    source: Path
    part: str
    function: str | None
    target: str  # absolute dotted name
    line: int


def _part_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, text: str | None = None) -> list[Import]:
    """Return every import in ``path`` (or in ``text``, as if it were that file)."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    part = _part_of(path)
    found: list[Import] = []

    def resolve(node: ast.ImportFrom) -> list[str]:
        if node.level == 0:
            base = node.module or ""
        else:
            parts = module.split(".")
            keep = len(parts) - node.level + (1 if is_package else 0)
            base = ".".join(parts[:keep] + ([node.module] if node.module else []))
        if node.module is None or base == "liteq":
            return [f"{base}.{alias.name}" for alias in node.names]
        return [base]

    def visit(node: ast.AST, scope: list[str]) -> None:
        function = ".".join(scope) or None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub, scope)
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, [*scope, child.name])
                continue
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                targets = resolve(child)
            for target in targets:
                found.append(Import(path, part, function, target, child.lineno))
            visit(child, scope)

    visit(tree, [])
    return found


def _target_part(target: str) -> str | None:
    parts = target.split(".")
    if parts[0] != "liteq":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1]


@functools.cache
def _all_imports_cached() -> tuple[Import, ...]:
    return tuple(
        imp for path in sorted(PACKAGE.rglob("*.py")) for imp in _imports(path)
    )


def _all_imports() -> list[Import]:
    return list(_all_imports_cached())


def test_every_module_belongs_to_a_layer() -> None:
    parts = {_part_of(path) for path in PACKAGE.rglob("*.py")}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


def _upward(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        target = _target_part(imp.target)
        if target is None or target == imp.part:
            continue
        if target not in LAYERS:
            continue  # a name re-exported by liteq/__init__ (e.g. __version__)
        if LAYERS[target] <= LAYERS[imp.part]:
            continue
        if (
            imp.function is not None
            and (imp.part, imp.function, target) in ALLOWED_LAZY
        ):
            continue
        problems.append(
            f"{imp.source.relative_to(PACKAGE.parent)}:{imp.line} "
            f"({imp.function or 'module level'}) imports {imp.target}"
        )
    return problems


def test_liteq_imports_point_downward() -> None:
    assert _upward(_all_imports()) == []


def test_an_upward_import_is_reported_even_inside_a_function() -> None:
    source = (
        "from .worker import Worker\n"
        "def helper():\n"
        "    from .cli import main\n"
        "class Liteq:\n"
        "    def start(self):\n"
        "        from .cli import main\n"
        "if TYPE_CHECKING:\n"
        "    from .beat import Beat\n"
    )
    problems = _upward(_imports(PACKAGE / "app.py", source))
    assert len(problems) == 2
    assert "module level" in problems[0] and "liteq.worker" in problems[0]
    assert "(helper)" in problems[1]


def test_producer_side_never_loads_cli_watcher_or_pools_at_import() -> None:
    problems = []
    for imp in _all_imports():
        if LAYERS[imp.part] > LAYERS["app"]:
            continue
        top = imp.target.split(".")[0]
        if top not in HEAVY:
            continue
        if imp.function is not None and (imp.part, top) in ALLOWED_LAZY_THIRD_PARTY:
            continue
        problems.append(
            f"{imp.source.relative_to(PACKAGE.parent)}:{imp.line} imports {imp.target}"
        )
    assert problems == []


def test_worker_and_beat_do_not_import_each_other() -> None:
    pairs = {
        (imp.part, _target_part(imp.target))
        for imp in _all_imports()
        if imp.part in ("worker", "beat")
    }
    assert ("worker", "beat") not in pairs
    assert ("beat", "worker") not in pairs


def test_nothing_in_the_package_imports_the_testing_helpers() -> None:
    users = [
        str(imp.source.relative_to(PACKAGE.parent))
        for imp in _all_imports()
        if _target_part(imp.target) == "testing" and imp.part != "testing"
    ]
    assert users == []


def test_storage_and_schedules_stay_below_tasks_and_app() -> None:
    problems = [
        f"{imp.source.relative_to(PACKAGE.parent)} imports {imp.target}"
        for imp in _all_imports()
        if imp.part in ("storage", "schedules", "solar", "messages")
        and _target_part(imp.target)
        in ("task", "result", "canvas", "app", "worker", "beat", "cli")
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("app.py", "from .storage import Storage", "liteq.storage"),
        ("app.py", "from . import states", "liteq.states"),
        ("storage/db.py", "from ..exceptions import StorageError", "liteq.exceptions"),
        ("storage/__init__.py", "from .db import Database", "liteq.storage.db"),
        ("app.py", "import peewee", "peewee"),
    ],
)
def test_relative_imports_are_resolved_against_the_module(
    path: str, source: str, expected: str
) -> None:
    (imp,) = _imports(PACKAGE / path, source)
    assert imp.target == expected
