"""``validate``: rows judged offline as run would judge them, without asking the server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import write_jsonl

NEW_S3_KEYS = {"access_key": "NEW-AK-CANARY", "secret": "NEW-S-CANARY"}


def test_validate_offline_says_the_type_is_needed_unless_the_meeting_has_one(tmp_path):
    from batcher.commands.validate import validate_input

    row = {"meeting_id": "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "recording_config": {"storage_config": NEW_S3_KEYS}}
    [result] = list(validate_input(str(write_jsonl(tmp_path / "in.jsonl", [row]))))
    [problem] = result.errors
    assert problem.field == "recording_config.storage_config.type"
    assert "unless the meeting already has one" in problem.reason


@pytest.mark.parametrize(("mode", "code"), [("merge", 0), ("replace", 2)])
def test_validate_judges_a_key_rotation_as_run_does(tmp_path, mode, code):
    """Guards validate: a key rotation without the storage type is judged per mode as run judges it, echoing no credential."""
    keys = {"access_key": "AK-CANARY-v", "secret": "SK-CANARY-v"}  # no storage_config.type: the meeting has one
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"meeting_id": "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "recording_config": {"storage_config": keys}}],
    )
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "validate", str(src), "--mode", mode],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    assert "recording_config.storage_config.type" in proc.stderr
    assert "CANARY" not in proc.stderr
    if mode == "merge":
        assert "valid if the meeting has one" in proc.stderr and "1 valid, 0 invalid" in proc.stderr
