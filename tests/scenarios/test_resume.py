"""Resume after kill -9: what a killed run or rollback had done is neither lost nor done twice.

A rollback killed between a restoring PUT that landed and the commit of its
outcome finds, resumed, the meeting as before: that is its own work, so the
meeting is counted restored, not "already as before". A run's pending write
found applied is marked landed; the job's request counters survive the kill.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from batcher.commands.rollback import Rollback, rollback_job
from batcher.run.engine import run_job

from ..conftest import config, kill_at, read_jsonl, run_cli, write_jsonl


class Killed(Exception):
    """Stands for kill -9: nothing after it in the process runs."""


async def test_meetings_a_killed_rollback_restored_are_counted_restored_when_it_resumes(server, tmp_path, monkeypatch):
    ids = server.add(3, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    await run_job(config(tmp_path, server, src))
    original = Rollback.record

    def killed_after_the_put(self, snap, outcome, *args, **kwargs):
        if outcome == "succeeded":
            raise Killed  # the PUT landed; its outcome was never committed
        return original(self, snap, outcome, *args, **kwargs)

    monkeypatch.setattr(Rollback, "record", killed_after_the_put)
    with pytest.raises((Killed, BaseExceptionGroup)):
        await rollback_job(config(tmp_path, server, src, concurrency=1))
    assert [server.doc(m)["title"] for m in ids].count("orig") == 1
    monkeypatch.setattr(Rollback, "record", original)

    results = tmp_path / "rollback.results.jsonl"
    result = await rollback_job(config(tmp_path, server, src, results_path=str(results)))
    assert (result.summary["succeeded"], result.summary["unchanged"]) == (3, 0)
    assert [server.doc(m)["title"] for m in ids] == ["orig"] * 3
    assert sorted(line["outcome"] for line in read_jsonl(results)) == ["succeeded"] * 3


async def test_a_restore_in_flight_is_not_a_finished_outcome(server, tmp_path, monkeypatch):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    original = Rollback.record

    def killed(self, snap, outcome, *args, **kwargs):
        raise Killed

    monkeypatch.setattr(Rollback, "record", killed)
    results = tmp_path / "rollback.results.jsonl"
    with pytest.raises((Killed, BaseExceptionGroup)):
        await rollback_job(config(tmp_path, server, src, results_path=str(results)))
    monkeypatch.setattr(Rollback, "record", original)
    summary = (await rollback_job(config(tmp_path, server, src, results_path=str(results)))).summary
    assert (summary["succeeded"], summary["failed"], summary["skipped"]) == (1, 0, 0)
    assert [line["outcome"] for line in read_jsonl(results)] == ["succeeded"]


async def test_a_restore_whose_outcome_stayed_unknown_is_counted_restored_when_it_had_landed(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    # the restoring PUT lands, but every answer to it is lost, and so is every read after it
    server.api.faults.extend(
        [
            {"kind": "headers", "headers": {}, "method": "GET", "meeting": mid, "times": 1},  # the judging GET
            {"kind": "apply_then_drop", "method": "PUT", "meeting": mid, "times": 10},
            {"kind": "status", "status": 503, "method": "GET", "meeting": mid, "times": 10},
        ]
    )
    first = await rollback_job(config(tmp_path, server, src, max_attempts=3))
    assert (first.summary["succeeded"], first.summary["failed"]) == (0, 1)
    assert server.doc(mid)["title"] == "orig"
    server.api.faults.clear()
    second = await rollback_job(config(tmp_path, server, src))
    assert (second.summary["succeeded"], second.summary["unchanged"]) == (1, 0)


async def test_a_restore_whose_answer_is_lost_is_confirmed_by_the_read_after_the_wait(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    server.api.faults.append({"kind": "apply_then_drop", "method": "PUT", "meeting": mid, "times": 10})
    result = await rollback_job(config(tmp_path, server, src, max_attempts=3))
    assert (result.summary["succeeded"], result.summary["failed"]) == (1, 0)
    assert server.doc(mid)["title"] == "orig" and server.api.puts[mid] == 2  # the job's and one restore


async def test_request_counters_survive_kill_9(server, tmp_path):
    ids = server.add(400)
    server.api.latency_s = 0.002
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    concurrency = 4
    args = ("run", str(src), "--rate", "none", "--concurrency", str(concurrency), "-q")
    kills = await kill_at(server, args, (150, 400))
    summary_path = tmp_path / "s.json"
    code, _, err = await run_cli(*args, "--summary-json", str(summary_path), base_url=server.base_url)
    assert code == 0 and kills == 2, err
    counted = json.loads(summary_path.read_text())["requests"]
    seen = sum(server.api.requests.values())
    # Lost per kill at most: the group not yet committed (concurrency rows) and those in flight
    # (concurrency rows), each a GET and a PUT.
    assert seen - 2 * 2 * concurrency * kills <= counted <= seen


def _snapshot(tmp_path) -> tuple[str, int, int]:
    with sqlite3.connect(tmp_path / "job.state.db") as db:
        return db.execute("SELECT write_state, maybe_landed, seq FROM snapshots").fetchone()


async def test_a_resumed_run_that_finds_the_pending_write_applied_marks_it_landed(server, tmp_path):
    """Guards resume after kill -9: a pending write found applied is marked landed, so rollback --force restores over later edits."""
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
