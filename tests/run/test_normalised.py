"""The run's summary of normalised values: a write answered 2xx whose answer holds another value than
the one sent, at a path the row set, stays ``succeeded``; the summary counts such rows by path with
one example (sent, held), and the results lines name the paths (the fake's ``trims_titles``)."""

from __future__ import annotations

from typing import Any

import pytest

from batcher.fake.server import FakeApi, start
from batcher.run.engine import run_job

from ..conftest import Server, config, read_jsonl, write_jsonl


@pytest.fixture
async def trimming() -> Any:
    api = FakeApi(seed=1, trims_titles=True)
    runner, port = await start(api)
    try:
        yield Server(api, port)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("mode", ["merge", "patch", "replace"])
async def test_a_normalised_value_is_succeeded_and_counted_by_path_with_one_example(trimming, tmp_path, mode):
    ids = trimming.add(5, title="old")
    rows = [
        {"meeting_id": m, "title": "  new  " if i < 3 else "plain", "persist_chat": True} for i, m in enumerate(ids)
    ]
    cfg = config(tmp_path, trimming, write_jsonl(tmp_path / "in.jsonl", rows), mode=mode)
    result = await run_job(cfg)
    assert result.exit_code == 0 and result.summary["succeeded"] == 5
    assert result.summary["normalised"] == {"title": {"rows": 3, "example": {"sent": "  new  ", "held": "new"}}}
    assert 'normalised title: 3 succeeded rows hold another value than sent - e.g. sent "  new  "' in result.message


async def test_the_results_lines_name_the_normalised_paths(trimming, tmp_path):
    ids = trimming.add(2, title="old")
    rows = [{"meeting_id": ids[0], "title": " a "}, {"meeting_id": ids[1], "title": "b"}]
    cfg = config(tmp_path, trimming, write_jsonl(tmp_path / "in.jsonl", rows), results_path=str(tmp_path / "r.jsonl"))
    await run_job(cfg)
    lines = {line["meeting_id"]: line for line in read_jsonl(tmp_path / "r.jsonl")}
    assert lines[ids[0]]["normalised"] == ["title"] and lines[ids[0]]["outcome"] == "succeeded"
    assert "normalised" not in lines[ids[1]]


async def test_the_tally_covers_the_whole_job_across_its_runs(trimming, tmp_path):
    ids = trimming.add(4, title="old")
    rows = [{"meeting_id": m, "title": " t "} for m in ids]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    trimming.api.faults.append({"kind": "status", "status": 422, "method": "PUT", "times": 2})
    first = await run_job(config(tmp_path, trimming, src, concurrency=1))
    assert first.summary["failed"] == 2 and first.summary["normalised"]["title"]["rows"] == 2
    rest = await run_job(config(tmp_path, trimming, src, retry_failed=True))
    assert rest.summary["succeeded"] == 4 and rest.summary["normalised"]["title"]["rows"] == 4


async def test_the_canary_counts_a_normalised_value_as_a_difference(trimming, tmp_path):
    """The canary asks for exactly the document with the row's patch applied: a trimmed title stops it."""
    ids = trimming.add(4, title="old")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": " t "} for m in ids])
    result = await run_job(config(tmp_path, trimming, src, canary=1, concurrency=1))
    assert result.exit_code == 3 and 'title: sent " t ", the server holds "t"' in result.message


async def test_a_server_that_stores_what_was_sent_leaves_the_tally_empty(server, tmp_path):
    ids = server.add(3, title="old")
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": " x "} for m in ids]))
    result = await run_job(cfg)
    assert "normalised" not in result.summary and "normalised" not in result.message


async def test_the_html_report_lists_the_normalised_paths(trimming, tmp_path):
    from batcher.report.html import write_html_report

    ids = trimming.add(2, title="old")
    cfg = config(
        tmp_path, trimming, write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": " t "} for m in ids])
    )
    await run_job(cfg)
    write_html_report(cfg.state_file, str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert "Normalised values" in page and "&quot; t &quot;" in page
