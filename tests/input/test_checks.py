"""A meeting given twice is a duplicate whatever the job's --mode and --set (checks.duplicate_errors).

A file's duplicates are found after its last row by reading those rows again;
that second reading must check them as the first did (the job's mode, its --set
constants), or a row valid only in patch mode reads as invalid there and its
duplicate goes unreported, and sent twice.
"""

from __future__ import annotations

import pytest

from batcher.commands.validate import validate_input
from batcher.core.rows import Row, RowError
from batcher.errors import ValidationFailed
from batcher.run.engine import run_job

from ..conftest import config, write_csv


async def test_a_meeting_given_twice_with_status_in_patch_mode_is_a_duplicate_and_nothing_is_sent(server, tmp_path):
    [mid] = server.add()
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "status"], [[mid, "INACTIVE"], [mid, "INACTIVE"]])
    errors: list[RowError] = []
    with pytest.raises(ValidationFailed):
        await run_job(config(tmp_path, server, src, mode="patch"), on_invalid=errors.append)
    assert [(e.number, e.errors[0].field) for e in errors] == [(2, "meeting_id")]
    assert "duplicate of row 1" in errors[0].message
    assert server.api.requests == {}


def test_validate_reports_the_duplicate_with_set_and_patch_mode(tmp_path):
    mid = "0b9a3b36-7c40-4c7e-9f0e-3f6d2f0f1a11"
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "status"], [[mid, "ACTIVE"], [mid, "ACTIVE"]])
    results = list(validate_input(str(src), None, "acct", None, "patch", [("persist_chat", True)]))
    rows = [r for r in results if isinstance(r, Row)]
    duplicates = [r for r in results if isinstance(r, RowError) and r.is_duplicate]
    assert [r.patch for r in rows] == [{"persist_chat": True, "status": "ACTIVE"}] * 2  # yielded, then named
    assert [d.number for d in duplicates] == [2]
