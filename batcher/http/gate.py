"""The pacer's one interface: a ``Gate`` says how long a start must wait, and learns from answers.

``Pacer`` (pacer.py) holds a list of gates and the FIFO order of the requests
waiting on them; it knows no policy itself. Each policy is one small object:

    PauseGate     pacer.py    Retry-After pauses (and the server's ``r=0``)
    ServerBudget  pacer.py    the server's own count (``Ratelimit`` / ``X-RateLimit-*``)
    AdaptiveRate  adaptive.py ``--rate auto``: a rate learnt from 429s and headers
    SlidingWindow pacer.py    ``--rate N/T`` in this process
    SharedWindow  budget.py   ``--rate N/T`` for every process of the token (the budget file)

A start is granted at an instant when every gate says 0, and then counted by
every gate at that same instant (``on_start``), so no gate can grant a start
another has not counted. The window comes last: the shared one must check and
count in one transaction of its file, so its 0 already is the grant.

This module is a leaf: adaptive.py and budget.py implement the interface and
pacer.py imports them, so the interface cannot live in pacer.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

Clock = Callable[[], float]  # seconds; monotonic in a process, wall-clock for the shared budget
Sleep = Callable[[float], Awaitable[None]]

# Start times kept for responses still to come (more means attempts that never got one: forgotten).
MAX_UNANSWERED = 10_000


@dataclass(frozen=True, slots=True)
class Answer:
    """What one response said that pacing needs, as plain values."""

    status: int | None  # None: no HTTP answer (a drop, a timeout)
    ratelimit: tuple[int, float] | None  # (remaining, reset_s) from Ratelimit / X-RateLimit-*
    policy: tuple[int, float] | None  # (quota, window_s) from Ratelimit-Policy
    ticket: int | None  # the start (``Pacer.acquire``'s number) this answers; None when unknown


class Gate(Protocol):
    """One pacing policy, asked by the ``Pacer`` before every start."""

    def wait_s(self, now: float) -> float:
        """Seconds until this gate lets one more request start (0 or less: now)."""
        ...

    def on_start(self, now: float, ticket: int) -> None:
        """A start was granted at ``now`` (every gate said 0); ``ticket`` is its number."""
        ...

    def on_response(self, answer: Answer) -> None:
        """An answer came back (for the start ``answer.ticket``)."""
        ...
