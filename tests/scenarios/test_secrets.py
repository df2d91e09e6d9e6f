"""Canaries: the token and storage credentials never reach a file, a stream or a repr."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from batcher.cli.options import read_token
from batcher.core.config import JobConfig, Secret
from batcher.state.store import Store

from ..conftest import ENV, TOKEN, assert_no_canary, run_cli, write_jsonl


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
