"""Server faults, survived: 5xx storms, drops before/after apply, hangs, truncation, 429s."""

from __future__ import annotations

import sqlite3
from collections import deque

import orjson
import pytest

from batcher.commands.rollback import rollback_job
from batcher.core.config import RateSpec, Secret
from batcher.http.adaptive import AdaptiveRate
from batcher.http.client import Client, error_message
from batcher.http.pacer import Pacer
from batcher.run.engine import run_job
from batcher.state.store import Store

from ..conftest import config, read_jsonl, write_jsonl
from ..fake_time import FakeTime, OverlappingTime, VirtualTime


async def run_one(server, tmp_path, faults, **overrides):
    [mid] = server.add(title="old")
    server.api.faults.extend(faults)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    result = await run_job(config(tmp_path, server, src, **overrides), control=VirtualTime().control())
    return mid, result


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 500, "times": 3},
        {"kind": "status", "status": 502, "body": "<html><h1>502 Bad Gateway</h1></html>", "times": 2},
        {"kind": "status", "status": 503, "retry_after": 2},
        {"kind": "status", "status": 429, "times": 2},
        {"kind": "status", "status": 408},
        {"kind": "drop", "times": 2},
        {"kind": "truncated"},
    ],
    ids=["500 storm", "html 502", "503 retry-after", "429 no retry-after", "408", "drops", "truncated body"],
)
async def test_transient_faults_are_retried_to_success(server, tmp_path, fault):
    mid, result = await run_one(server, tmp_path, [{**fault, "method": "PUT"}])
    assert result.exit_code == 0 and result.summary["succeeded"] == 1
    assert result.summary["retries"] == fault.get("times", 1)
    assert server.doc(mid)["title"] == "new" and server.api.puts[mid] == 1


@pytest.mark.parametrize("mode", ["merge", "replace", "patch"])
async def test_a_write_applied_before_the_connection_dropped_is_not_sent_again(server, tmp_path, mode):
    method = "PATCH" if mode == "patch" else "PUT"
    # Not at the defaults before the write: in replace mode the confirming GET must see the
    # write's own effect (persist_chat back to its default), not a meeting that already matched.
    [mid] = server.add(title="old", persist_chat=True, ai_config={"transcription": {"language": "fr"}})
    server.api.faults.append({"kind": "apply_then_drop", "method": method})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    result = await run_job(config(tmp_path, server, src, mode=mode), control=VirtualTime().control())
    assert result.exit_code == 0 and result.summary["succeeded"] == 1
    assert server.api.requests[method] == 1, "a GET confirmed the write had landed, so it was not repeated"
    assert server.doc(mid)["title"] == "new"
    assert server.doc(mid)["persist_chat"] is (mode != "replace")


@pytest.mark.parametrize("mode", ["replace", "patch"])
async def test_a_write_dropped_before_it_landed_is_sent_again_in_every_mode(server, tmp_path, mode):
    method = "PATCH" if mode == "patch" else "PUT"
    [mid] = server.add(title="old", persist_chat=True)
    server.api.faults.append({"kind": "drop", "method": method})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    result = await run_job(config(tmp_path, server, src, mode=mode), control=VirtualTime().control())
    assert result.exit_code == 0 and server.doc(mid)["title"] == "new"
    assert server.api.requests == {"GET": 1, method: 2}, "write (dropped), GET (not applied), write again"


async def test_a_write_that_did_not_land_is_sent_again_after_the_check(server, tmp_path):
    mid, result = await run_one(server, tmp_path, [{"kind": "drop", "method": "PUT"}])
    assert result.exit_code == 0 and server.api.puts[mid] == 1
    assert server.api.requests == {"GET": 2, "PUT": 2}, "GET, PUT (dropped), GET (not applied), PUT"


async def test_hung_server_times_out_and_is_retried(server, tmp_path):
    mid, result = await run_one(server, tmp_path, [{"kind": "hang", "method": "GET", "seconds": 30}], timeout_s=0.3)
    assert result.exit_code == 0 and result.summary["retries"] == 1
    assert server.doc(mid)["title"] == "new"


async def test_exhausted_retries_fail_the_row_with_the_last_error(server, tmp_path):
    mid, result = await run_one(
        server, tmp_path, [{"kind": "status", "status": 429, "times": 3, "method": "GET"}], max_attempts=3
    )
    assert result.exit_code == 1
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert (entry["error"], entry["status"], entry["attempts"]) == ("rate_limited", 429, 3)
    assert "throttling" in entry["message"] and server.api.puts[mid] == 0


async def test_network_error_after_all_attempts_is_network(server, tmp_path):
    mid, result = await run_one(server, tmp_path, [{"kind": "drop", "times": 2, "method": "GET"}], max_attempts=2)
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert (entry["error"], entry["status"], entry["attempts"]) == ("network", None, 2)
    assert result.exit_code == 1 and server.doc(mid)["title"] == "old"


async def test_200_with_success_false_is_a_failure_not_retried(server, tmp_path):
    mid, result = await run_one(
        server, tmp_path, [{"kind": "status", "status": 200, "success": False, "message": "quota", "method": "PUT"}]
    )
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert (entry["error"], entry["status"], entry["attempts"]) == ("api_error", 200, 2)
    assert result.exit_code == 1 and server.doc(mid)["title"] == "old"
    assert "quota" in entry["message"]


async def test_403_gateway_error_halts(server, tmp_path):
    body = '{"success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": [], "result": null}'
    mid, result = await run_one(
        server, tmp_path, [{"kind": "status", "status": 403, "body": body, "content_type": "application/json"}]
    )
    assert result.exit_code == 3 and "Authentication error (code 10000)" in result.message
    assert server.doc(mid)["title"] == "old"


def test_error_message_reads_all_three_shapes():
    assert (
        error_message(404, b'{"success": false, "error": {"code": 404, "message": "Meeting not found"}}')
        == "Meeting not found"
    )
    assert (
        error_message(429, b'{"success": false, "errors": [{"code": 971, "message": "Please wait"}]}')
        == "Please wait (code 971)"
    )
    assert (
        error_message(502, b"<html><body><h1>Bad gateway</h1></body></html>") == "HTTP 502: non-JSON body: Bad gateway"
    )
    assert error_message(500, b"") == "HTTP 500 with an empty body"


async def test_retry_after_pauses_every_worker_until_the_deadline(server, tmp_path):
    ids = server.add(6)
    server.api.faults.append({"kind": "status", "status": 429, "retry_after": 300})  # the very first request
    t = OverlappingTime()  # concurrent waits overlap, as in real time; none passes while a request is in flight
    arrivals: list[float] = []
    server.api.on_request = lambda _n: arrivals.append(t.now)  # when each request reached the server
    cfg = config(tmp_path, server, "x.jsonl", token=Secret("t"))
    async with Client(cfg.http, Pacer(None, t.clock, t.sleep), t.sleep) as client:
        client._attempt = t.tracked(client._attempt)  # type: ignore[method-assign]
        results: list[bool] = []

        async def worker(mid: str) -> None:  # each worker goes on with more requests after the 429
            for _ in range(3):
                results.append((await client.call("GET", cfg.meeting_url("acct-1", mid))).is_ok)

        await t.run(*(worker(m) for m in ids))
    assert len(results) == 18 and all(results) and len(arrivals) == 19
    assert sum(when < 300 for when in arrivals) <= len(ids), (
        "after the 429, nobody sends during the lockout: only the first wave, already on its way, arrived before 300 s"
    )


@pytest.mark.parametrize("headers", [True, False], ids=["announced by headers", "pure AIMD, no headers"])
async def test_rate_auto_finds_an_unknown_limit_and_finishes_every_row(server, tmp_path, headers):
    server.api.rate_limit = (20, 1.0)  # unknown to the client, which starts at 100/s
    server.api.ratelimit_headers = headers
    ids = server.add(40)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    result = await run_job(config(tmp_path, server, src, mode="replace", rate="auto:100/1", concurrency=8))
    assert result.exit_code == 0 and result.summary["succeeded"] == 40
    requests = sum(server.api.requests.values())
    if headers:  # the server's own count says when its budget is spent: never start past it
        assert server.api.statuses[429] <= requests // 10
    else:  # each 429 pauses everyone and cuts the rate: a few, not a storm (generous, timing-free bound)
        assert server.api.statuses[429] <= requests // 2


def test_aimd_without_headers_settles_under_an_unknown_limit_on_a_fake_clock():
    t = FakeTime()
    rate = AdaptiveRate(RateSpec(100, 1.0, is_auto=True), t.clock)
    limit, window = deque(), 1.0  # the server: 20 per sliding second
    ok = throttled = 0
    while t.now < 120:
        t.now += rate.wait_s(t.now)
        rate.on_start(t.now)
        while limit and t.now - limit[0] >= window:
            limit.popleft()
        if len(limit) >= 20:
            throttled += 1
            rate.on_throttled()
            t.now += 1.0  # Retry-After: 1 pauses everyone
        else:
            limit.append(t.now)
            ok += 1
            rate.on_success(None)
    assert throttled / (ok + throttled) < 0.05, "the saw-tooth hits the limit rarely"
    assert ok / 120 >= 0.6 * 20, "and uses most of it"


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


async def test_rotating_keys_over_a_dropped_put_sends_it_again_instead_of_trusting_get(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": STORED_S3})
    server.api.faults.append({"kind": "drop", "method": "PUT"})  # dropped before it was applied
    row = {"meeting_id": mid, "recording_config": {"storage_config": {"type": "aws", **NEW_S3_KEYS}}}
    src = write_jsonl(tmp_path / "in.jsonl", [row])
    result = await run_job(config(tmp_path, server, src), control=VirtualTime().control())
    assert result.exit_code == 0
    stored = server.doc(mid)["recording_config"]["storage_config"]
    assert (stored["access_key"], stored["secret"]) == ("NEW-AK-CANARY", "NEW-S-CANARY"), "GET cannot see keys"
    assert server.api.requests["PUT"] == 2


async def test_a_secret_write_whose_outcome_stays_unknown_is_failed_unknown_outcome(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": STORED_S3})
    server.api.faults.append({"kind": "apply_then_drop", "method": "PUT", "times": 2})
    row = {"meeting_id": mid, "recording_config": {"storage_config": {"type": "aws", **NEW_S3_KEYS}}}
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


async def test_a_patch_setting_status_that_landed_before_a_drop_is_confirmed_by_get(server, tmp_path):
    """Guards the confirmation of a PATCH: GET shows the meeting's status, so a status write that landed before a drop is confirmed."""
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "status": "INACTIVE"}])
    server.api.faults.extend(
        [
            {"kind": "apply_then_drop", "method": "PATCH", "times": 1},
            {"kind": "status", "status": 502, "method": "PATCH", "times": 5},
        ]
    )
    result = await run_job(config(tmp_path, server, src, mode="patch", app_id="app1", max_attempts=3))
    assert server.api.meta[("acct-1", mid)]["status"] == "INACTIVE"
    assert result.exit_code == 0, "GET shows the status the PATCH set: the row succeeded"
    assert read_jsonl(tmp_path / "failures.jsonl") == []


async def test_a_write_that_timed_out_stays_unknown_though_later_attempts_are_answered_and_get_shows_nothing(
    server, tmp_path
):
    """Guards the unknown outcome: a timed-out write may still land, so quick 503s and a GET showing nothing do not make it certain."""
    from ..fake_time import VirtualTime

    [mid] = server.add(title="orig")
    server.api.faults.extend(
        [
            {"kind": "hang", "seconds": 1.5, "method": "PUT", "times": 1},  # may still land at the origin later
            {"status": 503, "method": "PUT", "times": 5},  # quick answers from the edge prove nothing about it
        ]
    )
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    cfg = config(tmp_path, server, src, timeout_s=0.3, max_attempts=3)
    result = await run_job(cfg, control=VirtualTime().control())
    assert result.exit_code == 1
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "unknown_outcome", entry


def _snapshot(tmp_path) -> tuple[str, int, int]:
    with sqlite3.connect(tmp_path / "job.state.db") as db:
        return db.execute("SELECT write_state, maybe_landed, seq FROM snapshots").fetchone()


async def test_an_unknown_write_stays_unknown_when_no_fresh_read_can_judge_it(server, tmp_path):
    """Guards the unknown outcome: when the read after the wait fails, nothing is re-sent from the read
    made before it (third round), and the write that may have landed stays unknown; rollback restores it."""
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    server.api.faults.extend(
        [
            {"kind": "headers", "headers": {}, "method": "GET", "times": 1},  # the merge GET: normal
            {"kind": "apply_then_drop", "method": "PUT", "times": 1},  # lands, answer lost
            {"kind": "status", "status": 503, "method": "GET", "times": 2},  # the fresh read fails
        ]
    )
    await run_job(config(tmp_path, server, src, max_attempts=2))
    [entry] = read_jsonl(tmp_path / "failures.jsonl")
    assert entry["error"] == "unknown_outcome" and "could not read the meeting again" in entry["message"]
    assert server.api.requests["PUT"] == 1  # not re-sent from the stale read
    assert _snapshot(tmp_path)[0] == "unknown"
    await rollback_job(config(tmp_path, server, src))
    assert server.doc(mid)["title"] == "orig"


async def test_a_timed_out_write_that_a_get_shows_not_landed_stays_unknown(server, tmp_path):
    """Guards the unknown outcome after a timeout: the write may still be queued, so a GET not showing it proves nothing."""
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
    """Guards the unknown outcome when the job halts: a 401 on the read after the wait (which comes before any
    re-send) stops the job and the write stays unknown."""
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    server.api.faults.extend(
        [
            {"kind": "headers", "headers": {}, "method": "GET", "times": 1},
            {"kind": "apply_then_drop", "method": "PUT", "times": 1},
            {"kind": "status", "status": 401, "method": "GET", "times": 1},
        ]
    )
    result = await run_job(config(tmp_path, server, src, max_attempts=2))
    assert result.exit_code == 3
    assert _snapshot(tmp_path)[0] == "unknown"
