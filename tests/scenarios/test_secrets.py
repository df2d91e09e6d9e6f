"""Canaries: the token and storage credentials never reach a file, a stream or a repr."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from batcher.cli.options import read_token
from batcher.core.config import JobConfig, Secret
from batcher.run.engine import run_job
from batcher.state.store import Store

from ..conftest import ENV, TOKEN, assert_no_canary, cli, config, run_cli, write_jsonl


def decoded_snapshots(state: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every document the state file keeps, decoded through the store (as rollback reads them)."""
    store = Store.open(state)
    try:
        for account, meeting, _row, before, after in store.snapshots():
            yield f"snapshot before of {account}/{meeting}", before
            yield f"snapshot after of {account}/{meeting}", after
    finally:
        store.close()


async def test_no_secret_in_any_file_or_stream(server, tmp_path):
    s3 = {"type": "aws", "bucket": "b", "access_key": "AKIA-CANARY-ACCESS", "secret": "CANARY-SECRET-VALUE"}
    sftp = {"type": "sftp", "host": "h", "password": "CANARY-SFTP-PASSWORD", "private_key": "CANARY-PRIVATE-KEY"}
    guarded, fine, rejected = server.add(3)
    server.doc(guarded)["recording_config"]["storage_config"] = s3
    server.api.faults.append(
        {
            "kind": "status",
            "status": 400,
            "meeting": rejected,
            "method": "PUT",
            "message": "bad password CANARY-SFTP-PASSWORD",
        }
    )
    rows = [
        {"meeting_id": guarded, "title": "x"},
        {"meeting_id": fine, "recording_config": {"storage_config": s3}},
        {"meeting_id": rejected, "recording_config": {"storage_config": sftp}},
        {"meeting_id": "11111111-2222-4333-8444-555555555555", "recording_config": {"storage_config": s3}},
        {"meeting_id": "not-a-uuid", "recording_config": {"storage_config": {**s3, "secret": 5}}},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    streams = []
    for args in (
        ("plan", str(src), "--out", str(tmp_path / "plan.jsonl"), "-v"),
        ("run", str(src), "--skip-invalid", "--results", "-", "--summary-json", str(tmp_path / "s.json"), "-v"),
        ("run", str(src), "--report", str(tmp_path / "f.csv"), "--retry-failed", "-v"),
        ("rollback", "--state", str(src) + ".state.db", "--allow-credential-reset", "-v"),
    ):
        code, out, err = await run_cli(*args, base_url=server.base_url)
        assert code in (0, 1), err
        streams += [out, err]
    for i, text in enumerate(streams):
        assert_no_canary(text, f"stream {i}")
    written = [p for p in tmp_path.iterdir() if p.is_file() and p.name != "in.jsonl"]
    assert any(p.name.endswith(".state.db") for p in written) and any(
        p.name.endswith("failures.jsonl") for p in written
    )
    for path in written:
        assert_no_canary(path.read_bytes(), path.name)
    # Snapshots are zlib-compressed: a canary inside one is invisible to the raw bytes above.
    snapshots = list(decoded_snapshots(str(src) + ".state.db"))
    assert len(snapshots) >= 2, "the rows that reached a PUT kept their way back"
    for where, document in snapshots:
        assert_no_canary(orjson.dumps(document), where)
    report = (tmp_path / "in.jsonl.failures.jsonl").read_text()
    assert '"***"' in report and "credential_guard" in report


def test_secret_and_config_reprs_hide_the_token():
    cfg = JobConfig(input="x.csv", token=Secret(TOKEN))
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.token) and cfg.token.reveal() == TOKEN


def test_token_file_readable_by_others_warns(tmp_path):
    path = Path(tmp_path / "token")
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o644)
    token, warnings = read_token(str(path), {})
    assert token.reveal() == TOKEN and "chmod 600" in warnings[0]
    os.chmod(path, 0o600)
    assert read_token(str(path), {})[1] == []


async def test_insecure_prints_a_warning(server, tmp_path):
    [mid] = server.add()
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "x"}])
    code, _, err = await run_cli("run", str(src), "--insecure", base_url=server.base_url, env=ENV)
    assert code == 0, err
    assert "TLS certificates are NOT verified" in err


FR = {"ai_config": {"transcription": {"language": "fr"}}}


MEETING = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"


def test_the_mask_is_never_taken_for_a_credential_in_set_or_in_a_row(tmp_path):
    """Guards the credential checks: batcher's own mask ``***`` is refused as a credential, in ``--set`` and in a row."""
    src = tmp_path / "rows.csv"
    src.write_text(f"meeting_id\n{MEETING}\n", encoding="utf-8")
    done = cli("validate", str(src), "--set", "recording_config.storage_config.secret=***")
    assert done.returncode == 2 and "give the real value" in done.stderr
    src.write_text(
        f"meeting_id,recording_config.storage_config.type,recording_config.storage_config.secret\n{MEETING},aws,***\n",
        encoding="utf-8",
    )
    done = cli("validate", str(src))
    assert done.returncode == 2 and "row 1: recording_config.storage_config.secret: '***'" in done.stderr


async def test_no_part_of_a_secret_survives_where_an_error_message_is_cut_short(server, tmp_path):
    """Guards the scrubbing of error messages: secrets go before the message is cut short, so no prefix of one survives."""
    from ..conftest import TOKEN

    secret = "SECRET-CANARY-0123456789-abcdefghij"
    echo_token, echo_secret = server.add(2)
    pad = "y" * 150  # the secret straddles the 200th character of the message
    server.api.faults.append(
        {
            "method": "GET",
            "meeting": echo_token,
            "status": 400,
            "content_type": "application/json",
            "body": f'{{"success": false, "debug": "{pad} {TOKEN}"}}',
        }
    )
    server.api.faults.append(
        {
            "method": "PUT",
            "meeting": echo_secret,
            "status": 400,
            "content_type": "text/html",
            "body": f"<html><body>{'z' * 140} {secret}</body></html>",
        }
    )
    storage = {"type": "aws", "bucket": "b", "access_key": "AKIA-CANARY-KEY", "secret": secret}
    rows = [
        {"meeting_id": echo_token, **FR},
        {"meeting_id": echo_secret, "recording_config": {"storage_config": storage}},
    ]
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", rows))
    result = await run_job(cfg)
    assert result.summary["failed"] == 2
    with sqlite3.connect(cfg.state_file) as db:
        messages = [m for (m,) in db.execute("SELECT message FROM rows")]
    text = "\n".join(messages) + Path(cfg.report_file).read_text(encoding="utf-8")
    assert "yyyy" in text and "zzzz" in text  # the messages are there, cut short
    for value in (TOKEN, secret):
        assert value[:6] not in text, f"{value[:6]}... leaked"


async def test_a_private_key_echoed_json_escaped_in_an_error_body_is_scrubbed(server, tmp_path):
    """Guards the scrubbing of error bodies: a multi-line private key is found also where the server echoes it JSON-escaped."""
    import orjson

    key = "-----BEGIN PRIVATE KEY-----\nCANARYKEYLINE1\nCANARYKEYLINE2\n-----END PRIVATE KEY-----"
    [mid] = server.add(1)
    echoed = {"success": False, "debug": {"storage_config": {"private_key": key}}}
    server.api.faults.append(
        {
            "method": "PUT",
            "meeting": mid,
            "status": 400,
            "content_type": "application/json",
            "body": orjson.dumps(echoed).decode(),
        }
    )
    storage = {"type": "sftp", "host": "h", "username": "u", "private_key": key}
    rows = [{"meeting_id": mid, "recording_config": {"storage_config": storage}}]
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", rows))
    assert (await run_job(cfg)).summary["failed"] == 1
    with sqlite3.connect(cfg.state_file) as db:
        text = "\n".join(m for (m,) in db.execute("SELECT message FROM rows")) + Path(cfg.report_file).read_text()
    assert "private_key" in text and "CANARYKEY" not in text


async def test_credentials_given_with_set_never_reach_the_state_status_or_resume_line(server, tmp_path):
    """Guards credentials given with ``--set``: masked in the state, in status and in the resume line, from the library and the CLI."""
    import sqlite3

    from batcher.commands.status import read_status

    [mid] = server.add()
    src = tmp_path / "ids.csv"
    src.write_text(f"meeting_id\n{mid}\n")
    sets = (
        ("recording_config.storage_config.type", "aws"),
        ("recording_config.storage_config.secret", "SK-CANARY-set"),
    )
    sets += (("recording_config.storage_config.access_key", "AK-CANARY-set"),)
    result = await run_job(config(tmp_path, server, src, set_values=sets))
    assert result.exit_code == 0
    assert server.doc(mid)["recording_config"]["storage_config"]["secret"] == "SK-CANARY-set"
    db = sqlite3.connect(tmp_path / "job.state.db")
    dump = "\n".join(db.iterdump())
    db.close()
    assert "CANARY" not in dump
    status = read_status(str(tmp_path / "job.state.db"))
    assert "CANARY" not in str(status) and "secret=***" in status["resume"]
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "run", str(src), "--account-id", "a", "--base-url", "http://127.0.0.1:9",
         "--state", str(tmp_path / "other.db"), "--set", "recording_config.storage_config.secret=SK-CANARY-cli",
         "--set=recording_config.storage_config.access_key=AK-CANARY-cli",
         "--set", "recording_config.storage_config.type=aws", "--max-failures", "0", "--rate", "none", "--max-attempts", "1"],
        capture_output=True, text=True,
        env={"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # nothing listens there: --max-failures 0 halts at once
    assert "CANARY" not in proc.stderr and "secret=***" in proc.stderr
