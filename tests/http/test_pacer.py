"""Pacing on a controlled clock: the window promise, the opening burst, the pause gate, the server's budget."""

from __future__ import annotations

import asyncio

from batcher.core.config import RateSpec
from batcher.http.pacer import Pacer
from batcher.run.engine import run_job

from ..conftest import config, write_jsonl
from ..fake_time import FakeTime, worst_window


async def test_window_limiter_never_exceeds_n_in_any_window_and_opens_with_full_burst():
    t = FakeTime()
    limiter = Pacer(RateSpec(10, 2.0), t.clock, t.sleep)
    starts = []

    async def worker():
        for _ in range(25):
            await limiter.acquire()
            starts.append(t.now)

    await asyncio.gather(*(worker() for _ in range(4)))
    assert len(starts) == 100
    assert worst_window(starts, 2.0) == 10
    assert starts[:10] == [0.0] * 10, "the first N start at once"
    assert max(starts) < 2.0 * 10 + 0.1, "and it wastes no window"


async def test_pause_gate_holds_until_deadline_and_can_be_extended():
    t = FakeTime()
    gate = Pacer(None, t.clock, t.sleep)
    gate.pause_for(300)
    gate.pause_for(10)  # a shorter pause never shortens the lockout
    await gate.acquire()
    assert t.now >= 300


async def test_with_no_rate_of_its_own_batcher_starts_nothing_the_servers_headers_have_no_budget_for(server, tmp_path):
    """Guards the pacer's server budget: with no rate of its own, the Ratelimit headers alone keep every start within the budget."""
    server.api.rate_limit = (10, 1.0)  # the fake then answers with Ratelimit headers, and 429 beyond
    ids = server.add(15)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "h"} for m in ids])
    result = await run_job(config(tmp_path, server, src, rate=None, concurrency=8))
    assert result.exit_code == 0
    assert server.api.statuses.get(429, 0) == 0, "every start after the first answer kept within the server's r"


async def test_a_pacer_counts_the_jobs_earlier_starts_and_honours_its_earlier_pause():
    t = FakeTime()
    t.now = 50.0
    pacer = Pacer(RateSpec(3, 10.0), t.clock, t.sleep)
    wall_now = 5000.0  # the state's times are wall-clock; the pacer's clock is another
    pacer.inherit([4980.0, 4995.0, 4999.0, 4999.0], 0.0, wall_now)  # three in the last 10 s
    await pacer.acquire()
    assert t.now >= 55.0, "the next start waits for the earliest of the three to leave the window (4995 + 10)"
    paused = Pacer(RateSpec(3, 10.0), t.clock, t.sleep)
    before = t.now
    paused.inherit([], wall_now + 40.0, wall_now)  # a Retry-After the earlier run was obeying
    await paused.acquire()
    assert t.now >= before + 40.0
