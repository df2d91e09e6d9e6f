"""The server's last free slot, announced a while ago, while another client spends the same budget.

Bench section 7 found it: at ``--rate auto`` (starts spaced 0.27 s apart at 40/10) the answer saying
``r=1`` was that old when batcher used it, the other client had taken the slot, and the start met a
429 (which pauses every worker). Alone on the budget, the last slot is batcher's: no wait.
"""

from __future__ import annotations

from batcher.core.config import RateSpec
from batcher.http.pacer import GRACE_S, Pacer, window_span_s

from ..fake_time import FakeTime

POLICY = (40, 10.0)


async def spend(pacer: Pacer, t: FakeTime, ours: int, remaining: int) -> None:
    """``ours`` starts at t=0, then the answer to the last: ``remaining`` left in the server's window."""
    for _ in range(ours):
        await pacer.acquire()
    t.now = 0.01
    pacer.on_response(200, (remaining, 10.0), POLICY, ticket=pacer.granted)


async def test_a_stale_last_slot_is_not_used_while_another_client_spends_the_budget():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    await spend(pacer, t, ours=27, remaining=1)  # the server counted 39: 12 are another client's
    t.now = 0.01 + 10 * GRACE_S  # the answer is old news by the time the next start may go
    await pacer.acquire()
    assert t.now >= window_span_s(10.0), f"started at {t.now:.2f} s on a slot another client may hold"


async def test_a_fresh_last_slot_is_used_at_once():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    await spend(pacer, t, ours=27, remaining=1)
    await pacer.acquire()
    assert t.now == 0.01


async def test_alone_on_the_budget_the_last_slot_is_ours_however_old_the_answer():
    t = FakeTime()
    pacer = Pacer(RateSpec(40, 10.0), t.clock, t.sleep)
    await spend(pacer, t, ours=39, remaining=1)  # every start the server counted is ours
    t.now = 0.01 + 10 * GRACE_S
    await pacer.acquire()
    assert t.now == 0.01 + 10 * GRACE_S
