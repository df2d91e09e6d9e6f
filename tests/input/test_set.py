"""``--set PATH=VALUE`` constants: typed like CSV cells, applied to every row, part of the job's identity."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest

from batcher.cli.tools import parse_set
from batcher.commands.plan import plan_job
from batcher.errors import StateMismatchError, UsageError, ValidationFailed
from batcher.run.engine import run_job

from ..conftest import ACCOUNT, cli, config, read_jsonl, write_csv, write_jsonl

FR = ("ai_config.transcription.language", "fr")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ai_config.transcription.language=fr", FR),
        ("persist_chat=TRUE", ("persist_chat", True)),
        ("recording_config.max_seconds=3600", ("recording_config.max_seconds", 3600)),
        ('ai_config.transcription.keywords=["a","b"]', ("ai_config.transcription.keywords", ["a", "b"])),
        ("title=null", ("title", None)),
        ("title=a=b", ("title", "a=b")),
        ("status=INACTIVE", ("status", "INACTIVE")),
    ],
    ids=["enum", "bool-any-case", "int", "json-array", "null", "equals-in-value", "status"],
)
def test_set_values_are_typed_like_csv_cells(text, expected):
    assert parse_set(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ai_config.transcription.langauge=fr", "did you mean 'ai_config.transcription.language'"),
        ("ai_config.transcription.language=xx", "must be one of"),
        ("persist_chat=yes", "must be true or false"),
        ("recording_config.max_seconds=5", "between 60 and 86400"),
        ("title", "is not PATH=VALUE"),
        ("title=", "write title=null"),
        ("status=PAUSED", "ACTIVE or INACTIVE"),
        ("persist_chat=null", "null is not allowed"),
    ],
    ids=[
        "misspelt-path",
        "bad-enum",
        "bad-bool",
        "out-of-range",
        "no-equals",
        "empty",
        "bad-status",
        "null-not-allowed",
    ],
)
def test_bad_set_values_are_refused_with_the_fix(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_set(text)


def test_one_path_set_twice_differently_or_status_outside_patch_mode_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="two different values"):
        config(tmp_path, None, "in.csv", set_values=[FR, ("ai_config.transcription.language", "de")])
    with pytest.raises(UsageError, match="needs --mode patch"):
        config(tmp_path, None, "in.csv", set_values=[("status", "INACTIVE")])


async def test_set_over_an_ids_only_input_changes_every_meeting(server, tmp_path):
    ids = server.add(3, title="Keep")
    src = write_jsonl(tmp_path / "ids.jsonl", [{"meeting_id": m, "account_id": ACCOUNT} for m in ids])
    result = await run_job(config(tmp_path, server, src, set_values=[FR, ("persist_chat", True)]))
    assert result.exit_code == 0 and result.summary["succeeded"] == 3
    for m in ids:
        doc = server.doc(m)
        assert (doc["ai_config"]["transcription"]["language"], doc["persist_chat"], doc["title"]) == (
            "fr",
            True,
            "Keep",
        )


async def test_set_works_on_stdin_rows_too(server, tmp_path):
    [mid] = server.add()
    stdin = io.BytesIO(f'{{"meeting_id": "{mid}"}}\n'.encode())
    cfg = config(tmp_path, server, "-", set_values=[FR])
    result = await run_job(cfg, stdin=stdin)
    assert result.exit_code == 0
    assert server.doc(mid)["ai_config"]["transcription"]["language"] == "fr"


async def test_a_row_giving_a_set_path_another_value_is_invalid_naming_row_and_path(server, tmp_path):
    a, b = server.add(2)
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "ai_config.transcription.language"], [[a, "fr"], [b, "de"]])
    errors = []
    with pytest.raises(ValidationFailed):
        await run_job(config(tmp_path, server, src, set_values=[FR]), on_invalid=errors.append)
    assert [(e.number, [f.field for f in e.errors]) for e in errors] == [(2, ["ai_config.transcription.language"])]
    assert "the row gives 'de' but --set gives 'fr'" in errors[0].message
    assert server.api.requests == {}


async def test_resuming_with_a_different_set_is_refused(server, tmp_path):
    [mid] = server.add()
    src = write_jsonl(tmp_path / "ids.jsonl", [{"meeting_id": mid}])
    assert (await run_job(config(tmp_path, server, src, set_values=[FR]))).exit_code == 0
    for other in ([("ai_config.transcription.language", "de")], []):
        with pytest.raises(StateMismatchError, match="set"):
            await run_job(config(tmp_path, server, src, set_values=other))


async def test_plan_shows_the_set_change(server, tmp_path):
    [mid] = server.add()
    src = write_jsonl(tmp_path / "ids.jsonl", [{"meeting_id": mid}])
    out = tmp_path / "plan.jsonl"
    result = await plan_job(config(tmp_path, server, src, set_values=[FR]), str(out))
    assert result.exit_code == 0
    [line] = read_jsonl(out)
    assert line["changes"] == [{"path": "ai_config.transcription.language", "before": "en-US", "after": "fr"}]


def test_validate_checks_rows_with_set_and_mode_offline(tmp_path):
    mid = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "status": "INACTIVE"}])
    base = [sys.executable, "-m", "batcher", "validate", str(src), "--account-id", ACCOUNT]
    env = {"PATH": "/usr/bin:/bin"}  # no token, no network needed
    merge = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
    assert merge.returncode == 2 and "row 1: status: status can only be changed with --mode patch" in merge.stderr
    patch = subprocess.run(
        [*base, "--mode", "patch", "--set", "title=x"], capture_output=True, text=True, env=env, timeout=60
    )
    assert patch.returncode == 0, patch.stderr
    bad = subprocess.run([*base, "--set", "titel=x"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "did you mean 'title'" in bad.stderr


async def test_a_credential_inside_an_object_given_to_set_is_refused_before_it_is_kept(server, tmp_path):
    """Guards ``--set``: a credential inside an object value is refused before the state could keep it."""
    ids = server.add(1)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m} for m in ids])
    value = '{"type": "aws", "bucket": "b", "access_key": "AKIA-CANARY", "secret": "SECRET-CANARY"}'
    state = tmp_path / "job.state.db"
    done = cli(
        "run",
        str(src),
        "--state",
        str(state),
        "--base-url",
        server.base_url,
        "--set",
        f"recording_config.storage_config={value}",
    )
    assert done.returncode == 2 and "give each credential as its own --set" in done.stderr
    assert "CANARY" not in done.stderr + done.stdout and not state.exists()
    assert sum(server.api.requests.values()) == 0
