"""Review findings on the HTML report: each test fails on the code before its fix."""

from __future__ import annotations

import re
import sqlite3
from collections import Counter

from batcher.commands.rollback import rollback_job
from batcher.commands.status import read_status
from batcher.core.timings import Bucket, Timeline
from batcher.report import charts
from batcher.report.data import TOP_ACCOUNTS, TimelineView, build_timeline, read_report, run_status
from batcher.report.html import write_html_report
from batcher.state.runs import RunRecord
from batcher.state.store import Store
from tests.report.test_html import busy_job

from .conftest import ACCOUNT, cli
from .fake_time import T0, FakeClock, VirtualTime


def execute(state: str, query: str, *args: object) -> list[tuple]:
    with sqlite3.connect(state) as db:
        return db.execute(query, *args).fetchall()


async def test_a_rollback_killed_mid_restore_reports_its_restoring_meeting_as_pending(server, tmp_path):
    cfg, _ = await busy_job(server, tmp_path)
    assert (await rollback_job(cfg, control=VirtualTime().control())).exit_code == 0
    # as a rollback killed after sending a restoring PUT leaves it (rollback_state: 'restoring')
    [(meeting,)] = execute(cfg.state_file, "SELECT meeting_id FROM rollback WHERE account_id = 'acct-2' LIMIT 1")
    execute(cfg.state_file, "UPDATE rollback SET outcome = 'restoring' WHERE meeting_id = ?", (meeting,))
    data = read_report(cfg.state_file)
    assert data.rollback is not None
    assert data.rollback.counts["pending"] == 1 and data.rollback.counts["succeeded"] == 16
    accounts = {a["account_id"]: (a["total"], a["succeeded"], a["pending"]) for a in data.rollback.accounts}
    assert accounts == {ACCOUNT: (12, 12, 0), "acct-2": (5, 4, 1)}
    write_html_report(cfg.state_file, str(tmp_path / "r.html"))


def test_a_year_long_retry_after_adds_one_bucket_not_one_per_future_bucket():
    clock = FakeClock(T0 + 0.5)
    timeline = Timeline(clock)
    timeline.start(1)
    timeline.pause(31_536_000)  # a year: legal per the contract
    clock.now += 1
    timeline.pause(31_536_000)  # overlaps the first: one pause, 1 s longer
    rows = timeline.statements()
    assert len(rows) <= 2  # before: one bucket per future bucket (527,050 of them)
    spans = {args[1] - T0: Bucket.from_json(args[3]).spans for _, args in rows}
    assert spans == {0: [(T0 + 0.5, 31_536_000.0)], 1: [(T0 + 0.5 + 31_536_000, 1.0)]}


def test_the_report_spreads_a_pause_over_time_and_cuts_it_where_the_run_ended():
    run = RunRecord(1, "run", T0, T0 + 100, 0, 1, {})
    paused = Bucket(pauses=1, paused_s=31_536_000, spans=[(T0 + 10.5, 31_536_000)])
    extended = Bucket(paused_s=3, spans=[(T0 + 40.5, 3)])
    later = Bucket(pauses=1, paused_s=5, spans=[(T0 + 50, 5)])
    view = build_timeline([run], [(1, T0 + 10, 1, paused), (1, T0 + 20, 1, extended), (1, T0 + 50, 1, later)])
    assert view.pauses == [(T0 + 10.5, T0 + 100)]  # the run ended during it: it paused no longer
    short = Bucket(pauses=1, paused_s=30, spans=[(T0 + 10.5, 30)])
    view = build_timeline([run], [(1, T0 + 10, 1, short), (1, T0 + 40, 1, extended), (1, T0 + 50, 1, later)])
    assert view.pauses == [(T0 + 10.5, T0 + 43.5), (T0 + 50, T0 + 55)]


def cards(text: str) -> dict[str, str]:
    return {name: value for value, name in re.findall(r"<b>([^<]*)</b><span>([^<]*)</span>", text)}


async def test_pending_rows_are_shown_as_pending_not_skipped_as_status_json_counts_them(server, tmp_path):
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


async def test_a_killed_run_whose_pid_was_reused_is_not_running_a_locked_state_is(server, tmp_path):
    cfg, _ = await busy_job(server, tmp_path)
    # as kill -9 leaves it, and its pid now belongs to another live process (pid 1: always alive)
    execute(cfg.state_file, "UPDATE runs SET ended = NULL, exit_code = NULL, pid = 1")
    [run] = read_report(cfg.state_file).runs
    assert run_status(run, read_report(cfg.state_file).running_pids) == "killed / unknown"
    store = Store.open(cfg.state_file)  # a job holding the state's lock: it runs
    try:
        data = read_report(cfg.state_file)
        assert run_status(data.runs[0], data.running_pids) == "running"
    finally:
        store.close()
    data = read_report(cfg.state_file)
    assert run_status(data.runs[0], data.running_pids) == "killed / unknown"


def test_report_of_another_programs_sqlite_file_says_it_is_not_a_batcher_state(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
    done = cli("report", "--state", str(other), "--html", str(tmp_path / "r.html"))
    assert done.returncode == 2
    assert "not a batcher state file" in done.stderr and "holds no job yet" not in done.stderr
    assert not (tmp_path / "r.html").exists()


def word(i: int) -> str:
    """A distinct word of letters g-z only (no digit, no hex run): a message shape of its own."""
    out = ""
    while True:
        out += "ghijklmnopqrstuvwxyz"[i % 20]
        i //= 20
        if not i:
            return out


async def test_a_state_with_200k_failed_rows_reports_figures_that_add_up_with_bounded_shapes_and_accounts(
    server, tmp_path
):
    cfg, _ = await busy_job(server, tmp_path)
    n = 200_000
    with sqlite3.connect(cfg.state_file) as db:
        db.executemany(
            "INSERT INTO rows (row, account_id, meeting_id, outcome, error, status, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    1000 + i,
                    f"big-{i % 300}",
                    f"m-{i}",
                    "failed",
                    "bad_request" if i % 2 else "server_error",
                    400 if i % 2 else 503,
                    # every message distinct: numbers and request ids are shapes' placeholders, words not
                    f"field {word(i)} rejected" if i % 4 == 1 else f"upstream 5{i:05d} request {i * 7919:012x}",
                )
                for i in range(n)
            ),
        )
        counts = dict(db.execute("SELECT outcome, COUNT(*) FROM rows GROUP BY 1"))
        by_error = dict(db.execute("SELECT error, COUNT(*) FROM rows WHERE outcome = 'failed' GROUP BY 1"))
    data = read_report(cfg.state_file)
    assert {k: v for k, v in data.outcomes.counts.items() if v} == counts
    groups = {g.kind: g for g in data.outcomes.failures}
    assert {k: g.count for k, g in groups.items()} == by_error
    for group in groups.values():  # shown messages plus "other messages" are every failed row of the kind
        assert sum(c for _, c in group.messages) + group.other_messages == group.count
    # numbers and hex ids collapse into one shape
    assert groups["server_error"].messages[0] == ("upstream <n> request <n>", n // 2)
    assert groups["bad_request"].other_messages > 0  # 50,000 distinct words: most are "other messages"
    # the per-account table: the 50 largest accounts, then one row for the other 252; totals add up
    accounts = data.outcomes.accounts
    assert len(accounts) == TOP_ACCOUNTS + 1 and accounts[-1]["other_accounts"] == 302 - TOP_ACCOUNTS
    assert sum(a["total"] for a in accounts) == sum(counts.values())
    assert sum(a["failed"] for a in accounts) == counts["failed"]
    html = tmp_path / "r.html"
    write_html_report(cfg.state_file, str(html))
    text = html.read_text(encoding="utf-8")
    assert "<i>252 other accounts</i>" in text and "<i>other messages</i>" in text


def chart_runs(*rates: tuple[str, float | None], width_s: int = 1) -> TimelineView:
    runs = [
        RunRecord(i + 1, "run", T0 + 10 * i, T0 + 10 * i + 5, 0, 1, {"rate": r, "rate_per_s": p})
        for i, (r, p) in enumerate(rates)
    ]
    bucket = Bucket(methods=Counter({"GET": 3}))
    return build_timeline(runs, [(1, T0, width_s, bucket)])


def test_auto_rate_draws_a_ceiling_not_a_promise_and_a_window_longer_than_a_point_is_said():
    spec = charts.throughput(chart_runs(("auto (ceiling 1200/300)", 4.0)), "Throughput")
    names = {v["series"] for layer in spec["layer"] for v in layer.get("data", {}).get("values", []) if "series" in v}
    assert "ceiling (auto)" in names and "rate promise" not in names
    assert spec["title"]["subtitle"].startswith("The rate promised is 1,200 per 300 s")
    spec = charts.throughput(chart_runs(("50/1", 50.0)), "Throughput")
    names = {v["series"] for layer in spec["layer"] for v in layer.get("data", {}).get("values", []) if "series" in v}
    assert "rate promise" in names and spec["title"] == "Throughput"  # a 1 s window: nothing to say
    charts.render(charts.throughput(chart_runs(("auto (ceiling 1200/300)", 4.0), ("50/1", 50.0)), "Throughput"))


def test_a_job_under_a_second_draws_its_throughput_line_and_labels_whole_seconds_only():
    run = RunRecord(1, "run", T0 + 0.2, T0 + 0.7, 0, 1, {"rate": "none", "rate_per_s": None})
    view = build_timeline([run], [(1, T0, 1, Bucket(methods=Counter({"GET": 6, "PUT": 6})))])
    spec = charts.throughput(view, "Throughput")
    [line] = [layer for layer in spec["layer"] if layer["mark"]["type"] == "line"]
    drawn = [v for v in line["data"]["values"] if v["series"] == "requests/s" and v["v"] is not None]
    assert len(drawn) >= 2 and {v["v"] for v in drawn} == {12.0}  # a line needs two points
    assert line["encoding"]["x"]["axis"]["values"] == [T0 * 1000, (T0 + 1) * 1000]
    assert "<svg" in charts.render(spec)


def test_the_runs_options_column_wraps_inside_the_page():
    from batcher.report.html import STYLE

    assert "white-space: nowrap; display: inline-block" not in STYLE  # an option could not break
    assert re.search(r"td:last-child \{[^}]*overflow-wrap: anywhere", STYLE)
