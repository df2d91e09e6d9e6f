"""Pure retry policy: what a status or exception means, and how long to wait.

    classify(status)       -> Verdict.OK | RETRY | FAIL | FATAL
    backoff_s(attempt)     -> seconds, exponential with full jitter
    parse_retry_after(v)   -> seconds or None (delta-seconds or HTTP date)

The contract retries 408, 429, 500, 502, 503, 504, connection errors and
timeouts; any other 4xx fails the row at once; 401/403 stop the whole job.
"""

from __future__ import annotations

import enum
import random
from email.utils import parsedate_to_datetime
from time import time as _wall

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
FATAL_STATUSES = frozenset({401, 403})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


class Verdict(enum.Enum):
    """What to do after a response."""

    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"
    FATAL = "fatal"


def classify(status: int | None) -> Verdict:
    """The verdict for an HTTP status; ``None`` is a network error or timeout."""
    if status is None or status in RETRY_STATUSES:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.OK
    if status in FATAL_STATUSES:
        return Verdict.FATAL
    return Verdict.FAIL


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): 0.5 s x 2^(n-1), capped, with jitter.

    "Equal jitter" (uniform over the upper half of the bound) spreads workers
    that failed together, so they do not retry in lockstep.
    """
    bound = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** (attempt - 1)))
    return (rng or random).uniform(bound / 2, bound)


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); no cap.

    Cloudflare's lockout lasts five minutes, and a client that caps the wait
    only burns its retries inside the lockout, so any length is obeyed.
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (_wall() if now_s is None else now_s))


def _params(value: str | None, first: str, second: str) -> tuple[int, float] | None:
    if not value:
        return None
    found: dict[str, str] = {}
    for part in value.split(";"):
        key, _, raw = part.strip().partition("=")
        found[key] = raw
    try:
        return int(found[first]), float(found[second])
    except (KeyError, ValueError):
        return None


def parse_ratelimit(value: str | None) -> tuple[int, float] | None:
    """``(remaining, reset_s)`` from a ``Ratelimit: "default";r=50;t=30`` header."""
    return _params(value, "r", "t")


def parse_ratelimit_policy(value: str | None) -> tuple[int, float] | None:
    """``(quota, window_s)`` from a ``Ratelimit-Policy: "burst";q=100;w=60`` header."""
    parsed = _params(value, "q", "w")
    return parsed if parsed and parsed[0] > 0 and parsed[1] > 0 else None
