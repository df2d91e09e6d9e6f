"""The bad-input corpus (tests/corpus/, outcomes in expected.json): every problem named, nothing lost.

Each file is checked three ways: ``validate`` lists every expected error (row,
field, a phrase of the reason) and nothing else, in one pass; a header-level
problem stops before any row; and ``run --skip-invalid`` reports every invalid
row as failed while sending requests for valid rows only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.commands.validate import validate_input
from batcher.core.rows import Row, RowError
from batcher.errors import InputError
from batcher.input.source import Source
from batcher.run.engine import run_job

from ..conftest import config, read_jsonl

CORPUS = Path(__file__).parents[1] / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
ROW_FILES = {name: e for name, e in EXPECTED.items() if "errors" in e}
HEADER_FILES = {name: e for name, e in EXPECTED.items() if "header_error" in e}


def checked(name: str) -> tuple[list[Row], list[RowError]]:
    results = list(validate_input(str(CORPUS / name), default_account="acct-1"))
    errors = [r for r in results if isinstance(r, RowError)]
    dup_rows = {e.number for e in errors if e.is_duplicate}
    rows = [r for r in results if isinstance(r, Row) and r.number not in dup_rows]
    return rows, errors


@pytest.mark.parametrize("name", ROW_FILES, ids=ROW_FILES)
def test_validate_names_every_problem_with_row_and_field(name):
    rows, errors = checked(name)
    found = sorted((e.number, f.field, f.reason) for e in errors for f in e.errors)
    expected = sorted(ROW_FILES[name]["errors"])
    assert [(row, field) for row, field, _ in found] == [(row, field) for row, field, _ in expected]
    for (_, _, reason), (_, _, phrase) in zip(found, expected, strict=True):
        assert phrase in reason
    assert len(rows) == ROW_FILES[name]["valid"]


@pytest.mark.parametrize("name", HEADER_FILES, ids=HEADER_FILES)
def test_header_problems_stop_before_any_row(name):
    with pytest.raises(InputError) as caught:
        checked(name)
    assert HEADER_FILES[name]["header_error"] in str(caught.value)


@pytest.mark.parametrize("name", [n for n, e in ROW_FILES.items() if e["errors"]], ids=lambda n: n)
async def test_skip_invalid_reports_every_invalid_row_and_sends_only_valid_ones(server, tmp_path, name):
    rows, errors = checked(name)
    for row in rows:
        server.api.add_meeting(row.account_id, row.meeting_id)
    # Merge mode judges required-if fields on the merged document (issue 10.13): such rows are read
    # (GET) and refused as invalid when the meeting does not supply the field either.
    deferred = [e for e in errors if all("required whenever" in f.reason for f in e.errors)]
    for err in deferred:
        server.api.add_meeting("acct-1", err.meeting_id)
    result = await run_job(config(tmp_path, server, CORPUS / name, skip_invalid=True, account_id="acct-1"))
    report = read_jsonl(tmp_path / "failures.jsonl")
    assert sorted(r["row"] for r in report) == sorted({e.number for e in errors})
    # required-if judged on the merged document depends on the meeting: a distinct kind --retry-failed retries
    merged = {e.number for e in deferred}
    assert all(r["error"] == ("invalid_merged" if r["row"] in merged else "invalid") for r in report)
    assert result.summary["total"] == len(rows) + len({e.number for e in errors})
    done = result.summary["succeeded"] + result.summary["unchanged"]
    assert done == len(rows)
    assert server.api.requests["GET"] == len(rows) + len(deferred), (
        "a GET per valid row (and a PUT if it changes), nothing for invalid ones"
    )
    assert server.api.requests["PUT"] <= len(rows)
    assert server.api.requests["PUT"] == result.summary["succeeded"]


def test_every_corpus_file_has_an_expected_outcome():
    on_disk = {p.name for p in CORPUS.iterdir() if p.name != "expected.json"}
    assert on_disk == set(EXPECTED)


def test_reading_a_corpus_file_twice_gives_the_same_rows():
    with (
        Source(str(CORPUS / "quoted_commas_newlines.csv")) as first,
        Source(str(CORPUS / "quoted_commas_newlines.csv")) as second,
    ):
        assert [first.decode(r) for _, r in first.records()] == [second.decode(r) for _, r in second.records()]
