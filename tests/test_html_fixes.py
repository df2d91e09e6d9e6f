"""Review findings on the HTML report: each test fails on the code before its fix."""

from __future__ import annotations

import sqlite3

from batcher.html_report import write_html_report
from batcher.report_data import read_report
from batcher.rollback import rollback_job

from .conftest import ACCOUNT
from .fake_time import VirtualTime
from .test_html_report import busy_job


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
