"""Pacing on a controlled clock: the window promise, the opening burst, the pause gate."""

from __future__ import annotations

import asyncio

from batcher.core.config import RateSpec, parse_rate
from batcher.http.adaptive import AdaptiveRate
from batcher.http.pacer import PauseGate, WindowLimiter

from ..fake_time import FakeTime, worst_window


async def test_window_limiter_never_exceeds_n_in_any_window_and_opens_with_full_burst():
    t = FakeTime()
    limiter = WindowLimiter(10, 2.0, t.clock, t.sleep)
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
    gate = PauseGate(t.clock, t.sleep)
    gate.pause_for(300)
    gate.pause_for(10)  # a shorter pause never shortens the lockout
    await gate.wait()
    assert t.now >= 300


def test_adaptive_rate_cuts_on_429_once_per_cooldown_and_climbs_back():
    t = FakeTime()
    rate = AdaptiveRate(RateSpec(100, 1.0, is_auto=True), t.clock)
    rate.on_throttled()
    rate.on_throttled()  # same news from a request already in flight: no second cut
    assert rate.rate_per_s == 85
    t.now += 1
    rate.on_success()
    assert abs(rate.rate_per_s - 95) < 1e-9, "additive: fast back toward the rate that hit the limit"
    t.now += 5
    rate.on_success()
    assert abs(rate.rate_per_s - 96) < 1e-9, "then slowly (0.2% of it a second) to probe above"


def test_adaptive_rate_eases_off_before_the_budget_runs_out():
    t = FakeTime()
    rate = AdaptiveRate(RateSpec(100, 1.0, is_auto=True), t.clock)
    rate.on_success((50, 1.0))
    assert rate.rate_per_s == 100
    rate.on_success((3, 1.0))
    assert rate.rate_per_s == 90


def test_adaptive_rate_takes_an_announced_policy_as_its_ceiling():
    rate = AdaptiveRate(RateSpec(100, 1.0, is_auto=True), FakeTime().clock)
    rate.on_policy(1200, 300.0)
    assert rate.rate_per_s == rate.ceiling_per_s == 0.98 * 4.0


def test_parse_rate():
    assert parse_rate("1200/300") == RateSpec(1200, 300.0)
    assert parse_rate("5/0.5") == RateSpec(5, 0.5)
    assert parse_rate("none") is None
    assert parse_rate("auto").is_auto
