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

``Pacer.acquire`` is the one place a request is let go. Each policy is a
``Gate`` (gate.py): the pause (``Retry-After``, or a server that said ``r=0``),
the server's last word on its budget, the auto rate, the window. The pacer
grants a start only at an instant when every gate agrees, and every gate
counts it in that same instant, so a slot granted before a pause can never be
used after it. The pacer itself holds no policy: the gates, and the FIFO order
of the requests waiting for them.

Time comes from injected ``clock``/``sleep`` so tests control it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable

from ..core.config import RateSpec
from .adaptive import AdaptiveRate, Clock, Sleep
from .budget import Budget, SharedWindow
from .gate import MAX_UNANSWERED, Answer, Gate

__all__ = ["GRACE_S", "Answer", "Gate", "Pacer", "PauseGate", "ServerBudget", "SlidingWindow", "window_span_s"]

# A request is "started" when granted, but reaches the wire a little later:
# the event loop may be busy sending the rest of a burst or reading responses.
# Measured at the server, those few ms can bunch N+1 arrivals into one window,
# so each window is stretched by a small margin (about 1-2% of the rate at
# T = 1 s, 0.2% at Cloudflare's T = 300 s).
GRACE_S = 0.02
GRACE_SHARE = 0.002


def window_span_s(window_s: float) -> float:
    """The window as enforced: ``window_s`` plus the grace margin."""
    return window_s * (1 + GRACE_SHARE) + GRACE_S


class PauseGate:
    """A shared deadline (from ``Retry-After``, or ``r=0``) before which nobody starts."""

    __slots__ = ("_clock", "until")

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock  # for ``pause_for`` and ``remaining_s``, which callers ask between starts
        self.until = 0.0  # deadline on ``clock``; 0 when open (``Pacer.is_free`` reads it)

    def pause_for(self, seconds: float) -> None:
        """Close the gate for ``seconds`` (never shortens an existing pause)."""
        self.until = max(self.until, self._clock() + seconds)

    @property
    def remaining_s(self) -> float:
        """Seconds left in the current pause (0 when open); the progress display and status read it."""
        return self.wait_s(self._clock())

    def wait_s(self, now: float) -> float:
        """Seconds left in the pause at ``now``; a pause that has passed opens the gate."""
        if self.until == 0.0:
            return 0.0
        left = self.until - now
        if left <= 0:
            self.until = 0.0  # open: lets Pacer.is_free skip the clock
            return 0.0
        return left

    def on_start(self, now: float, ticket: int) -> None:
        """Nothing to count: a pause is set from outside (``Pacer.pause_for``)."""

    def on_response(self, answer: Answer) -> None:
        """Nothing to learn: the attempts flow decides which answers pause everyone."""


class SlidingWindow:
    """At most ``max_requests`` starts in any ``window_s`` seconds: a sliding log, in memory."""

    __slots__ = ("_span_s", "_starts", "max_requests", "window_s")

    def __init__(self, max_requests: int, window_s: float) -> None:
        self.max_requests = max_requests  # N of --rate N/T
        self.window_s = window_s  # T of --rate N/T
        self._span_s = window_span_s(window_s)  # T as enforced, with the grace
        self._starts: deque[float] = deque(maxlen=max_requests)  # the last N starts; maxlen drops the oldest

    def wait_s(self, now: float) -> float:
        """0 while fewer than N starts fall in the window, else until the oldest leaves it."""
        if len(self._starts) == self.max_requests:
            return self._starts[0] + self._span_s - now
        return 0.0

    def on_start(self, now: float, ticket: int) -> None:
        """Log the start."""
        self._starts.append(now)

    def on_response(self, answer: Answer) -> None:
        """The window counts starts only."""


class ServerBudget:
    """The server's last word on its budget (``Ratelimit`` / ``X-RateLimit-*``): no start past it.

    It says how many more starts it allows before its reset, counted when it
    answered one request: starts granted since (or still on their way) are not
    in its count, so they are taken off. Under a known policy window
    (``Ratelimit-Policy``) this process's own starts give slots back as they
    leave that window (``_wait_s``). ``r=0`` pauses everyone until the reset.
    """

    __slots__ = (
        "_clock",
        "_left_known_at",
        "_newest",
        "_others_spend",
        "_own_starts",
        "_pause",
        "_reset_at",
        "_said_at",
        "_ticket",
        "_unanswered",
        "_window_s",
        "left",
    )

    def __init__(self, clock: Clock, pause: Callable[[float], None]) -> None:
        self._clock = clock  # answers come between starts: they read the time themselves
        self._pause = pause  # pauses every worker (and process): what ``r=0`` does
        self.left: int | None = None  # more starts it allows before ``_reset_at``; None: it said nothing
        self._reset_at = 0.0  # its reset (``t``), on ``clock``
        self._ticket = -1  # the start whose answer said so: an older answer never overrides it
        self._said_at = 0.0  # when it said so
        self._newest = 0  # the newest ticket granted: starts after an answered one are not in its count
        self._window_s: float | None = None  # its window (Ratelimit-Policy ``w``), once announced
        self._own_starts: deque[float] = deque(maxlen=MAX_UNANSWERED)  # our starts, oldest first
        self._left_known_at = 0.0  # when ``left`` was last known for sure (an answer, our own starts)
        self._others_spend = False  # another client spends the token's budget (auto under a policy)
        self._unanswered: dict[int, float] = {}  # with a policy: ticket -> start, until its answer comes

    def wait_s(self, now: float) -> float:
        """0 while the server's budget (as we count it) has a start left, else until it has one."""
        if self.left == 0 or self._last_slot_is_stale(now):
            return self._wait_s(now)
        return 0.0

    def on_start(self, now: float, ticket: int) -> None:
        """Spend one of the server's budget, and note the start."""
        if self.left is not None:
            self.left -= 1
        self._newest = ticket
        self._note(now, ticket)

    def on_free_start(self, ticket: int) -> None:
        """A start that needed no pacing (the server said nothing): numbered, and noted once a policy
        window makes our own starts matter."""
        self._newest = ticket
        if self._window_s is not None:
            self._note(self._clock(), ticket)

    def _note(self, now: float, ticket: int) -> None:
        self._own_starts.append(now)
        if self._window_s is not None:
            if len(self._unanswered) > MAX_UNANSWERED:
                self._unanswered.clear()
            self._unanswered[ticket] = now

    def on_response(self, answer: Answer) -> None:
        """Take the server's newest word on its budget, corrected for the starts it has not counted."""
        ticket = answer.ticket
        if ticket is not None:
            self._unanswered.pop(ticket, None)
        if answer.ratelimit is None or (ticket is not None and ticket < self._ticket):
            return
        remaining, reset_s = answer.ratelimit
        since = self._newest - ticket + self._older_unanswered(ticket) if ticket is not None else 0
        self.left = max(0, remaining - since)
        self._said_at = self._left_known_at = self._clock()
        self._reset_at = self._said_at + reset_s
        if answer.policy is not None:
            self._window_s = answer.policy[1]
            self._others_spend = self._others_spending(answer.policy[0], remaining, ticket)
        self._ticket = ticket if ticket is not None else self._newest
        if remaining == 0 and reset_s > 0:
            self._pause(reset_s)

    def _last_slot_is_stale(self, now: float) -> bool:
        """Under a known policy, while another client is seen spending the token's budget: the
        server's last free slot (``r=1``), announced longer ago than the grace, may be that client's
        by now. ``--rate auto`` spaces its starts (0.27 s apart at 40/10), so that slot was often
        taken first and the start met a 429, which pauses every worker (bench section 7): wait for
        one of our own starts to leave the window instead. Alone on the budget the slot is ours,
        and waiting for a window would halve auto's rate at a short window (bench section 3)."""
        return (
            self.left == 1 and self._others_spend and self._window_s is not None and now - self._left_known_at > GRACE_S
        )

    def _others_spending(self, quota: int, remaining: int, ticket: int | None) -> bool:
        """The server counted more starts in its window than ours (by more than the two that timing
        can blur): another client of the token is spending the same budget."""
        assert self._window_s is not None
        # starts are appended in time order: a binary search counts those in the window
        ours = len(self._own_starts) - bisect.bisect_right(self._own_starts, self._clock() - self._window_s)
        if ticket is not None:  # ours granted after the answered request: not yet in its count
            ours -= self._newest - ticket
        return quota - remaining - ours > 2

    def _wait_s(self, now: float) -> float:
        """The server said no budget is left: seconds until some is ours again (0: now).

        Its ``t`` often means "until the oldest start in my window expires": one slot, which
        another client of the token takes back at once, so a burst at ``t`` met 429s (bench
        section 7). Under a known policy window, each of our starts that leaves the server's
        window after its last word gives one start back, not before ``t``; a fresh answer
        replaces the count. With no policy, or none of our starts left, the reset rules.
        """
        if now < self._reset_at:  # nothing frees before the server's t, ours or not
            return self._reset_at - now
        if self._window_s is not None:
            # freed for sure once a start is a window and the grace old (it reached the server
            # within the grace); after the server's word only if it was still in its window then
            window_s, span = self._window_s, window_span_s(self._window_s)
            freed = 0
            while self._own_starts and self._own_starts[0] + span <= now:
                if self._own_starts.popleft() + window_s > self._said_at:
                    freed += 1
            if freed:
                self.left = freed
                self._left_known_at = now  # slots our own starts left behind: fresh, and ours
                return 0.0
            if self._own_starts:
                return self._own_starts[0] + span - now
        wait = self._reset_at - now
        if wait <= 0:
            self.left = None  # the server's window has renewed
        return wait

    def _older_unanswered(self, ticket: int) -> int:
        """Starts granted before ``ticket`` still unanswered (within a policy window): answers
        overtake each other on separate connections, so the server may not have counted them."""
        if self._window_s is None:
            return 0
        horizon = self._clock() - window_span_s(self._window_s)  # older ones left its window
        while self._unanswered and next(iter(self._unanswered.values())) < horizon:
            del self._unanswered[next(iter(self._unanswered))]
        return sum(1 for t in self._unanswered if t < ticket)


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
        self.gate = PauseGate(clock)
        self.server = ServerBudget(clock, self.pause_for)
        self.adaptive = AdaptiveRate(rate, clock) if rate and rate.is_auto else None
        self.window = SlidingWindow(rate.max_requests, rate.window_s) if rate and not rate.is_auto else None
        self.budget: Budget | None = None
        self._earlier: SlidingWindow | None = None  # the job's starts before this process (``inherit``)
        self._gates: tuple[Gate, ...] = ()
        self._lock = asyncio.Lock()  # FIFO: waiters are granted in arrival order
        self.granted = 0  # starts so far; a start's number is its ticket
        self.attach_budget(budget)

    def attach_budget(self, budget: Budget | None) -> None:
        """Share the window and pauses through ``budget`` (from now on; ``None`` to stop)."""
        self.budget = budget
        rate = self.rate
        # the shared window replaces this process's own (and, with auto, caps it at the ceiling)
        window: Gate | None = (
            SharedWindow(budget, rate.max_requests, window_span_s(rate.window_s))
            if budget is not None and rate is not None
            else self.window
        )
        # order: the cheap in-memory answers first; the window last (its 0 is the grant, see gate.py)
        gates = (self.gate, self.server, self.adaptive, self._earlier, window)
        self._gates = tuple(g for g in gates if g is not None)

    @property
    def lookback_s(self) -> float:
        """How far back the job's earlier starts matter to this pacer (its window, with the grace)."""
        return window_span_s(self.rate.window_s) if self.rate is not None else 0.0

    def inherit(self, starts: list[float], paused_until: float, wall_now: float) -> None:
        """Count the job's own earlier starts (wall-clock times, from its state) and honour its pause.

        The token's budget file counts the token's starts; a job resumed with another token (a
        401's fix) has an empty file, but Cloudflare counts per user: so this process also keeps
        its rate over the job's earlier starts, in a window of its own beside the shared one.
        """
        offset = self.clock() - wall_now
        if paused_until > wall_now:
            self.gate.pause_for(paused_until - wall_now)
        rate = self.rate
        if not starts or rate is None or rate.is_auto:
            return
        earlier = SlidingWindow(rate.max_requests, rate.window_s)
        for start in sorted(starts)[-rate.max_requests :]:
            earlier.on_start(start + offset, 0)
        self._earlier = earlier
        self.attach_budget(self.budget)

    @property
    def is_free(self) -> bool:
        """True when a request may start right now without waiting or counting."""
        return self.rate is None and self.gate.until == 0.0 and self.server.left is None

    @property
    def held_s(self) -> float:
        """Seconds from now before which nothing starts: this process's pause, or one the token's
        shared budget holds (another process's Retry-After, an earlier run's, the server's reset)."""
        held = self.gate.remaining_s
        if self.budget is not None:
            held = max(held, self.budget.held_until - self.budget.clock())
        return held

    def pause_for(self, seconds: float) -> None:
        """Hold every worker (and, with a budget, every process of the token) for ``seconds``."""
        self.gate.pause_for(seconds)
        if self.budget is not None:
            self.budget.pause_until(self.budget.clock() + seconds)

    def _try_start(self) -> float:
        """In one instant: grant and count a start (0), or say how long to wait."""
        now = self.clock()
        for gate in self._gates:
            if (wait := gate.wait_s(now)) > 0:
                return wait
        self.granted += 1
        for gate in self._gates:
            gate.on_start(now, self.granted)
        return 0.0

    def count_free_start(self) -> int:
        """Count a start that needed no waiting (``is_free``) and return its ticket: with every start
        numbered, a later answer of the server's budget is always corrected for the starts since."""
        self.granted += 1
        self.server.on_free_start(self.granted)
        return self.granted

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
        """Feed one response back to every gate: the server's remaining budget, and the auto rate.

        ``ratelimit`` is ``(remaining, reset_s)`` as the server counted when it
        answered the request with ``ticket``; ``policy`` is ``(quota, window_s)``.
        """
        answer = Answer(status, ratelimit, policy, ticket)
        for gate in self._gates:
            gate.on_response(answer)
