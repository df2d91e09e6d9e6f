"""Findings of this session's review and adversarial run (fixed by the lead)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from batcher.engine import run_job
from tests.conftest import config, write_jsonl
from tests.test_cli import cli

FR = {"ai_config": {"transcription": {"language": "fr"}}}


async def job(server, tmp_path, n=3):
    ids = server.add(n)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    cfg = config(tmp_path, server, src)
    await run_job(cfg)
    return cfg, src, ids


# -- an output that is part of the state (its -wal), or the job's input --------------------------------


async def test_report_refuses_to_write_over_the_states_wal_file(server, tmp_path):
    cfg, _, _ = await job(server, tmp_path)
    wal = cfg.state_file + "-wal"
    with sqlite3.connect(cfg.state_file) as db:  # as after kill -9: the job's last commits are in the -wal
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute("UPDATE meta SET value = value WHERE key = 'fingerprint'")
        kept = Path(wal).read_bytes() if Path(wal).exists() else None
        done = cli("report", "--state", cfg.state_file, "--html", wal)
        assert done.returncode == 2 and "part of it" in done.stderr, done.stderr
        assert (Path(wal).read_bytes() if Path(wal).exists() else None) == kept


async def test_report_and_rollback_refuse_an_html_output_that_is_the_jobs_input(server, tmp_path):
    cfg, src, ids = await job(server, tmp_path)
    before = src.read_bytes()
    done = cli("report", "--state", cfg.state_file, "--html", str(src))
    assert done.returncode == 2 and "the job's input" in done.stderr, done.stderr
    done = cli("rollback", "--state", cfg.state_file, "--html", str(src), "--base-url", server.base_url)
    assert done.returncode == 2 and "the job's input" in done.stderr, done.stderr
    assert src.read_bytes() == before
    assert all(server.doc(m)["ai_config"]["transcription"]["language"] == "fr" for m in ids)
