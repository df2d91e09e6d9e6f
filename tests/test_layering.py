"""The one-way rule between batcher's packages, read from the imports themselves.

    errors, _version  <-  core  <-  { input | state | http | fake }  <-  report  <-  run  <-  commands  <-  cli

``input``, ``state`` and ``http`` are siblings (none imports another); ``fake`` imports only
``core``; ``report`` never imports ``http``; ``core`` imports no asyncio, aiohttp, sqlite3, file I/O,
environment or clock; only ``state`` (and http's own budget file) runs SQL. Every import is counted, those inside functions and under ``TYPE_CHECKING`` too: a cycle
hidden in a function is still a cycle. See docs/design/architecture.md.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "batcher"
RANK = {"errors": 0, "_version": 0, "core": 1, "input": 2, "state": 2, "http": 2, "fake": 2, "report": 3}
RANK |= {"run": 4, "commands": 5, "cli": 6, "__init__": 7, "__main__": 7}
SIBLINGS = {"input", "state", "http", "fake"}
ALLOWED_EXTRA = {"fake": {"core", "errors", "_version"}}  # a package that may import only these
FORBIDDEN = {"report": {"http", "run"}}
CORE_BANNED_MODULES = {"asyncio", "aiohttp", "sqlite3", "fcntl", "socket", "subprocess", "tempfile", "shutil"}
CORE_BANNED_MODULES |= {"os", "io", "pathlib", "time", "importlib"}  # files, the environment, a clock of its own
SQL_CALLS = {"execute", "executemany", "executescript"}
# the packages whose modules may run SQL: the state file's, and http's own budget file (budget.py)
SQL_ALLOWED = {"batcher/state/", "batcher/http/budget.py"}
CORE_BANNED_CALLS = {"open"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``batcher.core.rows`` for ``batcher/core/rows.py``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """Every batcher module ``path`` imports, resolved to absolute names, with its line."""
    here = module_name(path, root)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == root.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            if node.module is None or (target.count(".") == 1 and target.split(".")[1] in RANK):
                # "from . import runs" / "from batcher import core": the names may be modules
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def stage(module: str) -> str:
    """The package a module belongs to: ``core`` for ``batcher.core.rows``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def violations(root: Path = PACKAGE) -> list[str]:
    """Each import that runs against the rule, and each cycle between modules."""
    bad = []
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(root.rglob("*.py")):
        src = module_name(path, root)
        for line, target in imports_of(path, root):
            a, b = stage(src), stage(target)
            if b not in RANK:
                b = target.split(".")[1]  # e.g. batcher.__version__: the package face
            edge = f"{path.relative_to(root.parent)}:{line}: {src} -> {target}"
            if target == root.name or (b == "__init__" and a != "__init__" and a != "__main__"):
                bad.append(f"{edge} (reaches the package face)")
            elif a != b and (
                RANK.get(b, 99) > RANK[a]
                or (a in SIBLINGS and b in SIBLINGS)
                or (a in ALLOWED_EXTRA and b not in ALLOWED_EXTRA[a])
                or b in FORBIDDEN.get(a, ())
            ):
                bad.append(f"{edge} ({a} may not import {b})")
            if target != src:
                graph[src].add(target)
    bad += [f"cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append([*sorted(group), sorted(group)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def core_impurities(root: Path = PACKAGE) -> list[str]:
    """Imports of I/O modules, and calls of ``open``, in ``core``."""
    bad = []
    for path in sorted((root / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module.split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CORE_BANNED_CALLS:
                bad.append(f"{path.name}:{node.lineno}: calls {node.func.id}()")
            bad += [f"{path.name}:{node.lineno}: imports {n}" for n in names if n in CORE_BANNED_MODULES]
    return bad


def sql_outside_state(root: Path = PACKAGE) -> list[str]:
    """Calls of ``execute``/``executemany``/``executescript`` outside the state package (and the budget)."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        where = path.relative_to(root.parent).as_posix()
        if any(where.startswith(allowed) for allowed in SQL_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
                bad.append(f"{where}:{node.lineno}: .{node.func.attr}()")
    return bad


def test_only_the_state_package_runs_sql() -> None:
    assert sql_outside_state() == []


def test_sql_run_outside_the_state_on_purpose_is_caught(tmp_path: Path) -> None:
    (tmp_path / "batcher" / "report").mkdir(parents=True)
    (tmp_path / "batcher" / "report" / "bad.py").write_text("def f(db):\n    return db.execute('SELECT 1')\n")
    assert sql_outside_state(tmp_path / "batcher") == ["batcher/report/bad.py:2: .execute()"]


def test_every_import_runs_one_way_and_no_modules_import_each_other() -> None:
    assert violations() == []


def test_core_does_no_io() -> None:
    assert core_impurities() == []


def test_the_package_root_holds_only_its_face_the_version_and_the_errors() -> None:
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "_version.py", "errors.py"]
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(
        k for k in RANK if k not in ("errors", "_version", "__init__", "__main__")
    )


@pytest.mark.parametrize(
    ("where", "line", "expected"),
    [
        ("core/extra.py", "from ..state.store import Store\n", "core may not import state"),
        ("input/extra.py", "from ..http.client import Client\n", "input may not import http"),
        ("report/extra.py", "from ..http import client\n", "report may not import http"),
        ("fake/extra.py", "from ..report.console import Console\n", "fake may not import report"),
        ("state/extra.py", "from batcher import __version__\n", "reaches the package face"),
        ("core/extra.py", "def f():\n    from .more import g\n", "cycle: batcher.core.extra -> batcher.core.more"),
    ],
    ids=["core-up", "sibling", "report-http", "fake-report", "package-face", "hidden-cycle"],
)
def test_a_wrong_import_added_on_purpose_is_caught(tmp_path: Path, where: str, line: str, expected: str) -> None:
    root = tmp_path / "batcher"
    for sub in ("core", "input", "state", "http", "report", "fake"):
        (root / sub).mkdir(parents=True)
        (root / sub / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "core" / "more.py").write_text("from .extra import x\n")
    (root / where).write_text(line + "x = 1\n")
    assert any(expected in v for v in violations(root)), violations(root)


def test_core_doing_io_on_purpose_is_caught(tmp_path: Path) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "bad.py").write_text(
        "import sqlite3\nfrom time import time\n\ndef f(p):\n    return open(p)\n"
    )
    assert core_impurities(tmp_path) == [
        "bad.py:1: imports sqlite3",
        "bad.py:2: imports time",
        "bad.py:5: calls open()",
    ]
