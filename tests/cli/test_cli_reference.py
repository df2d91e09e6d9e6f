"""docs/reference/cli.md is generated from the parsers and complete: every command and option, each with help.

The reference is only worth reading if it cannot drift from ``batcher --help``: these tests walk the
same parser the command line uses (through ``scripts/gen_cli_reference.py``), so an option added
without help text, or added without regenerating the file (``make docs``), fails the suite.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "scripts" / "gen_cli_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return gen.build_parser()


@pytest.fixture(scope="module")
def reference(parser: argparse.ArgumentParser) -> str:
    return gen.render(parser)


def _section(reference: str, name: str) -> str:
    """The part of the reference under ``## `batcher NAME``` (up to the next subcommand's heading)."""
    match = re.search(rf"^## `batcher {re.escape(name)}`\n(.*?)(?=^## |\Z)", reference, re.S | re.M)
    assert match, f"no section for batcher {name}"
    return match.group(1)


def test_every_subcommand_and_each_of_its_options_is_in_the_generated_reference(parser, reference):
    missing = []
    for name, _, sub in gen.subcommands(parser):
        if f"## `batcher {name}`" not in reference:
            missing.append(f"batcher {name}")
            continue
        listed = " ".join(re.findall(r"^\| `([^`]+)` \|", _section(reference, name), re.M))  # the table's rows
        for action in gen.options(sub):
            for flag in action.option_strings or [action.metavar or action.dest]:
                if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", listed):
                    missing.append(f"batcher {name} {flag}")
    assert not missing, f"not in the generated reference: {missing}"


def test_the_reference_names_every_subcommand_the_cli_accepts(reference):
    for name in ("run", "plan", "validate", "rollback", "fake-api", "export", "status", "report"):
        assert f"## `batcher {name}`" in reference


def test_every_subcommand_and_option_has_help_text(parser):
    assert gen.undocumented(parser) == [], "give each a help= text (argparse.SUPPRESS only in DELIBERATELY_HIDDEN)"


def test_an_option_added_without_help_or_hidden_by_accident_is_reported():
    probe = argparse.ArgumentParser(prog="batcher")
    sub = probe.add_subparsers(dest="command")
    tool = sub.add_parser("tool", help="a tool")
    tool.add_argument("--documented", help="says what it does")
    tool.add_argument("--bare")
    tool.add_argument("--hidden", help=argparse.SUPPRESS)
    sub.add_parser("silent")
    assert gen.undocumented(probe) == ["batcher tool --bare BARE", "batcher tool --hidden HIDDEN", "batcher silent"]


def test_the_committed_cli_reference_is_the_generated_one(reference):
    committed = (ROOT / "docs" / "reference" / "cli.md").read_text(encoding="utf-8")
    assert committed == reference, "docs/reference/cli.md is stale: run `make docs`"


def test_the_generated_reference_does_not_depend_on_the_environment(monkeypatch, reference):
    monkeypatch.setenv("BATCHER_BASE_URL", "http://127.0.0.1:9/client/v4")
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", "someone-elses-account")
    monkeypatch.setenv("COLUMNS", "40")
    assert gen.render(gen.build_parser()) == reference


def test_check_mode_exits_1_when_the_committed_reference_is_stale(tmp_path, monkeypatch):
    stale = tmp_path / "cli.md"
    stale.write_text("# an old reference\n", encoding="utf-8")
    monkeypatch.setattr(gen, "REFERENCE", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
