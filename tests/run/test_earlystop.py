"""Operator mistakes stop early; the job's request counters survive kill -9."""

from __future__ import annotations

import json

from batcher.core.earlystop import EARLY_STOP_ROWS
from batcher.run.engine import run_job

from ..conftest import config, kill_at, run_cli, write_jsonl
from ..fake_time import VirtualTime

MISSING = "11111111-2222-4333-8444-{:012d}"


async def test_a_base_url_that_finds_no_meeting_stops_early_naming_it(server, tmp_path):
    ids = server.add(60)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    cfg = config(tmp_path, server, src, base_url=server.base_url + "/v4", concurrency=2)  # no /client/v4 route
    result = await run_job(cfg)
    assert result.exit_code == 3 and "/client/v4" in result.message and "--base-url" in result.message
    assert result.summary["failed"] <= EARLY_STOP_ROWS + 2 and result.summary["skipped"] >= 60 - EARLY_STOP_ROWS - 2


async def test_a_host_that_never_answers_stops_early(tmp_path):
    rows = [{"meeting_id": MISSING.format(i), "title": "x"} for i in range(40)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = config(tmp_path, None, src, max_attempts=2, concurrency=2)  # 127.0.0.1:9: connection refused
    result = await run_job(cfg, control=VirtualTime().control())
    assert result.exit_code == 3 and "network" in result.message
    assert result.summary["skipped"] >= 40 - EARLY_STOP_ROWS - 2


async def test_some_not_found_among_successes_do_not_stop_the_job(server, tmp_path):
    ids = server.add(20)
    rows = [{"meeting_id": MISSING.format(i), "title": "x"} for i in range(10)]
    rows += [{"meeting_id": m, "title": "x"} for m in ids]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    result = await run_job(config(tmp_path, server, src, concurrency=1))
    assert result.exit_code == 1 and result.summary["failed"] == 10 and result.summary["succeeded"] == 20


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
