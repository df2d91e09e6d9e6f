"""Findings of this session's review and adversarial run (fixed by the lead)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batcher.run.engine import run_job
from tests.conftest import cli, config, write_jsonl

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


# -- credentials: never as batcher's own mask, never inside an object given to --set --------------------

MEETING = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"


def test_the_mask_is_never_taken_for_a_credential_in_set_or_in_a_row(tmp_path):
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


async def test_a_credential_inside_an_object_given_to_set_is_refused_before_it_is_kept(server, tmp_path):
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


# -- a secret across the cut of a long error message ------------------------------------------------------


async def test_no_part_of_a_secret_survives_where_an_error_message_is_cut_short(server, tmp_path):
    from tests.conftest import TOKEN

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


# -- a commit that fails part-way ---------------------------------------------------------------------------


def test_a_failed_commit_rolls_back_and_keeps_its_outcomes_for_the_next(tmp_path):
    from batcher.state.store import RowRecord, Store

    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        store.add_rows([RowRecord(1, "acct-1", MEETING, b"h" * 16), RowRecord(2, "acct-1", MEETING.upper(), b"i" * 16)])
        if store.db.in_transaction:  # pre-flight's own transaction
            store.commit()
        store.record(1, "succeeded", status=200, attempts=1)
        store.count_requests(2, 0, 0.5)
        store.db.execute(
            "CREATE TEMP TRIGGER full_disk BEFORE INSERT ON snapshots BEGIN SELECT RAISE(FAIL, 'disk full'); END"
        )
        with pytest.raises(sqlite3.Error, match="disk full"):
            store.save_snapshots([("acct-1", MEETING, 2, {"title": "a"}, {"title": "b"})])
        assert not store.db.in_transaction, "a failed flush left its transaction open"
        store.db.execute("DROP TRIGGER full_disk")
        store.flush()  # the next group commit: the outcome and the counters the failed one carried
        assert store.db.execute("SELECT outcome FROM rows WHERE row = 1").fetchone() == ("succeeded",)
        assert store.run_stats()["requests"] == 2
        assert store.db.execute("SELECT COUNT(*) FROM snapshots").fetchone() == (0,)  # the caller was told
    finally:
        store.close()


# -- bucket widths follow the job's age, not each run's --------------------------------------------------


def test_a_run_of_a_job_begun_hours_ago_starts_with_wide_buckets(tmp_path):
    from batcher.core.timings import Timeline
    from batcher.state import runs
    from batcher.state.store import Store

    now = [1_800_000_000.0]
    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        first = Timeline(lambda: now[0])
        runs.open_run(store, first, "run", {})
        runs.close_run(store, first, 130)
        now[0] += 7 * 3600  # resumed seven hours later
        second = Timeline(lambda: now[0])
        runs.open_run(store, second, "run", {})
        assert second.span(now[0])[1] == 60, "a resumed run began again with 1-s buckets"
        assert first.span(1_800_000_000.0)[1] == 1
    finally:
        store.close()


async def test_status_does_not_call_a_killed_job_running_because_its_pid_was_reused(server, tmp_path):
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


async def test_a_private_key_echoed_json_escaped_in_an_error_body_is_scrubbed(server, tmp_path):
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


def test_an_abbreviated_option_is_refused_so_no_credential_slips_past_the_masking(tmp_path):
    src = tmp_path / "rows.csv"
    src.write_text(f"meeting_id\n{MEETING}\n", encoding="utf-8")
    done = cli("validate", str(src), "--se", "recording_config.storage_config.secret=REALSECRET99")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


def test_an_output_is_never_the_journal_of_a_state_named_through_a_symlink_or_of_a_later_output(tmp_path):
    from batcher.cli.preflight import check_outputs
    from batcher.errors import UsageError

    real = tmp_path / "real"
    real.mkdir()
    (real / "x.db").write_bytes(b"")
    link = tmp_path / "s.db"
    link.symlink_to(real / "x.db")
    with pytest.raises(UsageError, match="part of it"):
        check_outputs(None, [("--html", str(real / "x.db-wal"))], [("--state", str(link))])
    budget = tmp_path / "budget.db"
    with pytest.raises(UsageError, match="part of it"):  # the report listed before the budget file
        check_outputs(None, [("--report", f"{budget}-wal"), ("--budget-file", str(budget))])


def test_export_refuses_an_out_file_that_is_not_an_export_and_leaves_it_untouched(tmp_path):
    state = tmp_path / "job.state.db"
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE rows (row INTEGER)")
    src = tmp_path / "mine.csv"
    src.write_text(f"meeting_id,title\n{MEETING},x\n", encoding="utf-8")
    for victim in (state, src):
        before = victim.read_bytes()
        done = cli(
            "export",
            "--account-id",
            "acct-1",
            "--app-id",
            "app",
            "--out",
            str(victim),
            "--base-url",
            "http://127.0.0.1:9",
        )
        assert done.returncode == 2 and "not a meeting exported by batcher" in done.stderr, done.stderr
        assert victim.read_bytes() == before
