"""The CLI as users and scripts see it: exit codes, files, kill -9, signals, the lock.

The CLI runs as a real subprocess against the fake API served by the test's
own event loop; kills and signals are driven by the server's request counter,
never by sleeping a guessed interval.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys

import pytest

from batcher.report.console import Console
from batcher.run.engine import run_job

from ..conftest import (
    ENV,
    TOKEN,
    cli,
    config,
    kill_at,
    outcomes,
    read_jsonl,
    run_cli,
    start_cli,
    when_requests_reach,
    write_csv,
    write_jsonl,
)
from ..fake_time import VirtualTime

# -- offline commands --------------------------------------------------------


def test_validate_exit_codes_and_messages(tmp_path):
    good = write_csv(tmp_path / "good.csv", ["meeting_id", "title"], [["0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "x"]])
    bad = write_csv(
        tmp_path / "bad.csv",
        ["meeting_id", "persist_chat"],
        [["0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "maybe"], ["x", "true"]],
    )
    env = {k: v for k, v in ENV.items() if k not in ("CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID")}
    assert cli("validate", str(good), env=env).returncode == 0
    result = cli("validate", str(bad), env=env)
    assert result.returncode == 2
    assert 'row 1: persist_chat: must be true or false, got "maybe"' in result.stderr
    assert "row 2: meeting_id:" in result.stderr


def test_unknown_column_is_a_usage_error_naming_the_fix(tmp_path):
    src = write_csv(
        tmp_path / "in.csv",
        ["meeting_id", "recording_config.max_second"],
        [["0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "60"]],
    )
    result = cli("validate", str(src))
    assert result.returncode == 2 and "did you mean 'recording_config.max_seconds'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_token_is_exit_2(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"}])
    env = {k: v for k, v in ENV.items() if k != "CLOUDFLARE_API_TOKEN"}
    result = cli("run", str(src), "--base-url", "http://127.0.0.1:9", env=env)
    assert result.returncode == 2 and "CLOUDFLARE_API_TOKEN" in result.stderr


@pytest.mark.parametrize("command", ["run", "plan", "validate", "rollback", "fake-api"])
def test_every_command_has_help_with_examples(command):
    result = cli(command, "--help")
    assert result.returncode == 0 and "usage: batcher" in result.stdout


def test_version():
    assert cli("--version").stdout.startswith("batcher ")


# -- against the fake API ----------------------------------------------------


async def test_run_writes_report_summary_and_state_by_default(server, tmp_path):
    ids = server.add(3)
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "ai_config.transcription.language"], [[m, "fr"] for m in ids])
    code, _, err = await run_cli(
        "run", str(src), "--rate", "none", "--summary-json", str(tmp_path / "s.json"), base_url=server.base_url
    )
    assert code == 0, err
    assert (tmp_path / "in.csv.state.db").exists() and (tmp_path / "in.csv.failures.jsonl").read_text() == ""
    assert "3 succeeded" in err
    assert all(server.doc(m)["ai_config"]["transcription"]["language"] == "fr" for m in ids)


async def test_run_with_invalid_rows_sends_nothing_and_exits_2(server, tmp_path):
    [mid] = server.add()
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "recording_config.max_seconds"], [[mid, "3600"], [mid, "10"]])
    code, _, err = await run_cli("run", str(src), base_url=server.base_url)
    assert (
        code == 2
        and "row 2: recording_config.max_seconds" in err
        and "row 2: meeting_id: duplicate of row 1" not in err
    )
    assert sum(server.api.requests.values()) == 0


async def test_bad_token_stops_with_exit_3(server, tmp_path):
    server.api.token = "other"
    ids = server.add(5)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    code, _, err = await run_cli("run", str(src), "--concurrency", "1", base_url=server.base_url)
    assert code == 3 and "401" in err and "resume with:" in err
    assert TOKEN not in err


@pytest.mark.parametrize("mode", ["replace", "merge"])
@pytest.mark.parametrize("concurrency", [8, 64])
async def test_kill_9_mid_stream_then_resume_finishes_with_bounded_duplicates(server, tmp_path, concurrency, mode):
    ids = server.add(600)
    server.api.latency_s = 0.002
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"meeting_id": m, "title": "migrated", "persist_chat": True} for m in ids]
    )
    args = ("run", str(src), "--mode", mode, "--rate", "none", "--concurrency", str(concurrency), "-q")
    kills = await kill_at(server, args, (100, 250, 400) if mode == "replace" else (200, 500, 800))
    code, _, err = await run_cli(*args, base_url=server.base_url)
    assert code == 0, err
    assert kills >= 2
    assert all(server.doc(m)["title"] == "migrated" for m in ids)
    puts = [server.api.puts[m] for m in ids]
    assert min(puts) == 1
    duplicates = sum(puts) - len(ids)
    print(
        f"{mode}, concurrency {concurrency}: {kills} kills, {duplicates} meetings written twice (bound {2 * concurrency * kills})"
    )
    assert duplicates <= 2 * concurrency * kills
    if mode == "merge":
        assert duplicates == 0, "a re-sent row finds its change already made: unchanged, no second PUT"
    counts = outcomes(tmp_path / "in.jsonl.state.db")
    assert sum(counts.values()) == 600 and set(counts) <= {"succeeded", "unchanged"}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_signal_stops_cleanly_with_130_and_resume_line(server, tmp_path, sig):
    ids = server.add(40)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    reached = when_requests_reach(server, 4)
    proc = await start_cli("run", str(src), "--rate", "2/1", "--concurrency", "2", base_url=server.base_url)
    await reached.wait()
    proc.send_signal(sig)
    _out, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 130, text
    assert "resume with: batcher run" in text
    counts = outcomes(tmp_path / "in.jsonl.state.db")
    assert counts.get("skipped", 0) > 0 and sum(counts.values()) == 40
    code, _, err2 = await run_cli("run", str(src), "--rate", "none", base_url=server.base_url)
    assert code == 0, err2
    assert all(server.api.puts[m] == 1 for m in ids)


async def test_second_process_on_the_same_state_is_refused(server, tmp_path):
    ids = server.add(10)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    reached = when_requests_reach(server, 1)
    first = await start_cli("run", str(src), "--rate", "1/60", base_url=server.base_url)
    await reached.wait()
    code, _, err = await run_cli("run", str(src), base_url=server.base_url)
    assert code == 2 and "in use by another batcher process" in err
    first.send_signal(signal.SIGTERM)
    await first.communicate()
    assert first.returncode == 130


async def test_stdin_needs_state_and_streams(server, tmp_path):
    [mid] = server.add()
    result = cli("run", "-", "--base-url", server.base_url)
    assert result.returncode == 2 and "--state" in result.stderr
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", "run", "-", "--state", str(tmp_path / "s.db"), "--base-url", server.base_url,
        "--results", "-", env=ENV, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(f'{{"meeting_id": "{mid}", "title": "piped"}}\n'.encode())
    assert proc.returncode == 0, err
    assert '"outcome":"succeeded"' in out.decode()
    assert server.doc(mid)["title"] == "piped"
    assert read_jsonl(tmp_path / "s.db.failures.jsonl") == []


# -- what a person or a pipeline sees ------------------------------------------


def test_log_format_json_makes_every_stderr_line_a_json_event(tmp_path):
    src = write_csv(tmp_path / "bad.csv", ["meeting_id", "persist_chat"], [["x", "maybe"]])
    result = cli("validate", str(src), "--log-format", "json")
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert result.returncode == 2
    assert {(e["event"], e.get("row"), e.get("field")) for e in events[:-1]} == {
        ("invalid_row", 1, "persist_chat"),
        ("invalid_row", 1, "meeting_id"),
    }
    assert events[-1]["event"] == "summary" and events[-1]["invalid"] == 1


async def test_run_json_log_ends_with_a_summary_event(server, tmp_path):
    ids = server.add(2)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    code, _, err = await run_cli("run", str(src), "--log-format", "json", base_url=server.base_url)
    summary = json.loads(err.splitlines()[-1])
    assert code == 0 and summary["event"] == "summary" and summary["succeeded"] == 2 and summary["total"] == 2


async def test_plain_progress_lines_when_stderr_is_not_a_terminal(server, tmp_path):
    ids = server.add(6)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    stream = io.StringIO()
    console = Console(stream, plain_every_s=0)  # a line on every tick (the interval is injected, not read from env)
    result = await run_job(config(tmp_path, server, src), progress=console.progress(), console=console)
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("progress: ")]
    assert result.exit_code == 0 and lines
    assert lines[-1].startswith("progress: 6/6 rows | 100% |") and "0 failed" in lines[-1]


async def test_a_terminal_gets_a_live_bar(server, tmp_path):
    ids = server.add(5)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    master, slave = os.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", "run", str(src), "--base-url", server.base_url, "--rate", "none",
        env=ENV, stdout=asyncio.subprocess.DEVNULL, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    await proc.wait()
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    text = screen.decode(errors="replace")
    assert proc.returncode == 0
    assert "5/5" in text and "rows/s" in text and "0 failed" in text


async def test_verbose_logs_each_retry(server, tmp_path):
    [mid] = server.add()
    server.api.faults.append({"kind": "status", "status": 503, "method": "PUT"})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "x"}])
    code, _, err = await run_cli("run", str(src), "-v", base_url=server.base_url)
    assert code == 0 and "PUT" in err and "HTTP 503; attempt 2 in" in err


def test_errors_are_one_sentence_and_tracebacks_need_verbose(tmp_path):
    missing = str(tmp_path / "nope.csv")
    quiet = cli("validate", missing)
    assert (
        quiet.returncode == 2
        and quiet.stderr.startswith("batcher: error: cannot open")
        and "Traceback" not in quiet.stderr
    )
    loud = cli("validate", missing, "-v")
    assert "Traceback" in loud.stderr


class _Watched(io.StringIO):
    """stderr for an in-process job: sets ``seen`` once ``text`` was written."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def write(self, s: str) -> int:
        if self.text in s:
            self.seen.set()
        return super().write(s)


async def test_a_retry_after_pause_is_shown_with_its_end_time(server, tmp_path):
    ids = server.add(3)
    server.api.faults.append({"kind": "status", "status": 429, "retry_after": 300, "method": "PUT"})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    stream = _Watched("paused for Retry-After until")
    console = Console(stream, plain_every_s=0)
    t = VirtualTime(hold_from_s=100)  # the 300 s pause lasts until the progress line showed it
    job = asyncio.ensure_future(
        run_job(
            config(tmp_path, server, src, concurrency=1),
            control=t.control(),
            progress=console.progress(),
            console=console,
        )
    )
    await stream.seen.wait()
    t.release.set()
    result = await job
    assert result.exit_code == 0, result.message
    assert t.now >= 300 and server.api.statuses[429] == 1


async def test_a_second_sigint_exits_at_once_and_the_job_still_resumes(server, tmp_path):
    ids = server.add(30)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    reached = when_requests_reach(server, 1)
    proc = await start_cli("run", str(src), "--rate", "1/60", "--concurrency", "4", base_url=server.base_url)
    await reached.wait()
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _out, err = await proc.communicate()
    assert proc.returncode == 130 and "resume with: batcher run" in err.decode()
    code, _, err2 = await run_cli("run", str(src), "--rate", "none", base_url=server.base_url)
    assert code == 0, err2
    assert all(server.api.puts[m] == 1 for m in ids)


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_csv_with_no_account_anywhere_is_a_usage_error(tmp_path, command):
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "title"], [["0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "x"]])
    env = {k: v for k, v in ENV.items() if k != "CLOUDFLARE_ACCOUNT_ID"}
    result = cli(command, str(src), "--base-url", "http://127.0.0.1:9", env=env)
    assert result.returncode == 2 and "no account" in result.stderr


MEETING = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"


def test_an_abbreviated_option_is_refused_so_no_credential_slips_past_the_masking(tmp_path):
    """Guards the argument parser: no abbreviations, so ``--se`` cannot carry a credential past the masking of ``--set``."""
    src = tmp_path / "rows.csv"
    src.write_text(f"meeting_id\n{MEETING}\n", encoding="utf-8")
    done = cli("validate", str(src), "--se", "recording_config.storage_config.secret=REALSECRET99")
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr


def test_plan_says_which_of_runs_options_have_no_effect():
    """Guards plan's command line: the options only run uses are named as having no effect."""
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "plan", "inputs/french-transcription.csv", "--account-id", "a",
         "--base-url", "http://127.0.0.1:9", "--report", "/dev/null", "--max-failures", "3", "--out", "/dev/null",
         "--rate", "none", "--max-attempts", "1"],
        capture_output=True, text=True, env={"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert "--report, --max-failures have no effect" in proc.stderr, proc.stderr
