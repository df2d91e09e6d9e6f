"""The engine carries out the decision core: unknown fields, confirmation, input trusted once, resume rules."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest
from yarl import URL

from batcher.commands.plan import plan_job
from batcher.core.config import JobConfig
from batcher.errors import InputChangedError, Interrupted
from batcher.run.engine import run_job
from batcher.state.store import Store

from .conftest import ACCOUNT, config, read_jsonl, write_jsonl
from .fake_time import VirtualTime

S3 = {"type": "aws", "bucket": "b", "region": "us-east-1", "access_key": "OLD-AK-CANARY", "secret": "OLD-S-CANARY"}
NEW_KEYS = {"access_key": "NEW-AK-CANARY", "secret": "NEW-S-CANARY"}


def snapshot(tmp_path):
    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        [(_a, _m, _r, before, after)] = list(store.snapshots())
        (state,) = store.db.execute("SELECT write_state FROM snapshots").fetchone()
    finally:
        store.close()
    return before, after, state


# -- 9.1 unknown fields ---------------------------------------------------------


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


# -- 9.2 confirmation only where GET can see ----------------------------------------


async def test_rotating_keys_over_a_dropped_put_sends_it_again_instead_of_trusting_get(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": S3})
    server.api.faults.append({"kind": "drop", "method": "PUT"})  # dropped before it was applied
    row = {"meeting_id": mid, "recording_config": {"storage_config": {"type": "aws", **NEW_KEYS}}}
    src = write_jsonl(tmp_path / "in.jsonl", [row])
    result = await run_job(config(tmp_path, server, src), control=VirtualTime().control())
    assert result.exit_code == 0
    stored = server.doc(mid)["recording_config"]["storage_config"]
    assert (stored["access_key"], stored["secret"]) == ("NEW-AK-CANARY", "NEW-S-CANARY"), "GET cannot see keys"
    assert server.api.requests["PUT"] == 2


async def test_a_secret_write_whose_outcome_stays_unknown_is_failed_unknown_outcome(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": S3})
    server.api.faults.append({"kind": "apply_then_drop", "method": "PUT", "times": 2})
    row = {"meeting_id": mid, "recording_config": {"storage_config": {"type": "aws", **NEW_KEYS}}}
    src = write_jsonl(tmp_path / "in.jsonl", [row])
    result = await run_job(config(tmp_path, server, src, max_attempts=2), control=VirtualTime().control())
    assert result.exit_code == 1
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "unknown_outcome" and "may have been applied" in entry["message"]
    assert "CANARY" not in orjson.dumps(entry).decode()
    assert snapshot(tmp_path)[2] == "unknown"


async def test_a_write_that_failed_for_sure_marks_its_snapshot_failed(server, tmp_path):
    [mid] = server.add(title="old")
    server.api.faults.append({"kind": "status", "status": 400, "method": "PUT"})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    assert (await run_job(config(tmp_path, server, src))).exit_code == 1
    assert snapshot(tmp_path)[2] == "failed"


# -- 9.3 the input is trusted once ------------------------------------------------


@pytest.mark.parametrize("app_id", [None, "app1"])
def test_a_url_is_built_from_encoded_segments(app_id):
    cfg = JobConfig(input="x.csv", base_url="https://api.example.com/client/v4/", app_id=app_id)
    evil = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b/../../../x?y=#z"
    url = URL(cfg.meeting_url("acct/../..", evil), encoded=True)
    assert url.query_string == "" and url.fragment == ""
    middle = ("realtime", "kit", "app1") if app_id else ("realtimekit",)
    assert url.raw_parts == (
        *("/", "client", "v4", "accounts", "acct%2F%2E%2E%2F%2E%2E", *middle, "meetings"),
        "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fx%3Fy%3D%23z",
    ), "each id is exactly one segment"


async def test_a_file_rewritten_between_preflight_and_send_stops_the_job(server, tmp_path):
    a, b = server.add(2, title="old")
    good = [{"meeting_id": a, "title": "new"}, {"meeting_id": b, "title": "new"}, {"meeting_id": "bad"}]
    src = write_jsonl(tmp_path / "in.jsonl", good)

    def rewrite(_err):  # pre-flight's last row: the file changes under the job before the send pass
        write_jsonl(src, [good[0], {"meeting_id": f"{b}/../../../x?y=", "title": "injected"}, good[2]])

    with pytest.raises(InputChangedError, match="row 2"):
        await run_job(config(tmp_path, server, src, skip_invalid=True, concurrency=1), on_invalid=rewrite)
    # row 1 may or may not have started before row 2 was read; nothing starts after the change is seen
    assert server.api.requests["PUT"] <= 1 and not server.api.puts.get(b), "nothing for the rewritten row"
    assert server.doc(b)["title"] == "old"


async def test_a_row_whose_content_changed_is_never_sent(server, tmp_path):
    [a] = server.add(title="old")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": a, "title": "new"}, {"meeting_id": "bad"}])

    def rewrite(_err):
        write_jsonl(src, [{"meeting_id": a, "title": "other"}, {"meeting_id": "bad"}])

    with pytest.raises(InputChangedError, match="row 1"):
        await run_job(config(tmp_path, server, src, skip_invalid=True), on_invalid=rewrite)
    assert sum(server.api.requests.values()) == 0 and server.doc(a)["title"] == "old"


# -- 9.4 stdin resumed with another stream ------------------------------------------


async def test_stdin_resumed_with_a_different_stream_is_refused_naming_the_row(server, tmp_path):
    a, b = server.add(2)
    stream_a = b"".join(orjson.dumps({"meeting_id": m, "title": "A"}) + b"\n" for m in (a, b))
    assert (await run_job(config(tmp_path, server, "-"), stdin=io.BytesIO(stream_a))).exit_code == 0
    sent = sum(server.api.requests.values())
    stream_b = orjson.dumps({"meeting_id": a, "title": "A"}) + b"\n" + orjson.dumps({"meeting_id": b, "title": "B"})
    with pytest.raises(InputChangedError, match="row 2"):
        await run_job(config(tmp_path, server, "-"), stdin=io.BytesIO(stream_b + b"\n"))
    assert sum(server.api.requests.values()) == sent and server.doc(b)["title"] == "A"


# -- 9.9 --force is not --retry-failed --------------------------------------------------


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


# -- 10.13 required-if on the merged document, 15.7 60 vs 60.0 ---------------------------


async def test_key_rotation_in_merge_mode_need_not_repeat_the_storage_type(server, tmp_path):
    [has, hasnt] = [*server.add(recording_config={"storage_config": S3}), *server.add()]
    rows = [{"meeting_id": m, "recording_config": {"storage_config": NEW_KEYS}} for m in (has, hasnt)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    result = await run_job(config(tmp_path, server, src))
    assert result.summary["succeeded"] == 1 and result.summary["failed"] == 1
    assert server.doc(has)["recording_config"]["storage_config"] == {**S3, **NEW_KEYS}
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert (entry["row"], entry["error"]) == (2, "invalid_merged")  # the meeting lacks it: --retry-failed retries
    assert "recording_config.storage_config.type" in entry["message"] and server.api.requests["PUT"] == 1


async def test_plan_and_run_agree_that_60_and_60_0_are_unchanged(server, tmp_path):
    [mid] = server.add(session_keep_alive_time_in_secs=60, recording_config={"max_seconds": 600})
    row = {"meeting_id": mid, "session_keep_alive_time_in_secs": 60.0, "recording_config": {"max_seconds": 600.0}}
    src = write_jsonl(tmp_path / "in.jsonl", [row])
    await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert (line["action"], line["changes"]) == ("unchanged", [])
    result = await run_job(config(tmp_path, server, src))
    assert result.summary["unchanged"] == 1 and server.api.requests["PUT"] == 0


async def test_plan_in_replace_mode_shows_the_put_run_will_send(server, tmp_path):
    [mid] = server.add()  # already at the defaults: run PUTs anyway (replace reads nothing first)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "persist_chat": False}])
    await plan_job(config(tmp_path, server, src, mode="replace"), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert line["action"] == "update"
    result = await run_job(config(tmp_path, server, src, mode="replace"))
    assert result.summary["succeeded"] == 1 and server.api.requests["PUT"] == 1


async def test_plan_error_lines_for_the_credential_guard_have_a_status(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": S3})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "x"}])
    await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert line["error"] == "credential_guard" and "status" in line and line["status"] is None and line["message"]


# -- 9.12 pre-flight off the loop, cancellation -------------------------------------------


async def test_an_interrupt_during_preflight_is_seen_at_once_and_leaves_no_state(server, tmp_path):
    [mid] = server.add()
    rows = [{"meeting_id": "bad"}] + [{"meeting_id": mid, "title": f"t{i}"} for i in range(5000)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    t = VirtualTime()
    control = t.control()
    loop = asyncio.get_running_loop()

    async def interrupt() -> None:
        control.interrupt()

    def on_invalid(_err):  # runs in pre-flight's thread; only a free event loop can run interrupt()
        asyncio.run_coroutine_threadsafe(interrupt(), loop).result(timeout=10)

    with pytest.raises(Interrupted, match="pre-flight"):
        await run_job(config(tmp_path, server, src, skip_invalid=True), control=control, on_invalid=on_invalid)
    assert sum(server.api.requests.values()) == 0
    assert not (tmp_path / "job.state.db").exists()


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


def test_account_is_part_of_the_row_record(tmp_path):
    """Rows are named records, not 8-tuples."""
    store = Store.open(str(tmp_path / "s.db"))
    from batcher.state.store import RowRecord

    store.add_rows([RowRecord(1, ACCOUNT, "m", b"h")])
    record = store.row_record(1)
    store.close()
    assert record is not None and (record.account_id, record.outcome) == (ACCOUNT, "pending")


def test_validate_offline_says_the_type_is_needed_unless_the_meeting_has_one(tmp_path):
    from batcher.commands.validate import validate_input

    row = {"meeting_id": "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "recording_config": {"storage_config": NEW_KEYS}}
    [result] = list(validate_input(str(write_jsonl(tmp_path / "in.jsonl", [row]))))
    [problem] = result.errors
    assert problem.field == "recording_config.storage_config.type"
    assert "unless the meeting already has one" in problem.reason


async def test_cancelling_during_preflight_waits_for_it_and_the_job_still_runs_after(server, tmp_path):
    import threading

    rows = [{"meeting_id": "bad"}, *[{"meeting_id": m, "title": "x"} for m in server.add(3)]]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    loop = asyncio.get_running_loop()
    in_preflight, go_on = asyncio.Event(), threading.Event()
    released = []

    def on_invalid(_err):  # pre-flight's thread: tell the test, wait until the job was cancelled
        loop.call_soon_threadsafe(in_preflight.set)
        released.append(go_on.wait(10))  # False if pre-flight held the event loop

    job = asyncio.ensure_future(run_job(config(tmp_path, server, src, skip_invalid=True), on_invalid=on_invalid))
    await in_preflight.wait()
    job.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert released == [True] and sum(server.api.requests.values()) == 0
    again = await run_job(config(tmp_path, server, src, skip_invalid=True))
    assert again.summary["succeeded"] == 3 and again.summary["failed"] == 1
