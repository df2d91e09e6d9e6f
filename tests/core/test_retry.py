"""Retry policy: which statuses retry, backoff bounds, Retry-After of any length."""

from __future__ import annotations

import random

import pytest

from batcher.core.retry import Verdict, backoff_s, classify, parse_ratelimit, parse_ratelimit_policy, parse_retry_after


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.OK),
        (204, Verdict.OK),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (None, Verdict.RETRY),
        (400, Verdict.FAIL),
        (404, Verdict.FAIL),
        (409, Verdict.FAIL),
        (501, Verdict.FAIL),
        (401, Verdict.FATAL),
        (403, Verdict.FATAL),
    ],
)
def test_classify(status, verdict):
    assert classify(status) is verdict


def test_backoff_grows_with_jitter_and_is_capped():
    rng = random.Random(0)
    delays = [backoff_s(n, rng) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5
    assert 2.0 <= delays[3] <= 4.0
    assert max(delays) <= 30.0
    assert len({round(backoff_s(3, rng), 6) for _ in range(20)}) > 1, "jitter"


def test_retry_after_seconds_dates_and_no_cap():
    assert parse_retry_after("300") == 300.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now_s=1445412480 - 60) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_ratelimit_headers():
    assert parse_ratelimit('"default";r=50;t=30') == (50, 30.0)
    assert parse_ratelimit("garbage") is None
    assert parse_ratelimit_policy('"burst";q=100;w=60') == (100, 60.0)
    assert parse_ratelimit_policy('"burst";q=0;w=60') is None
