"""Environment variables are read in one module, ``batcher/cli/environment.py``, and mean what it says.

The library takes values; only the command line turns the process environment into them. The
scan reads the imports and attribute uses themselves (``ast``), in every module of the package,
``batcher/fake/`` included: the fake server takes its settings as arguments too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from batcher.cli import environment
from batcher.cli.environment import NAMES, Environment
from batcher.core.config import JobConfig, RateSpec, Secret
from batcher.http.client import Client
from batcher.http.pacer import Pacer

PACKAGE = Path(__file__).resolve().parents[2] / "batcher"
THE_MODULE = PACKAGE / "cli" / "environment.py"
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
DOC = Path(__file__).resolve().parents[2] / "docs" / "reference" / "environment.md"


def env_reads(path: Path) -> list[str]:
    """``file:line`` of every ``os.environ``/``os.getenv``-like use in ``path`` (or ``from os import`` of one)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        is_attribute = isinstance(node, ast.Attribute) and node.attr in ENV_NAMES
        is_import = (
            isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in ENV_NAMES for a in node.names)
        )
        if is_attribute or is_import:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


# The one exception, with its reason: XDG_CACHE_HOME is the platform's cache directory, read where a
# library job's budget file defaults, so that it and a command-line job on one token share one budget.
EXCEPTIONS = {PACKAGE / "http" / "budget.py"}


def test_no_module_but_cli_environment_reads_the_process_environment():
    modules = [p for p in PACKAGE.rglob("*.py") if p != THE_MODULE and p not in EXCEPTIONS]
    assert len(modules) > 40, "the scan found the package"
    reads = [where for path in modules for where in env_reads(path)]
    assert reads == [], "read environment variables in batcher/cli/environment.py and pass the values in"
    assert env_reads(THE_MODULE), "the scan recognizes the one module's own read"


def test_every_variable_read_is_in_the_module_table_and_the_reference_page():
    docstring = environment.__doc__ or ""
    page = DOC.read_text(encoding="utf-8")
    for name in NAMES:
        assert re.search(rf"^{name}\s", docstring, re.M), f"{name} has a row in the module docstring's table"
        assert f"`{name}`" in page, f"{name} is in docs/reference/environment.md"


def test_a_variable_set_to_the_empty_string_counts_as_unset():
    env = Environment.read({"BATCHER_BASE_URL": "", "CLOUDFLARE_ACCOUNT_ID": "", "BATCHER_NO_UVLOOP": ""})
    assert (env.base_url, env.account_id, env.is_uvloop_off) == (None, None, False)


def test_only_the_variables_in_the_table_are_kept():
    env = Environment.read({"CLOUDFLARE_API_TOKEN": " t0k \n", "SOMETHING_ELSE": "x", "BATCHER_NO_UVLOOP": "1"})
    assert set(env.values) == {"CLOUDFLARE_API_TOKEN", "BATCHER_NO_UVLOOP"}
    assert env.api_token == "t0k" and env.is_uvloop_off


def test_the_command_lines_budget_file_is_per_token_under_xdg_cache_home_unless_named():
    env = Environment.read({"XDG_CACHE_HOME": "/c"})
    path = env.budget_path(None, "token-one")
    assert path.startswith("/c/batcher/budget-") and "token-one" not in path
    assert env.budget_path(None, "token-two") != path
    assert env.budget_path("/given.db", "token-one") == "/given.db"


async def test_a_library_client_keeps_its_budget_under_xdg_cache_home_as_the_command_line_does(tmp_path, monkeypatch):
    """A library job with no ``budget_path`` and a command-line job on the same token share one budget
    file (the rate promise across processes), so both honour ``XDG_CACHE_HOME``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = JobConfig(input="x.jsonl", token=Secret("t"), base_url="http://127.0.0.1:9", rate=RateSpec(10, 1.0))

    async with Client(config.http, Pacer(config.pacing.rate)):
        pass
    [made] = (tmp_path / "xdg" / "batcher").glob("budget-*.db")
    assert str(made) == Environment.read({"XDG_CACHE_HOME": str(tmp_path / "xdg")}).budget_path(None, "t")
    assert not (tmp_path / "home").exists()
