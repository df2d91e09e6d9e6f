"""Request pacing: the window promise, the adaptive rate, pauses, the server's own budget.

``--rate N/T`` promises that *in any window of T seconds at most N requests
start*. A leaky bucket (aiolimiter's ``AsyncLimiter(N, T)``) cannot keep that
promise: it starts empty, so it admits a burst of N and then N more as it
drains during the first window - 2N in T. Shrinking the bucket until the
promise holds (capacity c, leak (N-c)/T) costs the opening burst, and with it
up to half the allowed requests on a short job. So the hard limit is a sliding
log instead: remember the start times of the last N requests; the next may
start once the oldest of them is T old. That is exact (never N+1 in a window)
and wastes nothing (N at once, then one per expiry). With a ``Budget`` (see
budget.py) the log is shared by every process using the token.

``--rate auto`` is different: there is no promise to keep, only a server limit
to discover (``adaptive.AdaptiveRate``).

``Pacer.acquire`` is the one place a request is let go, and it grants a start
only at an instant when everything agrees: no pause (``Retry-After``, or a
server that said ``r=0``), budget left on the server's last word, room in the
window. The start is counted in that same instant, so a slot granted before a
pause can never be used after it.

Time comes from injected ``clock``/``sleep`` so tests control it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque

from ..core.config import RateSpec
from .adaptive import AdaptiveRate, Clock, Sleep
from .budget import Budget

# A request is "started" when granted, but reaches the wire a little later:
# the event loop may be busy sending the rest of a burst or reading responses.
# Measured at the server, those few ms can bunch N+1 arrivals into one window,
# so each window is stretched by a small margin (about 1-2% of the rate at
# T = 1 s, 0.2% at Cloudflare's T = 300 s).
GRACE_S = 0.02
GRACE_SHARE = 0.002
# Start times kept for responses still to come (more means attempts that never got one: forgotten).
_MAX_UNANSWERED = 10_000


def window_span_s(window_s: float) -> float:
    """The window as enforced: ``window_s`` plus the grace margin."""
    return window_s * (1 + GRACE_SHARE) + GRACE_S


class WindowLimiter:
    """At most ``max_requests`` grants in any ``window_s`` seconds (sliding log, in memory)."""

    def __init__(self, max_requests: int, window_s: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.max_requests = max_requests
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque(maxlen=max_requests)
        self._span_s = window_span_s(window_s)
        self._lock = asyncio.Lock()  # FIFO: waiters are granted in arrival order

    def try_start(self) -> float:
        """Count one start now and return 0, or return the seconds until one may start."""
        now = self._clock()
        if len(self._starts) == self.max_requests:
            wait = self._starts[0] + self._span_s - now
            if wait > 0:
                return wait
        self._starts.append(now)  # maxlen drops the oldest
        return 0.0

    async def acquire(self) -> None:
        """Wait until one more request may start, and count it."""
        async with self._lock:
            while (wait := self.try_start()) > 0:
                await self._sleep(wait)


class PauseGate:
    """A shared deadline (from ``Retry-After``) before which nobody starts."""

    def __init__(self, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self._clock = clock
        self._sleep = sleep
        self.until = 0.0  # deadline on ``clock``; 0 when open

    def pause_for(self, seconds: float) -> None:
        """Close the gate for ``seconds`` (never shortens an existing pause)."""
        self.until = max(self.until, self._clock() + seconds)

    @property
    def remaining_s(self) -> float:
        """Seconds left in the current pause (0 when open)."""
        if self.until == 0.0:
            return 0.0
        left = self.until - self._clock()
        if left <= 0:
            self.until = 0.0  # open: lets Pacer.is_free skip the clock
            return 0.0
        return left

    async def wait(self) -> None:
        """Return once the gate is open; re-checks, since a pause can be extended."""
        while (left := self.remaining_s) > 0:
            await self._sleep(left)


class Pacer:
    """What every HTTP attempt awaits first; see the module docstring.

    ``budget`` (or ``attach_budget`` later) shares the window and the pauses
    with every process that uses the same token.
    """

    def __init__(
        self,
        rate: RateSpec | None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        *,
        budget: Budget | None = None,
    ):
        self.rate = rate
        self.clock = clock
        self._sleep = sleep
        self.gate = PauseGate(clock, sleep)
        self.window = (
            WindowLimiter(rate.max_requests, rate.window_s, clock, sleep) if rate and not rate.is_auto else None
        )
        self.adaptive = AdaptiveRate(rate, clock, sleep=sleep) if rate and rate.is_auto else None
        self.budget: Budget | None = None
        self._span_s = window_span_s(rate.window_s) if rate else 0.0
        self._lock = asyncio.Lock()  # FIFO: waiters are granted in arrival order
        self.granted = 0  # starts so far; a start's number is its ticket
        # The server's last word on its budget (Ratelimit / X-RateLimit-*): how many
        # more starts it allows before ``_server_reset_at``; None when it said nothing.
        self._server_left: int | None = None
        self._server_reset_at = 0.0
        self._server_ticket = -1  # the start whose response said so
        self._server_said_at = 0.0  # when it said so (clock)
        # The server's window (Ratelimit-Policy ``w``) and this process's starts within it: see _server_wait_s.
        self._policy_window_s: float | None = None
        self._own_starts: deque[float] = deque(maxlen=_MAX_UNANSWERED)
        self._left_known_at = 0.0  # when _server_left was last known for sure (an answer, our own starts)
        self._others_spend = False  # another client spends the token's budget (auto under a policy)
        self._unanswered: dict[int, float] = {}  # with a policy: ticket -> start, until its answer comes
        # With a budget: the wall-clock start of each ticket still waiting for its response, so
        # the server's word can be written to the shared file with the starts it has not counted.
        self._started_at: dict[int, float] = {}
        if budget is not None:
            self.attach_budget(budget)

    def attach_budget(self, budget: Budget | None) -> None:
        """Share the window and pauses through ``budget`` (from now on; ``None`` to stop)."""
        self.budget = budget

    @property
    def is_free(self) -> bool:
        """True when a request may start right now without waiting or counting."""
        return self.rate is None and self.gate.until == 0.0 and self._server_left is None

    def pause_for(self, seconds: float) -> None:
        """Hold every worker (and, with a budget, every process of the token) for ``seconds``."""
        self.gate.pause_for(seconds)
        if self.budget is not None:
            self.budget.pause_until(self.budget.clock() + seconds)

    def _try_start(self) -> float:
        """In one instant: grant and count a start (0), or say how long to wait."""
        wait = self.gate.remaining_s
        if wait > 0:
            return wait
        if (self._server_left == 0 or self._last_slot_is_stale()) and (wait := self._server_wait_s()) > 0:
            return wait
        if self.adaptive is not None and (wait := self.adaptive.wait_s()) > 0:
            return wait
        is_shared = self.budget is not None and self.rate is not None
        if is_shared:
            # the window, the pauses and the server's remaining budget of every process of the token
            wait = self.budget.try_start(self.rate.max_requests, self._span_s)  # type: ignore[union-attr]
        elif self.window is not None:
            wait = self.window.try_start()
        if wait > 0:
            return wait
        if self.adaptive is not None:
            self.adaptive.record_start()
        if self._server_left is not None:
            self._server_left -= 1
        self.granted += 1
        self._note_start(self.clock())
        if is_shared:
            if len(self._started_at) > _MAX_UNANSWERED:  # attempts that never got a response
                self._started_at.clear()
            self._started_at[self.granted] = self.budget.last_start  # type: ignore[union-attr]
        return 0.0

    def _last_slot_is_stale(self) -> bool:
        """Under a known policy, while another client is seen spending the token's budget: the
        server's last free slot (``r=1``), announced longer ago than the grace, may be that client's
        by now. ``--rate auto`` spaces its starts (0.27 s apart at 40/10), so that slot was often
        taken first and the start met a 429, which pauses every worker (bench section 7): wait for
        one of our own starts to leave the window instead. Alone on the budget the slot is ours,
        and waiting for a window would halve auto's rate at a short window (bench section 3)."""
        return (
            self._server_left == 1
            and self._others_spend
            and self._policy_window_s is not None
            and self.clock() - self._left_known_at > GRACE_S
        )

    def _others_spending(self, quota: int, remaining: int, ticket: int | None) -> bool:
        """The server counted more starts in its window than ours (by more than the two that timing
        can blur): another client of the token is spending the same budget."""
        assert self._policy_window_s is not None
        # starts are appended in time order: a binary search counts those in the window
        ours = len(self._own_starts) - bisect.bisect_right(self._own_starts, self.clock() - self._policy_window_s)
        if ticket is not None:  # ours granted after the answered request: not yet in its count
            ours -= self.granted - ticket
        return quota - remaining - ours > 2

    def _server_wait_s(self) -> float:
        """The server said no budget is left: seconds until some is ours again (0: now).

        Its ``t`` often means "until the oldest start in my window expires": one slot, which
        another client of the token takes back at once, so a burst at ``t`` met 429s (bench
        section 7). Under a known policy window, each of our starts that leaves the server's
        window after its last word gives one start back, not before ``t``; a fresh answer
        replaces the count. With no policy, or none of our starts left, the reset rules.
        """
        now = self.clock()
        if now < self._server_reset_at:  # nothing frees before the server's t, ours or not
            return self._server_reset_at - now
        if self._policy_window_s is not None:
            # freed for sure once a start is a window and the grace old (it reached the server
            # within the grace); after the server's word only if it was still in its window then
            window_s, span = self._policy_window_s, window_span_s(self._policy_window_s)
            freed = 0
            while self._own_starts and self._own_starts[0] + span <= now:
                if self._own_starts.popleft() + window_s > self._server_said_at:
                    freed += 1
            if freed:
                self._server_left = freed
                self._left_known_at = now  # slots our own starts left behind: fresh, and ours
                return 0.0
            if self._own_starts:
                return self._own_starts[0] + span - now
        wait = self._server_reset_at - now
        if wait <= 0:
            self._server_left = None  # the server's window has renewed
        return wait

    def count_free_start(self) -> int:
        """Count a start that needed no waiting (``is_free``) and return its ticket: with every start
        numbered, a later answer of the server's budget is always corrected for the starts since."""
        self.granted += 1
        if self._policy_window_s is not None:
            self._note_start(self.clock())
        return self.granted

    def _note_start(self, now: float) -> None:
        self._own_starts.append(now)
        if self._policy_window_s is not None:
            if len(self._unanswered) > _MAX_UNANSWERED:
                self._unanswered.clear()
            self._unanswered[self.granted] = now

    def _older_unanswered(self, ticket: int) -> int:
        """Starts granted before ``ticket`` still unanswered (within a policy window): answers
        overtake each other on separate connections, so the server may not have counted them."""
        if self._policy_window_s is None:
            return 0
        horizon = self.clock() - window_span_s(self._policy_window_s)  # older ones left its window
        while self._unanswered and next(iter(self._unanswered.values())) < horizon:
            del self._unanswered[next(iter(self._unanswered))]
        return sum(1 for t in self._unanswered if t < ticket)

    async def acquire(self) -> int:
        """Wait until one request may start, count it, and return its ticket (for ``on_response``)."""
        async with self._lock:
            while (wait := self._try_start()) > 0:
                await self._sleep(wait)
            return self.granted

    def on_response(
        self,
        status: int | None,
        ratelimit: tuple[int, float] | None,
        policy: tuple[int, float] | None = None,
        ticket: int | None = None,
    ) -> None:
        """Feed one response back: the server's remaining budget, and the auto rate.

        ``ratelimit`` is ``(remaining, reset_s)`` as the server counted when it
        answered the request with ``ticket``; starts granted since then are
        not in its count, so they are taken off. ``r=0`` pauses every worker
        (and every process of the token) until the reset.
        """
        started_at = self._started_at.pop(ticket, None) if ticket is not None else None
        if ticket is not None:
            self._unanswered.pop(ticket, None)
        if ratelimit is not None and self.budget is not None and started_at is not None:
            self.budget.note_server(ratelimit[0], ratelimit[1], started_at)  # shared with the token's other processes
        if ratelimit is not None and (ticket is None or ticket >= self._server_ticket):
            remaining, reset_s = ratelimit
            since = self.granted - ticket + self._older_unanswered(ticket) if ticket is not None else 0
            self._server_left = max(0, remaining - since)
            self._server_said_at = self._left_known_at = self.clock()
            self._server_reset_at = self._server_said_at + reset_s
            if policy is not None:
                self._policy_window_s = policy[1]
                self._others_spend = self._others_spending(policy[0], remaining, ticket)
            self._server_ticket = ticket if ticket is not None else self.granted
            if remaining == 0 and reset_s > 0:
                self.pause_for(reset_s)
        if self.adaptive is not None:
            if policy is not None:
                self.adaptive.on_policy(*policy)
            if status == 429:
                self.adaptive.on_throttled()
            elif status is not None and status < 400:
                self.adaptive.on_success(ratelimit)
