"""Findings of the cold review fixed on the engine side: each test failed before its fix."""

from __future__ import annotations

import subprocess
import sys

import pytest

from batcher.errors import InputChangedError
from batcher.run import engine, intake
from batcher.run.engine import run_job

from .conftest import TOKEN, config, read_jsonl, write_jsonl


async def test_no_row_starts_after_the_input_change_is_seen_and_the_report_is_still_written(
    server, tmp_path, monkeypatch
):
    ids = server.add(20, title="orig")
    server.api.latency_s = 0.05
    rows = [{"meeting_id": m, "title": "new"} for m in ids]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    seen = {"changed": False, "started_after": 0}
    load_rows, rows_to_send, handle = intake.Intake.load_rows, intake.Intake.rows_to_send, engine.Job.handle

    def load_then_edit(self, **kw):  # the file changes under the job after its pre-flight
        n = load_rows(self, **kw)
        write_jsonl(src, [*rows[:12], {**rows[12], "title": "EDITED"}, *rows[13:]])
        return n

    def noticing(self, source):
        try:
            yield from rows_to_send(self, source)
        except InputChangedError:
            seen["changed"] = True
            raise

    async def counting(self, item):
        seen["started_after"] += seen["changed"]
        return await handle(self, item)

    monkeypatch.setattr(intake.Intake, "load_rows", load_then_edit)
    monkeypatch.setattr(intake.Intake, "rows_to_send", noticing)
    monkeypatch.setattr(engine.Job, "handle", counting)
    with pytest.raises(InputChangedError, match="row 13"):
        await run_job(config(tmp_path, server, src, summary_path=str(tmp_path / "summary.json")))
    assert seen == {"changed": True, "started_after": 0}
    assert server.doc(ids[12])["title"] == "orig"
    assert (tmp_path / "failures.jsonl").exists(), "the failure report is written even when the job stops on an edit"
    assert (tmp_path / "summary.json").read_bytes().startswith(b"{")


async def test_a_patch_setting_status_that_landed_before_a_drop_is_confirmed_by_get(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "status": "INACTIVE"}])
    server.api.faults.extend(
        [
            {"kind": "apply_then_drop", "method": "PATCH", "times": 1},
            {"kind": "status", "status": 502, "method": "PATCH", "times": 5},
        ]
    )
    result = await run_job(config(tmp_path, server, src, mode="patch", app_id="app1", max_attempts=3))
    assert server.api.meta[("acct-1", mid)]["status"] == "INACTIVE"
    assert result.exit_code == 0, "GET shows the status the PATCH set: the row succeeded"
    assert read_jsonl(tmp_path / "failures.jsonl") == []


def test_a_budget_file_naming_another_output_is_refused_before_anything_is_opened(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "title": "x"}])
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "run", str(src), "--account-id", "a", "--base-url", "http://127.0.0.1:9",
         "--budget-file", str(out), "--summary-json", str(out)],
        capture_output=True, text=True, env={"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--budget-file" in proc.stderr and not out.exists()
    assert not (tmp_path / "in.jsonl.state.db").exists(), "no half-made state"


def test_plan_says_which_of_runs_options_have_no_effect():
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "plan", "inputs/french-transcription.csv", "--account-id", "a",
         "--base-url", "http://127.0.0.1:9", "--report", "/dev/null", "--max-failures", "3", "--out", "/dev/null",
         "--rate", "none", "--max-attempts", "1"],
        capture_output=True, text=True, env={"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert "--report, --max-failures have no effect" in proc.stderr, proc.stderr


@pytest.mark.parametrize(("mode", "code"), [("merge", 0), ("replace", 2)])
def test_validate_judges_a_key_rotation_as_run_does(tmp_path, mode, code):
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


async def test_replace_mode_will_not_erase_stored_credentials_without_allow_credential_reset(server, tmp_path):
    stored = {"type": "aws", "bucket": "b", "access_key": "OLDKEY", "secret": "OLDSECRET"}
    [mid] = server.add(recording_config={"storage_config": stored})
    row = {"meeting_id": mid, "recording_config": {"storage_config": {"type": "aws", "bucket": "b"}}}
    src = write_jsonl(tmp_path / "in.jsonl", [row])
    result = await run_job(config(tmp_path, server, src, mode="replace"))
    assert result.exit_code == 1 and server.api.requests["PUT"] == 0
    assert server.doc(mid)["recording_config"]["storage_config"]["secret"] == "OLDSECRET"
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "credential_guard"


async def test_credentials_given_with_set_never_reach_the_state_status_or_resume_line(server, tmp_path):
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


def test_an_excel_row_of_empty_cells_is_skipped_like_a_blank_line(tmp_path):
    src = tmp_path / "x.csv"
    src.write_bytes(
        b"\xef\xbb\xbfmeeting_id,title,record_on_start,,\r\n0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b,Excel,TRUE,,\r\n,,,,\r\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "validate", str(src)], capture_output=True, text=True, env={"PATH": "/bin"}
    )
    assert proc.returncode == 0 and "1 rows: 1 valid, 0 invalid" in proc.stderr, proc.stderr


def test_a_hard_link_to_the_input_is_the_input_and_a_base_url_with_a_password_is_refused_unechoed(tmp_path):
    src = tmp_path / "o.csv"
    src.write_text("meeting_id,title\n0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b,C\n")
    (tmp_path / "hard.csv").hardlink_to(src)
    env = {"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/bin", "XDG_CACHE_HOME": str(tmp_path)}
    base = [sys.executable, "-m", "batcher", "run", str(src), "--account-id", "a", "--rate", "none"]
    linked = subprocess.run([*base, "--base-url", "http://127.0.0.1:9", "--report", str(tmp_path / "hard.csv")],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert linked.returncode == 2 and "same file as the input" in linked.stderr, linked.stderr
    assert src.read_text().startswith("meeting_id,title")
    secret = subprocess.run([*base, "--base-url", "http://user:pw-CANARY@127.0.0.1:9"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert secret.returncode == 2 and "user name or password" in secret.stderr, secret.stderr
    assert "CANARY" not in secret.stderr and not (tmp_path / "o.csv.state.db").exists()


async def test_with_no_rate_of_its_own_batcher_starts_nothing_the_servers_headers_have_no_budget_for(server, tmp_path):
    server.api.rate_limit = (10, 1.0)  # the fake then answers with Ratelimit headers, and 429 beyond
    ids = server.add(15)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "h"} for m in ids])
    result = await run_job(config(tmp_path, server, src, rate=None, concurrency=8))
    assert result.exit_code == 0
    assert server.api.statuses.get(429, 0) == 0, "every start after the first answer kept within the server's r"


@pytest.mark.parametrize("password", ["p@ss-CANARY", "se/cret-CANARY", "pw-CANARY"])
def test_a_base_url_password_is_never_echoed_whatever_it_holds(tmp_path, password):
    src = tmp_path / "o.csv"
    src.write_text("meeting_id,title\n0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b,C\n")
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "run", str(src), "--account-id", "a", "--rate", "none",
         "--base-url", f"https://user:{password}@api.example.com/client/v4"],
        capture_output=True, text=True, env={"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/bin", "XDG_CACHE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "CANARY" not in proc.stderr and "user name or password" in proc.stderr, proc.stderr


async def test_a_write_that_timed_out_stays_unknown_though_later_attempts_are_answered_and_get_shows_nothing(
    server, tmp_path
):
    from .fake_time import VirtualTime

    [mid] = server.add(title="orig")
    server.api.faults.extend(
        [
            {"kind": "hang", "seconds": 1.5, "method": "PUT", "times": 1},  # may still land at the origin later
            {"status": 503, "method": "PUT", "times": 5},  # quick answers from the edge prove nothing about it
        ]
    )
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    cfg = config(tmp_path, server, src, timeout_s=0.3, max_attempts=3)
    result = await run_job(cfg, control=VirtualTime().control())
    assert result.exit_code == 1
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "unknown_outcome", entry


def test_a_budget_file_being_created_by_another_process_is_waited_for_not_an_error(tmp_path):
    """Two batcher processes starting together both set the file up (CI run 15 of this round: exit 2)."""
    import sqlite3
    import threading
    import time

    from batcher.http.budget import Budget

    path = tmp_path / "budget.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of its set-up
    holder.execute("CREATE TABLE IF NOT EXISTS other_setup (x)")
    opened: list[object] = []
    opener = threading.Thread(target=lambda: opened.append(Budget(path)))
    opener.start()
    time.sleep(0.2)  # the scenario: the lock is held ten times longer than a grant may wait
    holder.execute("COMMIT")
    opener.join(10)
    holder.close()
    assert len(opened) == 1 and isinstance(opened[0], Budget)
