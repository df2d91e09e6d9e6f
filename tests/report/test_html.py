"""The HTML report: its figures against the state, secrets, killed runs, rollback, the command line."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import sys
import uuid
from pathlib import Path

from batcher.commands.rollback import rollback_job
from batcher.commands.status import read_status
from batcher.core.timings import Bucket
from batcher.report.data import read_report
from batcher.report.html import write_html_report
from batcher.run.engine import run_job

from ..conftest import (
    ACCOUNT,
    CANARIES,
    ENV,
    assert_no_canary,
    cli,
    config,
    kill_at,
    run_cli,
    start_cli,
    when_requests_reach,
    write_jsonl,
)
from ..fake_time import VirtualTime

FR = {"ai_config": {"transcription": {"language": "fr"}}}


async def busy_job(server, tmp_path, **overrides):
    """A job with something to show: two accounts, missing meetings, a 500 (retried), a 429 with
    Retry-After (every worker pauses: on a virtual clock, so the test does not wait)."""
    ids = server.add(12) + server.add(5, account="acct-2")
    missing = [str(uuid.uuid4()) for _ in range(3)]
    server.api.faults.append({"method": "GET", "meeting": ids[2], "status": 500})
    server.api.faults.append({"method": "PUT", "meeting": ids[4], "status": 429, "retry_after": 30})
    rows = [{"meeting_id": m, **FR} for m in ids[:12] + missing]
    rows += [{"meeting_id": m, "account_id": "acct-2", **FR} for m in ids[12:]]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = config(tmp_path, server, src, rate="50/1", **overrides)
    result = await run_job(cfg, control=VirtualTime().control())
    return cfg, result


def sql(state: str, query: str) -> list[tuple]:
    with sqlite3.connect(state) as db:
        return db.execute(query).fetchall()


async def test_the_reports_figures_are_the_states(server, tmp_path):
    cfg, result = await busy_job(server, tmp_path)
    assert result.exit_code == 1
    data = read_report(cfg.state_file)
    timeline = data.timelines["run"]
    totals = timeline.totals
    # every request the job made is in the buckets, and the display intervals lose none
    assert totals.requests == data.stats["requests"] == result.summary["requests"] == sum(server.api.requests.values())
    assert totals.retries == data.stats["retries"] == 2
    assert sum(i.bucket.requests for i in timeline.intervals if i) == totals.requests
    assert totals.answers["429"] == 1 and totals.answers["500"] == 1 and totals.answers["404"] == 3
    assert totals.pauses == 1 and len(timeline.pauses) == 1 and timeline.pauses[0][1] - timeline.pauses[0][0] >= 29
    # row outcomes as they happened, and as the state ends
    assert totals.rows == {"succeeded": 17, "failed:not_found": 3}
    assert dict(sql(cfg.state_file, "SELECT outcome, COUNT(*) FROM rows GROUP BY 1")) == {"succeeded": 17, "failed": 3}
    assert data.outcomes.by_kind == [("succeeded", 17), ("failed: not_found", 3)]
    [group] = data.outcomes.failures
    assert (group.kind, group.count) == ("not_found", 3)
    assert [e[0] for e in group.examples] == [13, 14, 15] and all(e[3] == 404 for e in group.examples)
    # one message, not one per meeting: the row's own id is a placeholder when messages are grouped
    assert group.messages == [("Meeting <meeting> not found", 3)]
    accounts = {a["account_id"]: (a["total"], a["succeeded"], a["failed"]) for a in data.outcomes.accounts}
    assert accounts == {ACCOUNT: (15, 12, 3), "acct-2": (5, 5, 0)}
    [run] = data.runs
    assert (run.kind, run.exit_code) == ("run", 1) and run.options["rate"] == "50/1"

    html = (tmp_path / "r.html").as_posix()
    write_html_report(cfg.state_file, html)
    with open(html, encoding="utf-8") as fh:
        text = fh.read()
    assert text.count("<svg") == 4  # throughput, retries, latency, outcomes
    for figure in ("Throughput", "Retries and 429 answers", "Request latency", "Outcomes by kind", "not_found"):
        assert figure in text
    assert re.search(r"<td>acct-2</td><td>-</td><td class=n>5</td><td class=n>5</td>", text)
    assert "<script" not in text and 'http-equiv="Content-Security-Policy"' in text
    assert not re.search(r"(src|href)=\"(https?:)?//", text)  # nothing to fetch


async def test_no_secret_reaches_the_report(server, tmp_path):
    s3 = {"type": "aws", "bucket": "b", "access_key": "AKIA-CANARY-ACCESS", "secret": "CANARY-SECRET-VALUE"}
    sftp = {"type": "sftp", "host": "h", "password": "CANARY-SFTP-PASSWORD", "private_key": "CANARY-PRIVATE-KEY"}
    fine, rejected, echoed, set_by_flag = server.add(4)
    server.api.faults.append(
        {"status": 400, "meeting": rejected, "method": "PUT", "message": "bad password CANARY-SFTP-PASSWORD"}
    )
    server.api.faults.append({"status": 400, "meeting": echoed, "method": "PUT", "message": f"token {CANARIES[0]}?"})
    rows = [
        {"meeting_id": fine, "recording_config": {"storage_config": s3}},
        {"meeting_id": rejected, "recording_config": {"storage_config": sftp}},
        {"meeting_id": echoed, "recording_config": {"storage_config": s3}},
    ]
    rows.append({"meeting_id": set_by_flag, "recording_config": {"storage_config": {**s3, "secret": None}}})
    rows[-1]["recording_config"]["storage_config"].pop("secret")
    set_values = (("recording_config.storage_config.password", "CANARY-SFTP-PASSWORD"),)
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", rows), set_values=set_values)
    result = await run_job(cfg)
    assert result.summary["failed"] == 3, result.message  # two echoed errors, one credential_guard
    html = tmp_path / "r.html"
    write_html_report(cfg.state_file, str(html))
    text = html.read_text(encoding="utf-8")
    assert "bad password ***" in text  # the message is there, its secret is not
    assert text.count("recording_config.storage_config.password=***") == 2  # --set: the job's, and the run's
    assert_no_canary(text, "the HTML report")


async def test_a_killed_run_shows_as_killed_and_the_resumed_run_with_its_exit_code(server, tmp_path):
    ids = server.add(150)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    state = str(tmp_path / "job.db")
    args = ("run", str(src), "--state", state, "--rate", "none", "--concurrency", "4")
    assert await kill_at(server, args, (60,)) == 1
    code, _, err = await run_cli(*args, "--html", str(tmp_path / "r.html"), base_url=server.base_url)
    assert code == 0, err
    assert f"HTML report: {tmp_path / 'r.html'}" in err
    data = read_report(state)
    assert [(r.kind, r.ended is None, r.exit_code) for r in data.runs] == [("run", True, None), ("run", False, 0)]
    # a kill loses at most the requests of its last group commit and those in flight
    assert data.stats["requests"] - 2 * 4 <= data.timelines["run"].totals.requests <= data.stats["requests"]
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<td class="killed">killed / unknown</td>' in text and "<td>exit 0</td>" in text
    assert "run #1" in text and "run #2" in text  # the runs marked on the throughput chart


async def test_a_rollback_gets_the_same_report(server, tmp_path):
    cfg, _ = await busy_job(server, tmp_path)
    result = await rollback_job(cfg, control=VirtualTime().control())
    assert result.exit_code == 0
    data = read_report(cfg.state_file)
    assert [r.kind for r in data.runs] == ["run", "rollback"] and data.runs[1].exit_code == 0
    back = data.timelines["rollback"].totals
    assert back.requests == data.rollback_stats["requests"] == 2 * 17  # a GET and a PUT per meeting
    assert back.rows == {"succeeded": 17}
    assert data.rollback is not None and data.rollback.counts["succeeded"] == 17
    assert {a["account_id"]: a["succeeded"] for a in data.rollback.accounts} == {ACCOUNT: 12, "acct-2": 5}
    assert data.timelines["run"].totals.requests == data.stats["requests"]  # the job's own, apart
    html = tmp_path / "r.html"
    write_html_report(cfg.state_file, str(html))
    text = html.read_text(encoding="utf-8")
    assert "<h2>Rollback</h2>" in text and "Throughput: meetings/s and requests/s" in text
    assert text.count("<svg") == 8


def test_bucket_json_round_trips():
    bucket = Bucket()
    bucket.methods.update({"GET": 3, "PUT": 2})
    bucket.latency.update({40: 2, 47: 3})
    bucket.rows.update({"failed:not_found": 1})
    bucket.pauses, bucket.paused_s, bucket.retries = 1, 2.5, 4
    assert Bucket.from_json(bucket.to_json()) == bucket


# -- the command line ------------------------------------------------------------------------


async def test_report_command_writes_the_file_and_refuses_to_clobber_the_state(server, tmp_path):
    cfg, _ = await busy_job(server, tmp_path)
    before = Path(cfg.state_file).read_bytes()
    done = cli("report", "--state", cfg.state_file, "--html", cfg.state_file)
    assert done.returncode == 2 and "is the same file as --state" in done.stderr
    assert Path(cfg.state_file).read_bytes() == before
    out = tmp_path / "r.html"
    done = cli("report", "--state", cfg.state_file, "--html", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


async def test_run_refuses_an_html_output_that_is_its_input_before_sending(server, tmp_path):
    ids = server.add(2)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    before = src.read_bytes()
    code, _, err = await run_cli("run", str(src), "--html", str(src), base_url=server.base_url)
    assert code == 2 and "--html" in err and "the input" in err
    assert src.read_bytes() == before and sum(server.api.requests.values()) == 0


async def test_run_without_html_never_loads_the_chart_library(server, tmp_path):
    ids = server.add(2)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    probe = (
        "import sys; from batcher.cli.main import main; "
        f"code = main(['run', {str(src)!r}, '--base-url', {server.base_url!r}, '-q']); "
        "print(code, 'vl_convert' in sys.modules)"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", probe, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    assert out.decode().split() == ["0", "False"], err.decode()


async def test_an_interrupted_run_still_writes_its_report_with_exit_130_and_the_skipped_rows(server, tmp_path):
    ids = server.add(40)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    html = tmp_path / "r.html"
    reached = when_requests_reach(server, 4)
    proc = await start_cli(
        "run", str(src), "--rate", "2/1", "--concurrency", "2", "--html", str(html), base_url=server.base_url
    )
    await reached.wait()
    proc.send_signal(signal.SIGINT)
    _, err = await proc.communicate()
    assert proc.returncode == 130, err.decode()
    data = read_report(str(src) + ".state.db")
    [run] = data.runs
    assert run.exit_code == 130 and run.ended is not None
    skipped = data.outcomes.counts["skipped"]
    assert skipped > 0 and data.timelines["run"].totals.rows["skipped"] == skipped
    text = html.read_text(encoding="utf-8")
    assert "<td>exit 130</td>" in text and ">skipped<" in text


async def test_a_report_of_a_running_job_says_running(server, tmp_path):
    ids = server.add(10)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    reached = when_requests_reach(server, 1)
    proc = await start_cli("run", str(src), "--rate", "1/60", base_url=server.base_url)
    try:
        await reached.wait()
        html = tmp_path / "r.html"
        done = await asyncio.to_thread(cli, "report", "--state", str(src) + ".state.db", "--html", str(html))
        assert done.returncode == 0, done.stderr
        assert "<td>running</td>" in html.read_text(encoding="utf-8")
    finally:
        proc.send_signal(signal.SIGTERM)
        await proc.communicate()


def execute(state: str, query: str, *args: object) -> list[tuple]:
    with sqlite3.connect(state) as db:
        return db.execute(query, *args).fetchall()


def cards(text: str) -> dict[str, str]:
    return {name: value for value, name in re.findall(r"<b>([^<]*)</b><span>([^<]*)</span>", text)}


async def test_pending_rows_are_shown_as_pending_not_skipped_as_status_json_counts_them(server, tmp_path):
    """Guards the report's cards and per-account table: pending rows count as pending, as status counts them."""
    cfg, _ = await busy_job(server, tmp_path)
    # as a killed or running job leaves them: 4 rows not done yet, 2 skipped
    execute(cfg.state_file, "UPDATE rows SET outcome = 'pending' WHERE row IN (1, 2, 3, 16)")
    execute(cfg.state_file, "UPDATE rows SET outcome = 'skipped' WHERE row IN (4, 5)")
    status = read_status(cfg.state_file)
    assert (status["pending"], status["skipped"]) == (4, 2)
    html = tmp_path / "r.html"
    write_html_report(cfg.state_file, str(html))
    text = html.read_text(encoding="utf-8")
    shown = cards(text)
    for key in ("succeeded", "unchanged", "failed", "skipped", "pending"):
        assert shown[key] == f"{status[key]:,}", key
    assert shown["rows"] == f"{status['total']:,}"
    # the per-account table: a pending column, its sums the state's
    header = re.search(r"<h3>Per account</h3><table><thead><tr>(.*?)</tr>", text).group(1)
    assert re.findall(r"<th>([^<]*)</th>", header)[-2:] == ["skipped", "pending"]
    body = re.search(r"<h3>Per account</h3><table>.*?<tbody>(.*?)</tbody>", text).group(1)
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", body)]
    assert sum(int(c[6]) for c in cells) == 2 and sum(int(c[7]) for c in cells) == 4
    assert ">pending<" in text  # the outcome chart's own bar


def test_report_of_another_programs_sqlite_file_says_it_is_not_a_batcher_state(tmp_path):
    """Guards the report command: another program's SQLite file is named as not a batcher state; no report is written."""
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
    done = cli("report", "--state", str(other), "--html", str(tmp_path / "r.html"))
    assert done.returncode == 2
    assert "not a batcher state file" in done.stderr and "holds no job yet" not in done.stderr
    assert not (tmp_path / "r.html").exists()


def test_the_runs_options_column_wraps_inside_the_page():
    """Guards the report's style: the runs table's options column wraps inside the page."""
    from batcher.report.html import STYLE

    assert "white-space: nowrap; display: inline-block" not in STYLE  # an option could not break
    assert re.search(r"td:last-child \{[^}]*overflow-wrap: anywhere", STYLE)
