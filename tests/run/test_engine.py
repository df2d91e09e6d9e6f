"""run_job against the real fake API: modes, guard, unknown fields, unchanged rows, halts, cancellation, outputs."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest

from batcher.errors import StateMismatchError, ValidationFailed
from batcher.run.engine import run_job
from batcher.state.store import Store

from ..conftest import ACCOUNT, config, read_jsonl, write_csv, write_jsonl
from ..fake_time import VirtualTime

S3 = {"type": "aws", "bucket": "b", "region": "us-east-1"}
S3_KEYS = {**S3, "access_key": "AKIA-CANARY-1", "secret": "SECRET-CANARY-2"}


async def test_merge_changes_only_the_named_fields(server, tmp_path):
    [mid] = server.add(
        title="Weekly", transcribe_on_end=True, persist_chat=True, ai_config={"summarization": {"word_limit": 700}}
    )
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "ai_config.transcription.language"], [[mid, "fr"]])
    result = await run_job(config(tmp_path, server, src))
    assert result.exit_code == 0 and result.summary["succeeded"] == 1
    doc = server.doc(mid)
    assert doc["ai_config"]["transcription"]["language"] == "fr"
    assert (doc["title"], doc["transcribe_on_end"], doc["persist_chat"]) == ("Weekly", True, True)
    assert doc["ai_config"]["summarization"]["word_limit"] == 700
    assert server.api.requests == {"GET": 1, "PUT": 1}


async def test_replace_mode_puts_the_row_as_the_whole_document(server, tmp_path):
    [mid] = server.add(title="Weekly", transcribe_on_end=True)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "persist_chat": True}])
    result = await run_job(config(tmp_path, server, src, mode="replace"))
    assert result.exit_code == 0
    doc = server.doc(mid)
    assert doc["persist_chat"] is True and doc["title"] is None and doc["transcribe_on_end"] is False
    assert server.api.requests == {"PUT": 1}


async def test_patch_mode_sends_patch_on_app_path(server, tmp_path):
    [mid] = server.add(title="Weekly")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "record_on_start": True}])
    result = await run_job(config(tmp_path, server, src, mode="patch", app_id="app1"))
    assert result.exit_code == 0
    assert server.doc(mid)["record_on_start"] is True and server.doc(mid)["title"] == "Weekly"
    assert server.api.requests == {"PATCH": 1}


async def test_row_that_changes_nothing_is_unchanged_and_not_put(server, tmp_path):
    [mid] = server.add(ai_config={"transcription": {"language": "fr"}})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "ai_config": {"transcription": {"language": "fr"}}}])
    result = await run_job(config(tmp_path, server, src))
    assert result.exit_code == 0 and result.summary["unchanged"] == 1
    assert server.api.requests == {"GET": 1}


async def test_credential_guard_blocks_a_put_that_would_erase_secrets(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": S3_KEYS})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    result = await run_job(config(tmp_path, server, src))
    assert result.exit_code == 1
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "credential_guard" and "--allow-credential-reset" in entry["message"]
    assert server.api.requests == {"GET": 1}
    assert server.doc(mid)["recording_config"]["storage_config"]["secret"] == "SECRET-CANARY-2"


async def test_credential_guard_passes_when_the_row_supplies_the_secrets(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": S3_KEYS})
    new = {**S3_KEYS, "bucket": "moved", "access_key": "AK2", "secret": "S2"}
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "recording_config": {"storage_config": new}}])
    assert (await run_job(config(tmp_path, server, src))).exit_code == 0
    assert server.doc(mid)["recording_config"]["storage_config"] == new


async def test_allow_credential_reset_puts_anyway(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": S3_KEYS})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    assert (await run_job(config(tmp_path, server, src, allow_credential_reset=True))).exit_code == 0
    assert "secret" not in server.doc(mid)["recording_config"]["storage_config"]


async def test_not_found_and_http_errors_are_reported_per_row(server, tmp_path):
    [mid] = server.add()
    missing = "11111111-2222-4333-8444-555555555555"
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "a"}, {"meeting_id": missing, "title": "b"}])
    result = await run_job(config(tmp_path, server, src))
    assert result.exit_code == 1 and result.summary["succeeded"] == 1 and result.summary["failed"] == 1
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert (entry["row"], entry["error"], entry["status"], entry["patch"]) == (2, "not_found", 404, {"title": "b"})
    assert "not found" in entry["message"]


async def test_invalid_rows_stop_everything_before_sending(server, tmp_path):
    [mid] = server.add()
    src = write_csv(
        tmp_path / "in.csv",
        ["meeting_id", "recording_config.max_seconds"],
        [[mid, "3600"], [mid, "30"], ["nope", "60"]],
    )
    seen = []
    with pytest.raises(ValidationFailed):
        await run_job(config(tmp_path, server, src), on_invalid=seen.append)
    assert [(e.number, e.errors[0].field) for e in seen] == [(2, "recording_config.max_seconds"), (3, "meeting_id")]
    assert sum(server.api.requests.values()) == 0
    assert not (tmp_path / "job.state.db").exists()


async def test_skip_invalid_records_them_as_failed_and_goes_on(server, tmp_path):
    a, b = server.add(2)
    src = write_csv(
        tmp_path / "in.csv", ["meeting_id", "persist_chat"], [[a, "true"], [a, "false"], [b, "maybe"], [b, "true"]]
    )
    result = await run_job(config(tmp_path, server, src, skip_invalid=True))
    assert result.exit_code == 1
    assert result.summary | {"elapsed_s": 0} == {
        "total": 4,
        "succeeded": 2,
        "unchanged": 0,
        "failed": 2,
        "skipped": 0,
        "requests": 4,
        "retries": 0,
        "elapsed_s": 0,
    }
    report = read_jsonl(tmp_path / "failures.jsonl")
    assert [(r["row"], r["error"]) for r in report] == [(2, "invalid"), (3, "invalid")]
    assert "duplicate of row 1" in report[0]["message"]


async def test_401_stops_the_job_at_once(server, tmp_path):
    server.api.token = "the-right-one"
    ids = server.add(20)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    result = await run_job(config(tmp_path, server, src, concurrency=2))
    assert result.exit_code == 3 and "401" in result.message
    assert sum(server.api.requests.values()) <= 2
    assert result.summary["skipped"] >= 18
    assert read_jsonl(tmp_path / "failures.jsonl")[0]["error"] == "auth"


async def test_rerun_of_a_finished_job_sends_nothing(server, tmp_path):
    ids = server.add(5)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    assert (await run_job(config(tmp_path, server, src))).exit_code == 0
    before = sum(server.api.requests.values())
    again = await run_job(config(tmp_path, server, src))
    assert again.exit_code == 0 and again.summary["succeeded"] == 5
    assert sum(server.api.requests.values()) == before


async def test_retry_failed_resends_only_failed_rows(server, tmp_path):
    ids = server.add(3)
    server.api.faults.append({"kind": "status", "status": 400, "meeting": ids[1], "method": "PUT"})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    assert (await run_job(config(tmp_path, server, src))).exit_code == 1
    assert (await run_job(config(tmp_path, server, src))).summary["failed"] == 1, "failed rows wait for --retry-failed"
    assert server.api.puts[ids[1]] == 0
    result = await run_job(config(tmp_path, server, src, retry_failed=True))
    assert result.exit_code == 0 and result.summary["succeeded"] == 3
    assert [server.api.puts[m] for m in ids] == [1, 1, 1]


async def test_max_failures_halts_with_exit_3(server, tmp_path):
    rows = [{"meeting_id": f"00000000-0000-4000-8000-{i:012d}", "title": "x"} for i in range(30)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    result = await run_job(config(tmp_path, server, src, max_failures=3, concurrency=1))
    assert result.exit_code == 3 and "--max-failures" in result.message
    assert result.summary["failed"] == 4 and result.summary["skipped"] == 26


async def test_changed_input_refuses_to_resume_unless_force(server, tmp_path):
    a, b = server.add(2)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": a, "title": "x"}])
    await run_job(config(tmp_path, server, src))
    write_jsonl(src, [{"meeting_id": a, "title": "x"}, {"meeting_id": b, "title": "y"}])
    with pytest.raises(StateMismatchError, match="content"):
        await run_job(config(tmp_path, server, src))
    with pytest.raises(StateMismatchError, match="mode"):
        await run_job(config(tmp_path, server, src, mode="replace"))
    result = await run_job(config(tmp_path, server, src, force=True))
    assert result.exit_code == 0 and result.summary["total"] == 2
    assert (server.api.puts[a], server.api.puts[b]) == (1, 1), "the row done with the same patch is not resent"


async def test_stdin_rows_stream_and_invalid_ones_fail_as_they_come(server, tmp_path):
    [mid] = server.add()
    data = orjson.dumps({"meeting_id": mid, "title": "x"}) + b"\n" + b'{"meeting_id": "bad"}\n'
    result = await run_job(config(tmp_path, server, "-"), stdin=io.BytesIO(data))
    assert result.exit_code == 1 and result.summary["succeeded"] == 1 and result.summary["failed"] == 1
    again = await run_job(config(tmp_path, server, "-"), stdin=io.BytesIO(data))
    assert again.summary["succeeded"] == 1 and server.api.puts[mid] == 1


async def test_results_summary_and_csv_report(server, tmp_path):
    ids = server.add(2)
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"meeting_id": ids[0], "title": "x"}, {"meeting_id": "11111111-2222-4333-8444-555555555555", "title": "y"}],
    )
    cfg = config(
        tmp_path,
        server,
        src,
        results_path=str(tmp_path / "r.jsonl"),
        summary_path=str(tmp_path / "s.json"),
        report_path=str(tmp_path / "f.csv"),
    )
    await run_job(cfg)
    results = sorted(read_jsonl(tmp_path / "r.jsonl"), key=lambda r: r["row"])
    assert [(r["row"], r["outcome"], r["status"]) for r in results] == [(1, "succeeded", 200), (2, "failed", 404)]
    assert orjson.loads((tmp_path / "s.json").read_bytes())["failed"] == 1
    lines = (tmp_path / "f.csv").read_text().splitlines()
    assert lines[0] == "row,meeting_id,account_id,error,status,message,attempts,patch" and lines[1].startswith("2,")


async def test_snapshot_is_kept_for_rollback(server, tmp_path):
    [mid] = server.add(title="before")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "after"}])
    await run_job(config(tmp_path, server, src))
    store = Store.open(str(tmp_path / "job.state.db"))
    [(account, meeting, row, before, after)] = list(store.snapshots())
    store.close()
    assert (account, meeting, row) == (ACCOUNT, mid, 1)
    assert before["title"] == "before" and after["title"] == "after"


async def test_retry_after_pauses_and_the_row_still_succeeds(server, tmp_path):
    ids = server.add(4)
    server.api.faults.append({"kind": "status", "status": 429, "retry_after": 300})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    t = VirtualTime()
    arrivals: list[float] = []  # virtual time at which each request reached the server
    server.api.on_request = lambda total: arrivals.append(t.now)
    result = await run_job(config(tmp_path, server, src, concurrency=1), control=t.control())
    assert result.exit_code == 0 and result.summary["retries"] == 1
    assert server.api.statuses[429] == 1
    assert arrivals[0] == 0 and len(arrivals) == 9, "429, then GET + PUT for each of the 4 rows"
    assert min(arrivals[1:]) >= 300, "nothing was sent before the 300 s Retry-After ended"


async def test_report_and_summary_cover_every_run_of_the_job(server, tmp_path):
    ids = server.add(3)
    missing = "11111111-2222-4333-8444-555555555555"
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"meeting_id": missing, "title": "x"}] + [{"meeting_id": m, "title": "x"} for m in ids]
    )
    first = await run_job(config(tmp_path, server, src, max_failures=0, concurrency=1))
    assert first.exit_code == 3 and first.summary["failed"] == 1 and first.summary["skipped"] == 3
    second = await run_job(config(tmp_path, server, src, concurrency=1))
    assert second.exit_code == 1
    assert second.summary | {"elapsed_s": 0} == {
        "total": 4,
        "succeeded": 3,
        "unchanged": 0,
        "failed": 1,
        "skipped": 0,
        "requests": 7,
        "retries": 0,
        "elapsed_s": 0,
    }
    assert [(r["row"], r["error"]) for r in read_jsonl(tmp_path / "failures.jsonl")] == [(1, "not_found")]


async def test_a_forced_rebuild_that_fails_validation_leaves_the_old_state_intact(server, tmp_path):
    a, b = server.add(2)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": a, "title": "x"}, {"meeting_id": b, "title": "y"}])
    cfg = config(tmp_path, server, src)
    await run_job(cfg)
    original = src.read_bytes()
    write_jsonl(src, [{"meeting_id": a, "title": "x"}, {"meeting_id": "bad"}])
    with pytest.raises(ValidationFailed):
        await run_job(config(tmp_path, server, src, force=True))
    src.write_bytes(original)
    again = await run_job(cfg)
    assert again.exit_code == 0 and again.summary["succeeded"] == 2
    assert (server.api.puts[a], server.api.puts[b]) == (1, 1), "the old outcomes survived: nothing resent"


STORED_S3 = {
    "type": "aws",
    "bucket": "b",
    "region": "us-east-1",
    "access_key": "OLD-AK-CANARY",
    "secret": "OLD-S-CANARY",
}


NEW_S3_KEYS = {"access_key": "NEW-AK-CANARY", "secret": "NEW-S-CANARY"}


def snapshot(tmp_path):
    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        [(_a, _m, _r, before, after)] = list(store.snapshots())
        (state,) = store.db.execute("SELECT write_state FROM snapshots").fetchone()
    finally:
        store.close()
    return before, after, state


async def test_merge_carries_fields_the_schema_does_not_know(server, tmp_path):
    server.api.extra_fields = {"beta_flag", "ai_config.future"}
    server.api.learns_extra_fields = False
    [mid] = server.add(title="old", beta_flag=True, ai_config={"future": {"x": 3}})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    result = await run_job(config(tmp_path, server, src))
    assert result.exit_code == 0, result.message
    doc = server.doc(mid)
    assert (doc["title"], doc["beta_flag"], doc["ai_config"]["future"]) == ("new", True, {"x": 3})
    before, _after, state = snapshot(tmp_path)
    assert before["beta_flag"] is True and before["ai_config"]["future"] == {"x": 3} and state == "landed"
    assert "id" not in before and "status" not in before, "read-only fields are not part of the way back"


async def test_a_carried_field_the_server_rejects_fails_the_row_naming_it(server, tmp_path):
    server.api.learns_extra_fields = False  # GET shows it; this server's PUT does not accept it
    [mid] = server.add(title="old", beta_flag=True)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    result = await run_job(config(tmp_path, server, src))
    assert result.exit_code == 1
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["status"] == 400 and "beta_flag" in entry["message"] and "carried from the meeting" in entry["message"]
    assert server.doc(mid)["title"] == "old"


async def test_force_alone_does_not_retry_failed_rows(server, tmp_path):
    a, b, c = server.add(3)
    server.api.faults.append({"kind": "status", "status": 400, "meeting": b, "method": "PUT"})
    rows = [{"meeting_id": m, "title": "x"} for m in (a, b)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    assert (await run_job(config(tmp_path, server, src))).exit_code == 1
    write_jsonl(src, [*rows, {"meeting_id": c, "title": "x"}])  # a changed input needs --force
    forced = await run_job(config(tmp_path, server, src, force=True))
    assert forced.summary["failed"] == 1 and forced.summary["succeeded"] == 2
    assert (server.api.puts[b], server.api.puts[c]) == (0, 1), "the failed row waits for --retry-failed"
    retried = await run_job(config(tmp_path, server, src, retry_failed=True))
    assert retried.exit_code == 0 and server.api.puts[b] == 1


async def test_key_rotation_in_merge_mode_need_not_repeat_the_storage_type(server, tmp_path):
    [has, hasnt] = [*server.add(recording_config={"storage_config": STORED_S3}), *server.add()]
    rows = [{"meeting_id": m, "recording_config": {"storage_config": NEW_S3_KEYS}} for m in (has, hasnt)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    result = await run_job(config(tmp_path, server, src))
    assert result.summary["succeeded"] == 1 and result.summary["failed"] == 1
    assert server.doc(has)["recording_config"]["storage_config"] == {**STORED_S3, **NEW_S3_KEYS}
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert (entry["row"], entry["error"]) == (2, "invalid_merged")  # the meeting lacks it: --retry-failed retries
    assert "recording_config.storage_config.type" in entry["message"] and server.api.requests["PUT"] == 1


async def test_cancelling_run_job_stops_the_workers_and_saves_the_state(server, tmp_path):
    ids = server.add(40)
    server.api.latency_s = 0.05
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    reached = asyncio.Event()
    server.api.on_request = lambda total: reached.set() if total >= 6 else None
    job = asyncio.ensure_future(run_job(config(tmp_path, server, src, concurrency=2)))
    await reached.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert not [t for t in asyncio.all_tasks() if t.get_coro().__qualname__.endswith("worker")], (
        "no worker left running"
    )
    store = Store.open(str(tmp_path / "job.state.db"))
    counts = store.counts()
    (pending,) = store.db.execute("SELECT COUNT(*) FROM rows WHERE outcome = 'pending'").fetchone()
    stats = store.run_stats()
    store.close()
    assert pending == 0 and counts["skipped"] > 0 and counts["total"] == 40
    assert stats["requests"] >= 6, "the cancelled run's requests still count"
    server.api.latency_s = 0
    again = await run_job(config(tmp_path, server, src))
    assert again.exit_code == 0 and all(server.api.puts[m] == 1 for m in ids)


async def test_status_is_sent_by_patch_in_patch_mode(server, tmp_path):
    a, b = server.add(2)
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "status"], [[a, "INACTIVE"], [b, ""]])
    result = await run_job(config(tmp_path, server, src, mode="patch", set_values=[("persist_chat", True)]))
    assert result.exit_code == 0
    assert server.api.meta[(ACCOUNT, a)]["status"] == "INACTIVE" and server.api.meta[(ACCOUNT, b)]["status"] == "ACTIVE"
    assert server.doc(a)["persist_chat"] is True


@pytest.mark.parametrize("mode", ["merge", "replace"])
async def test_status_outside_patch_mode_is_an_invalid_row_naming_the_mode(server, tmp_path, mode):
    [mid] = server.add()
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "status": "INACTIVE"}])
    errors = []
    with pytest.raises(ValidationFailed):
        await run_job(config(tmp_path, server, src, mode=mode), on_invalid=errors.append)
    [err] = errors
    assert err.errors[0].field == "status" and f"this job's mode is {mode}" in err.message
    assert server.api.requests == {}


async def test_replace_mode_will_not_erase_stored_credentials_without_allow_credential_reset(server, tmp_path):
    """Guards the credential guard in replace mode: a PUT that would erase the stored keys is refused unless allowed."""
    stored = {"type": "aws", "bucket": "b", "access_key": "OLDKEY", "secret": "OLDSECRET"}
    [mid] = server.add(recording_config={"storage_config": stored})
    row = {"meeting_id": mid, "recording_config": {"storage_config": {"type": "aws", "bucket": "b"}}}
    src = write_jsonl(tmp_path / "in.jsonl", [row])
    result = await run_job(config(tmp_path, server, src, mode="replace"))
    assert result.exit_code == 1 and server.api.requests["PUT"] == 0
    assert server.doc(mid)["recording_config"]["storage_config"]["secret"] == "OLDSECRET"
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "credential_guard"


S3_WITHOUT_KEYS = {"type": "aws", "bucket": "b", "region": "us-east-1"}


PLAIN_KEYS = {"access_key": "AK", "secret": "S"}


async def test_a_row_refused_for_what_the_meeting_lacks_is_retried_by_retry_failed(server, tmp_path):
    """Guards ``invalid_merged``: a row refused for what the meeting lacks is a failure that --retry-failed retries."""
    [mid] = server.add()
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "recording_config": {"storage_config": PLAIN_KEYS}}])
    await run_job(config(tmp_path, server, src))
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "invalid_merged"
    server.doc(mid)["recording_config"]["storage_config"] = dict(S3_WITHOUT_KEYS)  # the meeting gets its storage type
    result = await run_job(config(tmp_path, server, src, retry_failed=True))
    assert result.summary["succeeded"] == 1 and server.doc(mid)["recording_config"]["storage_config"]["secret"] == "S"
