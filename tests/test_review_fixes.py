"""Fixes from the cold review: before-states, unknown outcomes, rollback of earlier writes, leaks.

Each test failed on the code before its fix, for the reason its name gives.
"""

from __future__ import annotations

import sqlite3

import pytest

from batcher.commands.plan import plan_job
from batcher.commands.rollback import rollback_job
from batcher.core.config import RateSpec
from batcher.core.decide import Options, Refuse, Send, restore
from batcher.http import client as client_module
from batcher.http.budget import BUSY_RETRY_S, Budget
from batcher.http.client import Client
from batcher.http.pacer import Pacer
from batcher.run.engine import run_job
from batcher.state import rollback_log as rollback_state
from batcher.state.store import Store
from tests.conftest import config, read_jsonl, write_jsonl
from tests.fake_time import FakeTime

S3 = {"type": "aws", "bucket": "b", "region": "us-east-1"}
NEW_KEYS = {"access_key": "AK", "secret": "S"}


def _snapshot(tmp_path) -> tuple[str, int, int]:
    with sqlite3.connect(tmp_path / "job.state.db") as db:
        return db.execute("SELECT write_state, maybe_landed, seq FROM snapshots").fetchone()


# -- 1. the before-state is the meeting before the job's first write that may have landed -------


async def test_rollback_restores_the_original_after_a_landed_write_a_failed_rewrite_and_a_retry(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    assert (await run_job(config(tmp_path, server, src))).exit_code == 0  # write 1 lands
    write_jsonl(src, [{"meeting_id": mid, "title": "newer"}])
    server.api.faults.append({"kind": "status", "status": 400, "method": "PUT", "meeting": mid, "times": 1})
    assert (await run_job(config(tmp_path, server, src, force=True))).summary["failed"] == 1  # write 2 fails
    await run_job(config(tmp_path, server, src, force=True, retry_failed=True))  # write 3 lands
    assert server.doc(mid)["title"] == "newer"
    result = await rollback_job(config(tmp_path, server, src))
    assert result.counts == {"succeeded": 1}
    assert server.doc(mid)["title"] == "orig", "write 3's GET showed write 1's change: not the way back"


def test_a_snapshot_is_found_whatever_case_the_meeting_id_is_spelled_in(tmp_path):
    store = Store.open(str(tmp_path / "s.db"))
    try:
        store.save_snapshot("acct", "abcdef00-0000-4000-8000-00000000000a", 1, {"title": "orig"}, {"title": "new"})
        store.mark_write("acct", "abcdef00-0000-4000-8000-00000000000a", "landed")
        store.save_snapshot("acct", "ABCDEF00-0000-4000-8000-00000000000A", 1, {"title": "new"}, {"title": "newer"})
        store.flush()
        [(before, seq)] = [(b, s.seq) for s in rollback_state.todo(store) for b in [s.before]]
        assert (before, seq) == ({"title": "orig"}, 2)
    finally:
        store.close()


def test_a_state_file_from_before_maybe_landed_is_migrated_on_open(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the snapshots table as the previous release made it
        db.execute(
            "CREATE TABLE snapshots (account_id TEXT NOT NULL, meeting_id TEXT NOT NULL, row INTEGER,"
            " before BLOB NOT NULL, after BLOB NOT NULL, write_state TEXT NOT NULL DEFAULT 'pending',"
            " seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (account_id, meeting_id))"
        )
        db.execute("INSERT INTO snapshots VALUES ('a', 'm1', 1, x'00', x'00', 'failed', 2)")
        db.execute("INSERT INTO snapshots VALUES ('a', 'm2', 2, x'00', x'00', 'failed', 1)")
    Store.open(str(path)).close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT meeting_id, maybe_landed FROM snapshots ORDER BY meeting_id").fetchall()
    assert rows == [("m1", 1), ("m2", 0)]


# -- 2. an unknown outcome is not forgotten when a later attempt fails hard ------------------------


async def test_an_unknown_write_stays_unknown_when_its_resend_is_refused(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    server.api.faults.extend(
        [
            {"kind": "headers", "headers": {}, "method": "GET", "times": 1},  # the merge GET: normal
            {"kind": "apply_then_drop", "method": "PUT", "times": 1},  # lands, answer lost
            {"kind": "status", "status": 503, "method": "GET", "times": 2},  # the confirming GET fails
            {"kind": "status", "status": 409, "method": "PUT", "times": 1},  # the re-send is refused
        ]
    )
    await run_job(config(tmp_path, server, src, max_attempts=2))
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "unknown_outcome" and entry["status"] == 409
    assert _snapshot(tmp_path)[0] == "unknown"
    await rollback_job(config(tmp_path, server, src))
    assert server.doc(mid)["title"] == "orig"


async def test_a_timed_out_write_that_a_get_shows_not_landed_stays_unknown(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    # the PUT times out (it may still be queued on the server), the GET says "not yet", the re-send is refused
    server.api.faults.extend(
        [
            {"kind": "hang", "seconds": 1.0, "method": "PUT", "times": 1},
            {"kind": "status", "status": 409, "method": "PUT", "times": 1},
        ]
    )
    await run_job(config(tmp_path, server, src, max_attempts=3, timeout_s=0.2))
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "unknown_outcome"


async def test_a_bad_token_after_an_unknown_write_halts_and_keeps_the_write_unknown(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    server.api.faults.extend(
        [
            {"kind": "headers", "headers": {}, "method": "GET", "times": 1},
            {"kind": "apply_then_drop", "method": "PUT", "times": 1},
            {"kind": "status", "status": 503, "method": "GET", "times": 2},
            {"kind": "status", "status": 401, "method": "PUT", "times": 1},
        ]
    )
    result = await run_job(config(tmp_path, server, src, max_attempts=2))
    assert result.exit_code == 3
    assert _snapshot(tmp_path)[0] == "unknown"


# -- 3. a meeting showing the job's earlier write is restored when the latest write failed ---------


def test_restore_puts_the_before_state_back_over_the_last_write_that_landed():
    before, landed, failed = {"title": "orig"}, {"title": "new"}, {"title": "newer"}
    got = restore("earlier", before, failed, {"title": "new"}, Options(), landed)
    assert isinstance(got, Send) and got.body == before


def test_restore_still_refuses_a_meeting_showing_neither_write_of_the_job():
    before, landed, failed = {"title": "orig"}, {"title": "new"}, {"title": "newer"}
    got = restore("earlier", before, failed, {"title": "a colleague's"}, Options(force=True), landed)
    assert isinstance(got, Refuse) and got.error == "conflict"


# -- 4. a resumed run that sees the job's pending write marks it landed ---------------------------


async def test_a_resumed_run_that_finds_the_pending_write_applied_marks_it_landed(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    with sqlite3.connect(tmp_path / "job.state.db") as db:  # as after kill -9 before the outcome's commit
        db.execute("UPDATE snapshots SET write_state = 'pending'")
        db.execute("UPDATE rows SET outcome = 'pending'")
    assert (await run_job(config(tmp_path, server, src))).summary["unchanged"] == 1
    assert _snapshot(tmp_path)[0] == "landed"
    server.doc(mid)["persist_chat"] = not server.doc(mid).get("persist_chat")  # an edit on top of the job's
    await rollback_job(config(tmp_path, server, src, force=True))
    assert server.doc(mid)["title"] == "orig", "landed: --force restores over the later edit"


# -- 5. a merged document lacking a required field is retried by --retry-failed ----------------------


async def test_a_row_refused_for_what_the_meeting_lacks_is_retried_by_retry_failed(server, tmp_path):
    [mid] = server.add()
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "recording_config": {"storage_config": NEW_KEYS}}])
    await run_job(config(tmp_path, server, src))
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "invalid_merged"
    server.doc(mid)["recording_config"]["storage_config"] = dict(S3)  # the meeting gets its storage type
    result = await run_job(config(tmp_path, server, src, retry_failed=True))
    assert result.summary["succeeded"] == 1 and server.doc(mid)["recording_config"]["storage_config"]["secret"] == "S"


async def test_plan_shows_a_merged_document_refusal_as_an_error_of_its_own_kind(server, tmp_path):
    [mid] = server.add()
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "recording_config": {"storage_config": NEW_KEYS}}])
    result = await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert (line["action"], line["error"], result.exit_code) == ("error", "invalid_merged", 1)


# -- 6. a killed rollback's requests are counted ------------------------------------------------------


async def test_a_rollback_killed_before_its_summary_has_counted_its_requests(server, tmp_path, monkeypatch):
    ids = server.add(3, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    await run_job(config(tmp_path, server, src))

    def killed(*_args, **_kwargs):
        raise SystemExit("killed")  # as a kill after the last meeting, before the end-of-run summary

    monkeypatch.setattr("batcher.commands.rollback.write_report", killed)
    with pytest.raises(SystemExit):
        await rollback_job(config(tmp_path, server, src))
    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        assert rollback_state.stats(store)["requests"] == 6  # a GET and a PUT per meeting
    finally:
        store.close()


# -- 8. nothing leaks on error paths ---------------------------------------------------------------------


def test_a_state_file_that_is_not_a_database_leaves_no_lock_behind(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    kept = []  # the tracebacks stay alive, as in a caller reporting the error: no garbage collector's help
    for _ in range(2):  # the second open would say "in use" if the first kept its lock
        with pytest.raises(sqlite3.DatabaseError) as caught:
            Store.open(str(path))
        kept.append(caught)


async def test_a_client_that_cannot_start_releases_its_rate_budget(server, tmp_path, monkeypatch):
    monkeypatch.setattr(client_module, "_RETRY_SWITCH", "_no_such_switch")
    cfg = config(tmp_path, server, tmp_path / "in.jsonl", rate="10/1", budget_path=str(tmp_path / "budget.db"))
    pacer = Pacer(cfg.rate)
    with pytest.raises(RuntimeError, match="aiohttp"):
        async with Client(cfg, pacer):
            pass
    assert pacer.budget is None


async def test_a_rollback_whose_results_file_cannot_open_releases_the_state(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    with pytest.raises(OSError) as caught:  # its traceback stays alive: no garbage collector's help
        await rollback_job(config(tmp_path, server, src, results_path=str(tmp_path / "no" / "such" / "dir.jsonl")))
    Store.open(str(tmp_path / "job.state.db")).close()  # not "in use by another batcher process"
    assert caught.value is not None


# -- 7. the server's remaining budget is the token's, shared through the budget file -------------------


async def test_two_processes_on_one_token_share_the_servers_remaining_budget(tmp_path):
    t = FakeTime()
    path = tmp_path / "budget.db"
    one, other = (Pacer(RateSpec(100, 1.0), t.clock, t.sleep, budget=Budget(path, t.clock)) for _ in range(2))
    ticket = await one.acquire()
    one.on_response(200, (3, 30.0), None, ticket)  # the server: 3 more starts for this token in 30 s
    for _ in range(3):
        await other.acquire()
    assert t.now == 0.0
    await other.acquire()  # the fourth waits for the server's reset, although `other` never heard from it
    assert t.now >= 30.0


async def test_a_busy_budget_file_makes_the_pacer_sleep_instead_of_blocking_the_loop(tmp_path):
    t = FakeTime()
    path = tmp_path / "budget.db"
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        holder.execute("COMMIT")  # ... and lets go while this one sleeps

    pacer = Pacer(RateSpec(100, 1.0), t.clock, sleep, budget=Budget(path, t.clock))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the file
    await pacer.acquire()
    holder.close()
    assert slept == [BUSY_RETRY_S], "asked again after an asynchronous sleep, not a 30 s busy wait"


def test_finding_a_snapshot_by_its_case_insensitive_key_uses_the_index_not_a_scan(tmp_path):
    from batcher.state.snapshots import _MARK_WRITE

    store = Store.open(str(tmp_path / "s.db"))
    try:
        [(*_, plan)] = store.db.execute("EXPLAIN QUERY PLAN " + _MARK_WRITE, ("landed", "a", "m")).fetchall()
    finally:
        store.close()
    assert "snapshots_key" in plan
