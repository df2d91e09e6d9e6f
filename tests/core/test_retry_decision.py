"""The retry decision as a table: status x Retry-After x method x attempt, every cell checked."""

from __future__ import annotations

import random
from email.utils import formatdate

import pytest

from batcher.core.retry import Action, decide, parse_retry_after, parse_x_ratelimit

NOW = 1_800_000_000.0
MAX_ATTEMPTS = 5
STATUSES = [200, 400, 401, 403, 404, 408, 409, 429, 500, 502, 503, 504, None]
RETRY_AFTER = {  # header text -> seconds a server means by it (None: unusable, ignored)
    "absent": (None, None),
    "0": ("0", 0.0),
    "5": ("5", 5.0),
    "300": ("300", 300.0),
    "http-date": (formatdate(NOW + 60, usegmt=True), 60.0),
    "inf": ("inf", None),
    "nan": ("nan", None),
    "garbage": ("soon-ish", None),
}
# the bounds of backoff_s on the first and on the last attempt
BACKOFF = {1: (0.25, 0.5), MAX_ATTEMPTS: (4.0, 8.0)}


@pytest.mark.parametrize("attempt", [1, MAX_ATTEMPTS], ids=["first", "last"])
@pytest.mark.parametrize("method", ["GET", "PUT"])
@pytest.mark.parametrize("retry_after", list(RETRY_AFTER), ids=list(RETRY_AFTER))
@pytest.mark.parametrize("status", STATUSES, ids=[str(s) if s else "network" for s in STATUSES])
def test_retry_decision_table(status, retry_after, method, attempt):
    header, meant_s = RETRY_AFTER[retry_after]
    parsed = parse_retry_after(header, now_s=NOW)
    assert parsed == meant_s, "inf, nan and garbage are ignored; every finite value is read"
    d = decide(status, None, parsed, attempt, MAX_ATTEMPTS, method == "PUT", random.Random(attempt))

    if status == 200:
        assert d.action is Action.DONE
    elif status in (401, 403):
        assert d.action is Action.FATAL, "a bad token stops the job"
    elif status in (400, 404, 409):
        assert d.action is Action.FAIL, "no retry fixes these"
    else:
        assert d.action is (Action.RETRY if attempt < MAX_ATTEMPTS else Action.GIVE_UP)
    if d.action not in (Action.RETRY, Action.GIVE_UP):
        assert (d.wait_s, d.pause_s, d.is_unknown) == (0.0, 0.0, False)
        return

    low, high = BACKOFF[attempt]
    backoff_or_more = (meant_s, meant_s) if meant_s is not None and meant_s > high else (low, max(high, meant_s or 0))
    waited = d.wait_s if d.action is Action.RETRY else d.pause_s
    if d.action is Action.RETRY:
        lo, hi = backoff_or_more
        assert lo <= d.wait_s <= hi, "a finite Retry-After is obeyed, never below the backoff"
        if meant_s is not None and meant_s >= high:
            assert d.wait_s == meant_s
    else:
        assert d.wait_s == 0.0, "no next attempt to wait for"

    shared = status == 429 or (status == 503 and meant_s is not None)
    assert d.pauses_everyone is shared, "429, and 503 with Retry-After, pause every worker; others wait alone"
    if shared:
        lo, hi = backoff_or_more
        assert lo <= d.pause_s <= hi and (d.action is Action.GIVE_UP or d.pause_s == waited)
    assert d.is_unknown is (method == "PUT" and status != 429), "a 429 was not applied; drops, timeouts, 5xx may be"


def test_a_2xx_whose_body_says_it_failed_is_not_retried():
    assert decide(200, "api_error", None, 1, 5, True).action is Action.FAIL


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "-1", "Infinity", "1e999", ""])
def test_non_finite_or_negative_retry_after_is_ignored(text):
    assert parse_retry_after(text) is None


def test_retry_after_zero_does_not_burn_the_attempts():
    rng = random.Random(0)
    waits = [decide(429, None, 0.0, n, 5, False, rng).wait_s for n in range(1, 5)]
    assert sum(waits) >= 0.25 + 0.5 + 1 + 2, "each retry waits at least its backoff"


def test_x_ratelimit_reset_is_seconds_a_unix_time_or_a_date():
    assert parse_x_ratelimit("7", "30", now_s=NOW) == (7, 30.0)
    assert parse_x_ratelimit("0", str(int(NOW + 12)), now_s=NOW) == (0, 12.0)
    assert parse_x_ratelimit("0", formatdate(NOW + 60, usegmt=True), now_s=NOW) == (0, 60.0)
    assert parse_x_ratelimit("x", "30") is None and parse_x_ratelimit(None, "30") is None
