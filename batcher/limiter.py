"""Request pacing: a hard window limit, an adaptive (AIMD) rate, and the pause gate.

``--rate N/T`` promises that *in any window of T seconds at most N requests
start*. A leaky bucket (aiolimiter's ``AsyncLimiter(N, T)``) cannot keep that
promise: it starts empty, so it admits a burst of N and then N more as it
drains during the first window - 2N in T. Shrinking the bucket until the
promise holds (capacity c, leak (N-c)/T) costs the opening burst, and with it
up to half the allowed requests on a short job. So the hard limit is a sliding
log instead: remember the start times of the last N requests; the next may
start once the oldest of them is T old. That is exact (never N+1 in a window)
and wastes nothing (N at once, then one per expiry).

``--rate auto`` is different: there is no promise to keep, only a server limit
to discover. There a leaky bucket is the right tool, and aiolimiter provides
it; ``AdaptiveRate`` moves its rate by AIMD on 429s and ``Ratelimit`` headers.

``PauseGate`` is the one place a ``Retry-After`` pauses *every* worker: a 429
with ``Retry-After: 300`` means the token is locked out, and a worker that
kept sending would only extend the lockout.

Time comes from injected ``clock``/``sleep`` so tests control it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter

from .config import RateSpec

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A request is "started" when granted, but reaches the wire a little later:
# the event loop may be busy sending the rest of a burst or reading responses.
# Measured at the server, those few ms can bunch N+1 arrivals into one window,
# so each window is stretched by a small margin (about 1-2% of the rate at
# T = 1 s, 0.2% at Cloudflare's T = 300 s).
GRACE_S = 0.02
GRACE_SHARE = 0.002


class WindowLimiter:
    """At most ``max_requests`` grants in any ``window_s`` seconds (sliding log)."""

    def __init__(self, max_requests: int, window_s: float, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.max_requests = max_requests
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque(maxlen=max_requests)
        self._span_s = window_s * (1 + GRACE_SHARE) + GRACE_S
        self._lock = asyncio.Lock()  # FIFO: waiters are granted in arrival order

    async def acquire(self) -> None:
        """Wait until one more request may start, and count it."""
        async with self._lock:
            if len(self._starts) == self.max_requests:
                wait = self._starts[0] + self._span_s - self._clock()
                if wait > 0:
                    await self._sleep(wait)
            self._starts.append(self._clock())  # maxlen drops the oldest


class PauseGate:
    """Holds every worker until a shared deadline (from ``Retry-After``)."""

    def __init__(self, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self._clock = clock
        self._sleep = sleep
        self.until = 0.0  # monotonic deadline; 0 when open

    def pause_for(self, seconds: float) -> None:
        """Close the gate for ``seconds`` (never shortens an existing pause)."""
        self.until = max(self.until, self._clock() + seconds)

    @property
    def remaining_s(self) -> float:
        """Seconds left in the current pause (0 when open)."""
        return max(0.0, self.until - self._clock())

    async def wait(self) -> None:
        """Return once the gate is open; re-checks, since a pause can be extended."""
        while (left := self.until - self._clock()) > 0:
            await self._sleep(left)
        self.until = 0.0  # open: lets Pacer.is_free skip the clock


class AdaptiveRate:
    """AIMD pacing for ``--rate auto``: find an unknown server limit and stay just under it.

    - A ``Ratelimit-Policy`` header (``q`` requests per ``w`` seconds) names the
      limit outright: the ceiling drops to 98% of it (arrival jitter would
      otherwise push a window over).
    - Multiplicative decrease: a 429 cuts the rate to 85% and remembers the
      rate that hit it; a ``Ratelimit`` header showing the budget nearly spent
      (``r`` at most a tenth of the most ever seen) cuts to 90%, *before* a
      429 (only while no policy is known: with one, r near 0 is the aim). At most one cut per ``cooldown_s``: requests already in flight
      report the same news.
    - Additive increase: between cuts the rate climbs by a fixed step per
      second: fast (10% of the remembered rate) up to 95% of it, then slowly
      (0.5%) to probe above; 3% of the current rate while nothing is known.
    """

    def __init__(self, ceiling: RateSpec, clock: Clock = time.monotonic, cooldown_s: float = 1.0):
        self.ceiling_per_s = ceiling.max_requests / ceiling.window_s
        self.rate_per_s = self.ceiling_per_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._last_cut = -1e9
        self._last_step = clock()
        self._hit_at: float | None = None  # the rate at which the last 429 came
        self._most_remaining = 0
        self._has_policy = False
        self._bucket = AsyncLimiter(1, 1 / self.rate_per_s)

    def _apply(self) -> None:
        # aiolimiter reads these on every acquire; capacity 1 keeps it smooth
        self._bucket.time_period = 1 / self.rate_per_s
        self._bucket._rate_per_sec = self.rate_per_s

    async def acquire(self) -> None:
        """Wait for the current rate to allow one more request."""
        await self._bucket.acquire()

    def _cut(self, factor: float) -> None:
        now = self._clock()
        if now - self._last_cut >= self._cooldown_s:
            self._last_cut = self._last_step = now
            self.rate_per_s = max(0.1, self.rate_per_s * factor)
            self._apply()

    def _step(self) -> float:
        known = self._hit_at
        if known is None:
            return max(0.1, 0.03 * self.rate_per_s)
        return 0.1 * known if self.rate_per_s < 0.95 * known else max(0.02, 0.005 * known)

    def on_throttled(self) -> None:
        """A 429: remember the rate that hit the limit, back off multiplicatively."""
        if self._clock() - self._last_cut >= self._cooldown_s:
            self._hit_at = self.rate_per_s
        self._cut(0.85)

    def on_policy(self, quota: int, window_s: float) -> None:
        """The server announced its limit: never aim above (98% of) it."""
        limit = 0.98 * quota / window_s
        self._has_policy = True
        if limit < self.ceiling_per_s:
            self.ceiling_per_s = limit
            self.rate_per_s = min(self.rate_per_s, limit)
            self._apply()

    def on_success(self, ratelimit: tuple[int, float] | None = None) -> None:
        """A success: ease off if the budget is nearly spent, else climb additively."""
        if ratelimit is not None and not self._has_policy:  # with a policy, running near r=0 is the aim
            remaining = ratelimit[0]
            self._most_remaining = max(self._most_remaining, remaining)
            if remaining <= max(1, self._most_remaining // 10):
                self._cut(0.9)
                return
        now = self._clock()
        if self.rate_per_s < self.ceiling_per_s:
            self.rate_per_s = min(self.ceiling_per_s, self.rate_per_s + self._step() * (now - self._last_step))
            self._apply()
        self._last_step = now


class Pacer:
    """What every HTTP attempt awaits first: the pause gate, then the rate."""

    def __init__(self, rate: RateSpec | None, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep):
        self.gate = PauseGate(clock, sleep)
        self.window = (
            WindowLimiter(rate.max_requests, rate.window_s, clock, sleep) if rate and not rate.is_auto else None
        )
        self.adaptive = AdaptiveRate(rate, clock) if rate and rate.is_auto else None

    @property
    def is_free(self) -> bool:
        """True when a request may start right now without waiting (no rate, gate open)."""
        return self.window is None and self.adaptive is None and self.gate.until == 0.0

    async def acquire(self) -> None:
        """Wait until one request may start."""
        await self.gate.wait()
        if self.window is not None:
            await self.window.acquire()
        elif self.adaptive is not None:
            await self.adaptive.acquire()
        await self.gate.wait()  # a Retry-After may have arrived while queued

    def on_response(
        self,
        status: int | None,
        retry_after_s: float | None,
        ratelimit: tuple[int, float] | None,
        policy: tuple[int, float] | None = None,
    ) -> None:
        """Feed one outcome back: pauses everyone on Retry-After, adapts the auto rate."""
        if retry_after_s is not None and status in (429, 503):
            self.gate.pause_for(retry_after_s)
        if self.adaptive is not None:
            if policy is not None:
                self.adaptive.on_policy(*policy)
            if status == 429:
                self.adaptive.on_throttled()
            elif status is not None and status < 400:
                self.adaptive.on_success(ratelimit)
