"""``batcher status``: read-only, never blocking the job, right while it runs and after."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batcher.commands.status import CONTRACT_KEYS, read_status, resume_command, status_text
from batcher.core.config import parse_rate
from batcher.errors import UsageError
from batcher.http.budget import Budget
from batcher.http.client import Stats
from batcher.http.pacer import Pacer
from batcher.run.engine import run_job
from batcher.run.live import publish_live
from batcher.run.pool import Control
from batcher.state.store import RowRecord, Store

from ..conftest import config, write_jsonl


async def finished_job(server, tmp_path):
    ids = server.add(4)
    server.api.faults.append({"method": "GET", "meeting": ids[1], "status": 404})
    rows = [{"meeting_id": m, "ai_config": {"transcription": {"language": "fr"}}} for m in ids]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = config(tmp_path, server, src, app_id="app-1", rate="600/60")
    result = await run_job(cfg)
    return cfg, result


async def test_after_the_job_status_gives_the_contract_keys_from_the_state(server, tmp_path):
    cfg, result = await finished_job(server, tmp_path)
    doc = read_status(cfg.state_file)
    assert set(CONTRACT_KEYS) <= doc.keys()
    assert {k: doc[k] for k in ("total", "succeeded", "unchanged", "failed", "skipped", "pending")} == {
        "total": 4,
        "succeeded": 3,
        "unchanged": 0,
        "failed": 1,
        "skipped": 0,
        "pending": 0,
    }
    assert doc["requests"] == result.summary["requests"] == sum(server.api.requests.values())
    assert doc["failures_by_error"] == {"not_found": 1}
    assert doc["paused_until"] is None and doc["running"] is False
    assert doc["resume"] == (
        f"batcher run {tmp_path / 'in.jsonl'} --state {cfg.state_file} --app-id app-1 "
        f"--account-id acct-1 --base-url {server.base_url} --rate 600/60"
    )
    text = status_text(doc, cfg.state_file)
    assert "not_found: 1\n    1 x scripted fault" in text and "resume with:" in text


async def test_status_reads_while_the_job_holds_the_lock_and_a_write_transaction(server, tmp_path):
    cfg, _ = await finished_job(server, tmp_path)
    store = Store.open(cfg.state_file)  # the running job's lock and connection
    try:
        store.db.execute("BEGIN IMMEDIATE")
        store.db.execute("UPDATE rows SET outcome = 'pending'")  # not committed: status must not wait for it
        started = time.monotonic()
        doc = read_status(cfg.state_file)
        assert time.monotonic() - started < 0.9  # less than the 1 s busy timeout: it never waited on the writer
        assert doc["succeeded"] == 3
        store.db.execute("ROLLBACK")
    finally:
        store.close()


async def test_status_writes_nothing(server, tmp_path):
    cfg, _ = await finished_job(server, tmp_path)
    before = hashlib.sha256(Path(cfg.state_file).read_bytes()).hexdigest()
    files = sorted(os.listdir(tmp_path))
    read_status(cfg.state_file)
    assert hashlib.sha256(Path(cfg.state_file).read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == files


def test_a_running_job_publishes_its_pause_counters_and_rate(tmp_path):
    path = str(tmp_path / "s.db")
    store = Store.open(path)
    store.set_meta("fingerprint", {"input": "in.csv", "mode": "merge", "set": [["title", "x"]]})
    store.add_rows([RowRecord(1, "a", "m", None, "succeeded"), RowRecord(2, "a", "m2", None, "pending")])
    cfg = config(tmp_path, None, "in.csv", rate="1200/300")
    control = Control()
    pacer = Pacer(cfg.rate, control.clock)
    pacer.gate.pause_for(120)
    try:
        store.count_requests(7, 2, 1.5)  # the engine's group commit carries the counters
        store.flush()
        publish_live(store, cfg, Stats(requests=7, retries=2), pacer)
        doc = read_status(path)
    finally:
        store.close()
    assert doc["running"] is True and doc["pid"] == os.getpid()
    assert (doc["requests"], doc["retries"]) == (7, 2)
    assert doc["paused_until"] is not None and doc["paused_until"] > time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert doc["rate"] == "1200/300" and doc["rate_per_s"] == 4.0
    # the 120 s pause, then 1 row left at 7 requests a row so far, at the promise (4/s)
    assert doc["eta_s"] == pytest.approx(120 + 7 / 4.0, abs=1)
    assert "--set title=x" in doc["resume"]


def test_a_killed_job_is_not_running_and_its_committed_requests_count_once(tmp_path):
    path = str(tmp_path / "s.db")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store = Store.open(path)
    store.set_meta("fingerprint", {"input": "in.csv", "mode": "patch"})
    store.set_meta("run_stats", {"requests": 10, "retries": 0, "elapsed_s": 5.0, "runs": 1})
    now = time.time()
    live = {"pid": int(dead.stdout), "runs_before": 1, "started_at": now - 30, "updated_at": now, "requests": 5}
    store.set_meta("live", {**live, "retries": 1, "paused_until": now + 100, "rate": None, "rate_per_s": None})
    store.close()
    doc = read_status(path)
    assert doc["running"] is False and doc["paused_until"] is None
    # run_stats already holds what the killed run committed: its live record must not add it again
    assert (doc["requests"], doc["retries"]) == (10, 0)
    assert doc["elapsed_s"] == pytest.approx(5.0)
    assert doc["resume"].startswith("batcher run in.csv --state") and "--mode patch" in doc["resume"]


def test_resume_command_quotes_and_types_set_values():
    fp = {"input": "my rows.csv", "mode": "merge", "set": [["persist_chat", True], ["title", "a b"]]}
    assert resume_command(fp, "s.db", "100/60") == (
        "batcher run 'my rows.csv' --state s.db --set persist_chat=true --set 'title=a b' --rate 100/60"
    )


def test_status_of_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no state file"):
        read_status(str(tmp_path / "nope.db"))
    assert not (tmp_path / "nope.db").exists()


async def test_status_command_prints_json_or_text(server, tmp_path):
    cfg, _ = await finished_job(server, tmp_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for flag in ("--json", None):
        argv = [sys.executable, "-m", "batcher", "status", "--state", cfg.state_file, *([flag] if flag else [])]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        if flag:
            assert json.loads(done.stdout)["failed"] == 1
        else:
            assert "rows: 4 total: 3 succeeded" in done.stdout


def test_rate_of_status_eta_uses_the_measured_rate_when_the_job_is_slower_than_its_promise():
    from batcher.commands.status import eta_s

    doc = {"pending": 10, "skipped": 0, "succeeded": 5, "unchanged": 0, "failed": 0, "requests": 10, "mode": "merge"}
    assert eta_s({**doc, "rate_per_s": 4.0, "current_rate_per_s": 3.9}) == 5.0  # the promise limits: 20 req at 4/s
    assert eta_s({**doc, "rate_per_s": 4.0, "current_rate_per_s": 1.0}) == 20.0  # the server is slower
    assert eta_s({**doc, "rate_per_s": None, "current_rate_per_s": None}) is None
    assert parse_rate("1200/300") is not None


FR = {"ai_config": {"transcription": {"language": "fr"}}}


async def job(server, tmp_path, n=3):
    ids = server.add(n)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    cfg = config(tmp_path, server, src)
    await run_job(cfg)
    return cfg, src, ids


async def test_status_does_not_call_a_killed_job_running_because_its_pid_was_reused(server, tmp_path):
    """Guards status' ``running``: it comes from the state's lock, not from a pid that may have been reused."""
    import orjson

    from batcher.commands.status import read_status
    from batcher.state.store import Store

    cfg, _, _ = await job(server, tmp_path)
    with sqlite3.connect(cfg.state_file) as db:  # as kill -9 leaves it; pid 1 is always alive
        (stats,) = db.execute("SELECT value FROM meta WHERE key = 'run_stats'").fetchone()
        live = {"pid": 1, "runs_before": orjson.loads(stats)["runs"], "started_at": 0, "updated_at": 0}
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('live', ?)", (orjson.dumps(live).decode(),))
    assert read_status(cfg.state_file)["running"] is False
    store = Store.open(cfg.state_file)  # a process holding the state's lock: that one runs
    try:
        assert read_status(cfg.state_file)["running"] is True
    finally:
        store.close()


def test_status_shows_a_pause_the_job_inherited_through_the_tokens_budget(tmp_path):
    """Another process of the token (or the job's own earlier run) was told Retry-After: 40: this
    job sends nothing for 40 s, and status says so, with the ETA after it."""
    path = str(tmp_path / "s.db")
    store = Store.open(path)
    store.set_meta("fingerprint", {"input": "in.csv", "mode": "replace"})
    store.add_rows([RowRecord(1, "a", "m", None, "succeeded"), RowRecord(2, "a", "m2", None, "pending")])
    cfg = config(tmp_path, None, "in.csv", rate="1200/300")
    budget_path = tmp_path / "budget.db"
    other = Budget(budget_path, watch_s=None)
    other.pause_until(time.time() + 40)
    pacer = Pacer(cfg.rate, Control().clock, budget=Budget(budget_path, watch_s=None))
    try:
        assert pacer.gate.remaining_s == 0, "this process itself was told nothing"
        store.count_requests(1, 0, 1.0)
        store.flush()
        publish_live(store, cfg, Stats(requests=1), pacer)
        doc = read_status(path)
    finally:
        store.close()
        other.close()
        pacer.budget.close()
    assert doc["running"] is True and doc["paused_until"] is not None
    assert doc["eta_s"] == pytest.approx(40 + 1 / 4.0, abs=1.5)
