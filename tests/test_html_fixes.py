"""Review findings on the HTML report: each test fails on the code before its fix."""

from __future__ import annotations

import sqlite3

from batcher.html_report import write_html_report
from batcher.report_data import build_timeline, read_report
from batcher.rollback import rollback_job
from batcher.runs import RunRecord
from batcher.timeline import Bucket, Timeline

from .conftest import ACCOUNT
from .fake_time import VirtualTime
from .test_html_report import busy_job
from .test_timeline import T0, FakeClock


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
