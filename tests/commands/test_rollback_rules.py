"""Which meetings a rollback touches: after retries, after --force runs, after failed or unknown writes.

Each scenario runs the real engine and rollback against the fake API; the
decision itself (``judge``) has a table test so it can move to a shared core.
"""

from __future__ import annotations

import copy
import sqlite3

import pytest

from batcher.commands.rollback import rollback_job
from batcher.core.decide import Options, Refuse, Send, Unchanged, restore
from batcher.run.engine import run_job
from batcher.state import rollback_log
from batcher.state.store import Store

from ..conftest import config, write_jsonl

BEFORE = {"title": "orig", "persist_chat": False}
AFTER = {"title": "new", "persist_chat": False}
OTHER = {"title": "a colleague's", "persist_chat": False}
KEYS = {"recording_config": {"storage_config": {"type": "aws", "bucket": "b"}}}


def _action(decision):
    if isinstance(decision, Unchanged):
        return ("unchanged", None)
    if isinstance(decision, Send):
        return ("restore", None)
    assert isinstance(decision, Refuse)
    return ("refuse", decision.error)


@pytest.mark.parametrize(
    ("write_state", "current", "force", "expected"),
    [
        ("landed", BEFORE, False, ("unchanged", None)),
        ("landed", AFTER, False, ("restore", None)),
        ("landed", OTHER, False, ("refuse", "conflict")),
        ("landed", OTHER, True, ("restore", None)),
        ("unknown", BEFORE, False, ("unchanged", None)),
        ("unknown", AFTER, False, ("restore", None)),
        ("unknown", OTHER, False, ("refuse", "conflict")),
        ("unknown", OTHER, True, ("refuse", "conflict")),
        ("pending", AFTER, False, ("restore", None)),
        ("pending", OTHER, True, ("refuse", "conflict")),
        ("earlier", BEFORE, False, ("unchanged", None)),
        ("earlier", AFTER, False, ("restore", None)),
        ("earlier", OTHER, True, ("refuse", "conflict")),
        ("failed", OTHER, True, ("unchanged", None)),
        ("failed", AFTER, True, ("unchanged", None)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_judge_table(write_state, current, force, expected):
    assert _action(restore(write_state, BEFORE, AFTER, current, Options(force=force))) == expected


def test_judge_will_not_restore_a_before_state_with_credentials_unless_allowed():
    before = {**BEFORE, **KEYS}
    assert _action(restore("landed", before, AFTER, AFTER, Options())) == ("refuse", "credential_guard")
    assert _action(restore("landed", before, AFTER, AFTER, Options(allow_credential_reset=True))) == ("restore", None)


@pytest.mark.parametrize("write_state", ["landed", "unknown"])
def test_credentials_the_job_set_over_stored_ones_are_never_called_as_before(write_state):
    """A key rotation leaves every visible field as it was: GET cannot tell the job's keys from the old ones."""
    before = {**BEFORE, **KEYS}
    rotated = {**BEFORE, "recording_config": {"storage_config": {"type": "aws", "bucket": "b", "secret": "***"}}}
    assert _action(restore(write_state, before, rotated, before, Options())) == ("refuse", "credential_guard")
    reset = restore(write_state, before, rotated, before, Options(allow_credential_reset=True))
    assert isinstance(reset, Send) and reset.body == before


def test_credentials_the_job_added_where_there_was_no_storage_are_removed_by_the_restore():
    added = {**BEFORE, "recording_config": {"storage_config": {"type": "aws", "bucket": "b", "secret": "***"}}}
    shown = {**BEFORE, **KEYS}
    decision = restore("landed", BEFORE, added, shown, Options())
    assert isinstance(decision, Send) and decision.body == BEFORE


def _failing_put(server, meeting: str, status: int = 503) -> None:
    server.api.faults.append({"kind": "status", "status": status, "method": "PUT", "meeting": meeting, "times": 5})


async def test_a_meeting_changed_by_retry_failed_after_a_rollback_is_restored_by_the_next_rollback(server, tmp_path):
    [mid] = server.add(title="orig")
    original = copy.deepcopy(server.api.meetings)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    _failing_put(server, mid)
    first = await run_job(config(tmp_path, server, src, max_attempts=1))
    assert first.summary["failed"] == 1 and server.doc(mid)["title"] == "orig"
    await rollback_job(config(tmp_path, server, src))
    assert (await run_job(config(tmp_path, server, src, retry_failed=True))).exit_code == 0
    assert server.doc(mid)["title"] == "new"
    result = await rollback_job(config(tmp_path, server, src))
    assert result.exit_code == 0 and result.counts == {"succeeded": 1}
    assert server.api.meetings == original


async def test_a_meeting_changed_by_a_force_run_after_a_rollback_is_restored_by_the_next_rollback(server, tmp_path):
    [mid] = server.add(title="orig")
    original = copy.deepcopy(server.api.meetings)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    assert (await rollback_job(config(tmp_path, server, src))).counts == {"succeeded": 1}
    write_jsonl(src, [{"meeting_id": mid, "title": "newer"}])  # the operator edits the input
    assert (await run_job(config(tmp_path, server, src, force=True))).exit_code == 0
    assert server.doc(mid)["title"] == "newer"
    result = await rollback_job(config(tmp_path, server, src))
    assert result.counts == {"succeeded": 1}
    assert server.api.meetings == original


async def test_a_finished_rollback_resumed_or_repeated_redoes_nothing(server, tmp_path):
    ids = server.add(3, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    await run_job(config(tmp_path, server, src))
    await rollback_job(config(tmp_path, server, src))
    requests = sum(server.api.requests.values())
    again = await rollback_job(config(tmp_path, server, src))
    assert sum(again.counts.values()) == 0 and sum(server.api.requests.values()) == requests
    assert "3 meetings changed by the job - 3 restored" in again.message


async def test_a_failed_write_is_not_a_change_and_force_never_overwrites_that_meeting(server, tmp_path):
    a, b = server.add(2, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in (a, b)])
    _failing_put(server, b, status=400)
    assert (await run_job(config(tmp_path, server, src))).summary["failed"] == 1
    server.doc(b)["title"] = "a colleague's"
    result = await rollback_job(config(tmp_path, server, src))
    assert result.exit_code == 0 and result.counts == {"succeeded": 1}
    assert result.message.startswith("batcher rollback: 1 meetings changed by the job - 1 restored")
    assert "1 meetings whose write failed are not changes of the job" in result.message
    assert result.summary["failed_writes_not_counted"] == 1
    forced = await rollback_job(config(tmp_path, server, src, force=True))
    assert forced.exit_code == 0 and sum(forced.counts.values()) == 0
    assert server.doc(b)["title"] == "a colleague's"
    assert server.api.puts[b] == 0


def _mark_unknown(tmp_path, meeting: str) -> None:
    with sqlite3.connect(tmp_path / "job.state.db") as db:
        db.execute("UPDATE snapshots SET write_state = 'unknown' WHERE meeting_id = ?", (meeting,))


async def test_unknown_writes_are_judged_with_the_conflict_check_and_reported_apart(server, tmp_path):
    landed, applied, never, edited = server.add(4, title="orig")
    rows = [{"meeting_id": m, "title": "new"} for m in (landed, applied, never, edited)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    await run_job(config(tmp_path, server, src))
    for mid in (applied, never, edited):
        _mark_unknown(tmp_path, mid)
    server.doc(never)["title"] = "orig"  # as if that PUT had never arrived
    server.doc(edited)["title"] = "a colleague's"
    result = await rollback_job(config(tmp_path, server, src, force=True))
    assert result.counts == {"succeeded": 2, "unchanged": 1, "conflict": 1}
    assert server.doc(edited)["title"] == "a colleague's", "--force does not overwrite an edit of an unknown write"
    assert server.doc(landed)["title"] == server.doc(applied)["title"] == "orig"
    assert server.api.puts[never] == 1, "only the job's own PUT: nothing restored"
    unknown = result.summary["unknown"]
    assert (result.summary["landed"]["meetings"], unknown["meetings"]) == (1, 3)
    assert (unknown["restored"], unknown["unchanged"], unknown["failed"]) == (1, 1, {"conflict": 1})
    assert "write outcome unknown: 3 - 1 restored, 1 not changed" in result.message


async def test_todo_pages_through_snapshots_that_share_a_row_number(server, tmp_path):
    ids = server.add(5, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    await run_job(config(tmp_path, server, src))
    with sqlite3.connect(tmp_path / "job.state.db") as db:  # --force runs of other inputs reuse row numbers
        db.execute("UPDATE snapshots SET row = 1")
    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        assert sorted(snap.meeting_id for snap in rollback_log.todo(store.db, chunk=2)) == sorted(ids)
    finally:
        store.close()


async def test_a_failed_rewrite_does_not_hide_an_earlier_write_that_landed(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    write_jsonl(src, [{"meeting_id": mid, "title": "newer"}])
    server.api.faults.append({"kind": "status", "status": 400, "method": "PUT", "meeting": mid, "times": 1})
    assert (await run_job(config(tmp_path, server, src, force=True))).summary["failed"] == 1
    assert server.doc(mid)["title"] == "new", "the job's first change is still there"
    result = await rollback_job(config(tmp_path, server, src))
    # the meeting shows the earlier write that landed (landed_after): the job's change, restored
    assert result.exit_code == 0 and result.counts == {"succeeded": 1}
    assert result.summary["earlier"]["restored"] == 1 and result.summary["total"] == 1
    assert "latest write failed, an earlier one may have landed: 1" in result.message
    assert server.doc(mid)["title"] == "orig"


async def test_a_meeting_whose_every_write_failed_is_found_as_before(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    server.api.faults.append({"kind": "status", "status": 400, "method": "PUT", "meeting": mid, "times": 2})
    await run_job(config(tmp_path, server, src))
    await run_job(config(tmp_path, server, src, retry_failed=True))
    result = await rollback_job(config(tmp_path, server, src))
    # no write of the job may have landed (maybe_landed stays 0): not a change of the job, not even read
    assert result.exit_code == 0 and result.counts == {} and server.api.puts[mid] == 0
    assert result.summary["failed_writes_not_counted"] == 1


async def test_rollback_restores_the_original_after_a_landed_write_a_failed_rewrite_and_a_retry(server, tmp_path):
    """Guards the before-state: the meeting before the job's first write that may have landed, not what a later write's GET showed."""
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
