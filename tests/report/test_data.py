"""The report's data, read from the state: outcomes, failures, accounts, runs and the timeline, as the state holds them."""

from __future__ import annotations

import sqlite3

from batcher.commands.rollback import rollback_job
from batcher.core.timings import Bucket
from batcher.report.data import TOP_ACCOUNTS, build_timeline, read_report, run_status
from batcher.report.html import write_html_report
from batcher.state.runs import RunRecord
from batcher.state.store import Store

from ..conftest import ACCOUNT
from ..fake_time import T0, VirtualTime
from .test_html import busy_job


def execute(state: str, query: str, *args: object) -> list[tuple]:
    with sqlite3.connect(state) as db:
        return db.execute(query, *args).fetchall()


def word(i: int) -> str:
    """A distinct word of letters g-z only (no digit, no hex run): a message shape of its own."""
    out = ""
    while True:
        out += "ghijklmnopqrstuvwxyz"[i % 20]
        i //= 20
        if not i:
            return out


async def test_a_rollback_killed_mid_restore_reports_its_restoring_meeting_as_pending(server, tmp_path):
    """Guards the report's rollback figures: a meeting a kill left ``restoring`` counts as pending."""
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


def test_the_report_spreads_a_pause_over_time_and_cuts_it_where_the_run_ended():
    """Guards build_timeline: a pause is drawn over the time it lasted and cut where its run ended."""
    run = RunRecord(1, "run", T0, T0 + 100, 0, 1, {})
    paused = Bucket(pauses=1, paused_s=31_536_000, spans=[(T0 + 10.5, 31_536_000)])
    extended = Bucket(paused_s=3, spans=[(T0 + 40.5, 3)])
    later = Bucket(pauses=1, paused_s=5, spans=[(T0 + 50, 5)])
    view = build_timeline([run], [(1, T0 + 10, 1, paused), (1, T0 + 20, 1, extended), (1, T0 + 50, 1, later)])
    assert view.pauses == [(T0 + 10.5, T0 + 100)]  # the run ended during it: it paused no longer
    short = Bucket(pauses=1, paused_s=30, spans=[(T0 + 10.5, 30)])
    view = build_timeline([run], [(1, T0 + 10, 1, short), (1, T0 + 40, 1, extended), (1, T0 + 50, 1, later)])
    assert view.pauses == [(T0 + 10.5, T0 + 43.5), (T0 + 50, T0 + 55)]


async def test_a_killed_run_whose_pid_was_reused_is_not_running_a_locked_state_is(server, tmp_path):
    """Guards run_status: a run is running while the state is locked, not because its pid is alive."""
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


async def test_a_state_with_200k_failed_rows_reports_figures_that_add_up_with_bounded_shapes_and_accounts(
    server, tmp_path
):
    """Guards the report at scale: 200,000 failed rows give figures that add up, bounded message shapes and accounts."""
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
