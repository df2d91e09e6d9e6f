"""--rate auto without headers: learn the limit from the first 429 (fake clock, simulated server)."""

from __future__ import annotations

from collections import deque

from batcher.core.config import RateSpec
from batcher.http.adaptive import AdaptiveRate

from ..fake_time import FakeTime


def drive(limit: int, seconds: float, start_per_s: int = 100) -> tuple[float, int, int]:
    """AdaptiveRate against a server allowing ``limit`` starts per sliding second, each 429 with Retry-After: 1.

    Returns (share of the limit used, successes, 429s).
    """
    t = FakeTime()
    rate = AdaptiveRate(RateSpec(start_per_s, 1.0, is_auto=True), t.clock)
    window: deque[float] = deque()
    ok = throttled = 0
    while t.now < seconds:
        t.now += rate.wait_s(t.now)
        rate.on_start(t.now)
        while window and t.now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= limit:
            throttled += 1
            rate.on_throttled()
            t.now += 1.0  # the Retry-After pause of every worker
        else:
            window.append(t.now)
            ok += 1
            rate.on_success(None)
    return ok / seconds / limit, ok, throttled


def test_the_first_429_teaches_the_limit_instead_of_a_cut_of_fifteen_percent():
    t = FakeTime()
    rate = AdaptiveRate(RateSpec(100, 1.0, is_auto=True), t.clock)
    for _ in range(30):  # the server let 30 through in the opening burst ...
        t.now += 0.01
        rate.on_success()
    rate.on_throttled()  # ... then said 429
    assert 25 <= rate.rate_per_s <= 30, "back to just under what got through, not to 85"


def test_a_short_job_started_far_above_an_unknown_limit_settles_under_it_at_once():
    share, _ok, throttled = drive(limit=30, seconds=30)
    assert throttled <= 3, "a few 429s, not a saw-tooth of them (the halving AIMD: 20)"
    assert share >= 0.9, "and at least 90% of the limit used (the halving AIMD: 69%)"


def test_a_long_job_probes_upward_slowly_and_rarely_hits_the_limit():
    for limit in (7, 20, 30):
        share, ok, throttled = drive(limit=limit, seconds=300)
        assert throttled / (ok + throttled) < 0.005, limit
        assert share >= 0.8, limit


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
