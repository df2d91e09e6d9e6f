"""A token shared with another client: after the server says its budget is spent (``r=0``), batcher
takes back only what it started one policy window before, instead of bursting at the server's ``t``.

Bench section 7 (bench/contention.py) found the burst: a fake API enforcing 40/10 of which another
client spent 30%, batcher at ``--rate 40/10``: 49 of 249 requests answered 429.
"""

from __future__ import annotations

from batcher.core.config import RateSpec
from batcher.http.pacer import Pacer, window_span_s

from ..fake_time import FakeTime

POLICY = (40, 10.0)  # Ratelimit-Policy: q=40;w=10


async def burst_until_spent(pacer: Pacer, t: FakeTime, count: int) -> None:
    """``count`` starts at t=0; the answer to the last says: none left, one slot frees in 1 s."""
    for _ in range(count):
        await pacer.acquire()
    assert t.now == 0.0
    t.now = 0.01
    pacer.on_response(200, (0, 1.0), POLICY, ticket=pacer.granted)


async def test_after_r0_the_next_start_waits_for_our_own_starts_to_leave_the_window_not_for_t():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    await burst_until_spent(pacer, t, 28)  # another client holds the other 12
    await pacer.acquire()
    # the server's t=1 frees the other client's oldest slot, which it takes back: a start at 1 s met a 429
    assert t.now >= window_span_s(10.0), f"started at {t.now:.2f} s, before our own starts left the window"


async def test_each_of_our_starts_that_leaves_the_window_gives_one_start_back_and_no_more():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    await burst_until_spent(pacer, t, 28)
    starts = []
    for _ in range(29):
        await pacer.acquire()
        starts.append(t.now)
    first = starts[0]
    assert starts[:28] == [first] * 28, "the 28 slots our burst held come back together"
    assert starts[28] >= first + window_span_s(10.0), "the 29th waits for the next of our starts to expire"


async def test_a_fresh_answer_with_budget_left_replaces_the_count():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    await burst_until_spent(pacer, t, 28)
    t.now = 2.0
    pacer.on_response(200, (3, 1.0), POLICY, ticket=pacer.granted)  # the other client slowed down
    for _ in range(3):
        await pacer.acquire()
    assert t.now == 2.0, "what the server says is left is used at once"


async def test_without_a_policy_the_servers_reset_still_renews_the_budget():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    for _ in range(5):
        await pacer.acquire()
    t.now = 0.01
    pacer.on_response(200, (0, 1.0), None, ticket=pacer.granted)  # Ratelimit without Ratelimit-Policy
    await pacer.acquire()
    assert 1.0 <= t.now < 1.1, "no window known: the server's t is all there is to go by"


async def test_a_start_the_server_had_already_dropped_when_it_said_r0_gives_nothing_back():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    for at in (0.0, 0.01, 0.02, 0.03):
        t.now = at
        await pacer.acquire()
    t.now = 0.035
    pacer.on_response(200, (0, 1.0), POLICY, ticket=pacer.granted)
    await pacer.acquire()  # the start at 0.0 has left the window: one back
    t.now += 0.005
    pacer.on_response(200, (0, 1.0), POLICY, ticket=pacer.granted)  # spent again; 0.01-0.03 already out of it
    refill = t.now
    await pacer.acquire()
    assert t.now >= refill + 9.9, f"started at {t.now:.3f} s on a slot the server had counted free already"


async def test_an_answer_that_overtakes_an_older_requests_does_not_count_that_request_as_seen():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    await pacer.acquire()
    pacer.on_response(200, (2, 1.0), POLICY, ticket=1)  # two left
    await pacer.acquire()  # ticket 2: still on its way to the server
    await pacer.acquire()  # ticket 3 arrives first: the server counts it, not 2, and says one is left
    pacer.on_response(200, (1, 1.0), POLICY, ticket=3)
    await pacer.acquire()
    assert t.now >= 1.0, "the one left was ticket 2's: a fourth start now would be answered 429"
