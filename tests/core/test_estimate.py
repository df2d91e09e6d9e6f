"""The estimate printed before sending: requests per mode, and the time they take at the rate."""

from __future__ import annotations

import io

from batcher.commands.plan import plan_job
from batcher.core.config import parse_rate
from batcher.core.estimate import estimate, estimate_text
from batcher.report.console import Console
from batcher.run.engine import run_job

from ..conftest import config, write_jsonl

FR = ("ai_config.transcription.language", "fr")


def test_estimate_counts_requests_per_mode_and_time_at_the_rate():
    rate = parse_rate("1200/300")
    assert estimate("merge", 100_000, rate) == (200_000, 50_000.0)
    assert estimate("merge", 10, rate, unchanged=4) == (16, 4.0)
    assert estimate("patch", 10, rate) == (10, 2.5)
    assert estimate("replace", 10, None) == (10, None)
    assert estimate_text("merge", 100_000, rate) == "≈ 200,000 requests: 13 h 53 min at 1200/300"


async def test_run_and_plan_print_the_estimate_before_sending(server, tmp_path):
    ids = server.add(3)
    src = write_jsonl(tmp_path / "ids.jsonl", [{"meeting_id": m} for m in ids])
    stream = io.StringIO()
    cfg = config(tmp_path, server, src, set_values=[FR], rate="1200/300")
    await plan_job(cfg, str(tmp_path / "plan.jsonl"), console=Console(stream))
    assert "3 rows to plan, ≈ 3 requests: 1 s at 1200/300" in stream.getvalue()
    stream = io.StringIO()
    await run_job(cfg, console=Console(stream))
    assert "3 rows to send, ≈ 6 requests: 2 s at 1200/300" in stream.getvalue()
