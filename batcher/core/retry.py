"""Pure retry policy: after one attempt, what next - over plain values, no I/O.

    decide(status, error, retry_after_s, attempt, max_attempts, is_write, rng) -> Decision
    backoff_s(attempt)          -> seconds, exponential with jitter
    parse_retry_after(v)        -> finite seconds >= 0, or None
    parse_ratelimit*(v)         -> what the server says about its rate budget

``attempts.WriteAttempts`` turns each ``Decision`` into commands (and holds the
unknown-outcome rule); ``client.Client.call`` carries them out, deciding nothing.

The contract retries 408, 429, 500, 502, 503, 504, connection errors and
timeouts; any other non-2xx (3xx included: redirects are never followed) fails
the row at once; 401/403 stop the whole job.

Waiting. Any finite ``Retry-After`` on a retryable status is obeyed, however
long (Cloudflare's lockout lasts five minutes, and a client that caps the wait
only burns its retries inside it), but never for less than the backoff: a
``Retry-After: 0`` must not spend five attempts in two milliseconds. A
non-finite or negative one (``inf``, ``nan``, ``-1``) is ignored: backoff only.

Who waits. A 429 (with or without ``Retry-After``) and a 503 with
``Retry-After`` pause *every* worker: they are about the token or the service
as a whole, and a worker that kept sending would only extend a lockout. A 500,
502, 504 or 408, even with ``Retry-After``, is about this one request (a
gateway that lost its origin for one connection, a slow handler): that call
waits alone, so one bad row cannot stall a healthy job.

Unknown outcomes. After a dropped connection, a timeout, a 408 or a 5xx, a
write may or may not have been applied; after a 429 it was not (Cloudflare
answers before the origin sees it).
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
FATAL_STATUSES = frozenset({401, 403})
# After these (None: a dropped connection or a timeout), a write may have been applied.
UNKNOWN_OUTCOME = frozenset({None, 408, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0


class Verdict(enum.Enum):
    """What a status means on its own."""

    OK = "ok"
    RETRY = "retry"
    FAIL = "fail"
    FATAL = "fatal"


class Action(enum.Enum):
    """What the client does after one attempt."""

    DONE = "done"  # a 2xx: the call succeeded
    FAIL = "fail"  # a failure no retry can fix: the row fails now
    FATAL = "fatal"  # 401/403: stop the whole job
    RETRY = "retry"  # wait ``wait_s``, then try again
    GIVE_UP = "give_up"  # retryable, but the attempts are spent


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of ``decide``.

    ``wait_s`` is how long this call waits before its next attempt (RETRY only);
    ``pause_s`` > 0 means every worker pauses that long (set on RETRY and on
    GIVE_UP: a lockout is a lockout even when this call has no attempts left);
    when it is set, ``wait_s`` equals it and the shared pause does the waiting.
    ``is_unknown``: this attempt was a write that may have been applied.
    """

    action: Action
    wait_s: float = 0.0
    pause_s: float = 0.0
    is_unknown: bool = False

    @property
    def pauses_everyone(self) -> bool:
        """True when every worker must wait ``pause_s`` (not only this call)."""
        return self.pause_s > 0


# The answers that carry no numbers, made once: decide() runs after every request.
_DONE, _FAIL, _FATAL = Decision(Action.DONE), Decision(Action.FAIL), Decision(Action.FATAL)


def classify(status: int | None) -> Verdict:
    """The verdict for an HTTP status; ``None`` is a network error or timeout."""
    if status is None or status in RETRY_STATUSES:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.OK
    if status in FATAL_STATUSES:
        return Verdict.FATAL
    return Verdict.FAIL


def decide(
    status: int | None,
    error: str | None,
    retry_after_s: float | None,
    attempt: int,
    max_attempts: int,
    is_write: bool,
    rng: random.Random | None = None,
) -> Decision:
    """What to do after attempt number ``attempt`` (1-based) of a call.

    ``status`` is None for a dropped connection or a timeout; ``error`` is the
    client's error kind (``api_error``: a 2xx whose body says it failed, which
    no retry fixes; ``bad_answer``: a 2xx whose body is not JSON, which for a
    write means it may have landed: unknown, confirmed or sent again); ``retry_after_s`` comes from ``parse_retry_after`` (so it
    is finite or None); ``is_write`` is true for PUT and PATCH.
    """
    if error == "api_error":
        return _FAIL
    if error == "bad_answer":  # a 2xx whose body is not JSON (a proxy's page): a write may have landed
        if not is_write:
            return _FAIL
        if attempt >= max_attempts:
            return Decision(Action.GIVE_UP, is_unknown=True)
        return Decision(Action.RETRY, wait_s=backoff_s(attempt, rng), is_unknown=True)
    verdict = classify(status)
    if verdict is Verdict.OK:
        return _DONE
    if verdict is Verdict.FATAL:
        return _FATAL
    if verdict is Verdict.FAIL:
        return _FAIL
    is_unknown = is_write and status in UNKNOWN_OUTCOME
    wait = backoff_s(attempt, rng)
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s > wait:
        wait = retry_after_s
    is_shared = status == 429 or (status == 503 and retry_after_s is not None)
    pause = wait if is_shared else 0.0
    if attempt >= max_attempts:
        return Decision(Action.GIVE_UP, pause_s=pause, is_unknown=is_unknown)
    return Decision(Action.RETRY, wait_s=wait, pause_s=pause, is_unknown=is_unknown)


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1-based): 0.5 s x 2^(n-1), capped, with jitter.

    "Equal jitter" (uniform over the upper half of the bound) spreads workers
    that failed together, so they do not retry in lockstep.
    """
    bound = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** (attempt - 1)))
    return (rng or random).uniform(bound / 2, bound)


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); no cap.

    None when absent or unusable: garbage, and also ``inf``, ``nan`` or a
    negative number, which no server means (and ``inf`` would pause forever).
    A date in the past is 0.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if now_s is None:  # core keeps no clock: an HTTP date means nothing without the caller's now
        return None
    return max(0.0, when - now_s)


def _params(value: str | None, first: str, second: str) -> tuple[int, float] | None:
    if not value:
        return None
    found: dict[str, str] = {}
    for part in value.split(";"):
        key, _, raw = part.strip().partition("=")
        found[key] = raw
    try:
        count, seconds = int(found[first]), float(found[second])
    except (KeyError, ValueError):
        return None
    return (count, seconds) if count >= 0 and math.isfinite(seconds) and seconds >= 0 else None


def parse_ratelimit(value: str | None) -> tuple[int, float] | None:
    """``(remaining, reset_s)`` from a ``Ratelimit: "default";r=50;t=30`` header."""
    return _params(value, "r", "t")


def parse_ratelimit_policy(value: str | None) -> tuple[int, float] | None:
    """``(quota, window_s)`` from a ``Ratelimit-Policy: "burst";q=100;w=60`` header."""
    parsed = _params(value, "q", "w")
    return parsed if parsed and parsed[0] > 0 and parsed[1] > 0 else None


# X-RateLimit-Reset is seconds from now on most APIs, a Unix time on some (GitHub):
# no real window is longer than this, no Unix time of this century is shorter.
_EPOCH_CUTOFF_S = 1e9


def parse_x_ratelimit(remaining: str | None, reset: str | None, now_s: float | None = None) -> tuple[int, float] | None:
    """``(remaining, reset_s)`` from the older ``X-RateLimit-Remaining`` / ``X-RateLimit-Reset``.

    The reset is delta-seconds, a Unix time, or an HTTP date; without a usable
    reset, the budget is taken to renew in a second (a cautious guess, since
    only ``r=0`` stops anything).
    """
    if remaining is None:
        return None
    try:
        left = int(remaining.strip())
    except ValueError:
        return None
    if left < 0:
        return None
    reset_s = parse_retry_after(reset, now_s)
    if reset_s is not None and reset_s > _EPOCH_CUTOFF_S:
        # a Unix time: without the caller's now it says nothing (the one-second guess below)
        reset_s = None if now_s is None else max(0.0, reset_s - now_s)
    return left, 1.0 if reset_s is None else reset_s
