"""The early stop: an operator mistake (a base URL that finds no meeting, a host that never answers) stops the job early."""

from __future__ import annotations

from batcher.core.earlystop import EARLY_STOP_ROWS
from batcher.run.engine import run_job

from ..conftest import config, write_jsonl
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
