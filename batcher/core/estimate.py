"""The time a job takes, said before it starts: requests needed and the time at ``--rate``.

At Cloudflare's limit (1200 requests / 300 s, 4 a second) a merge job over
100,000 meetings needs about 200,000 requests: almost 14 hours. People should
know that before they start, not after the first hour.
"""

from __future__ import annotations

from .config import RateSpec

# Requests a row needs when all goes well: merge GETs then PUTs (an unchanged
# row stops after the GET); replace and patch send one write; plan GETs once.
REQUESTS_PER_ROW = {"merge": 2, "replace": 1, "patch": 1, "plan": 1}


def estimate(mode: str, rows: int, rate: RateSpec | None, unchanged: int = 0) -> tuple[int, float | None]:
    """(requests, seconds) for ``rows`` rows in ``mode`` at ``rate``; seconds is None without a rate.

    The time is the steady rate's: ``requests * window_s / max_requests``. (The
    first window's burst makes a short job quicker; a long one is what matters.)
    """
    requests = max(0, REQUESTS_PER_ROW[mode] * rows - (unchanged if mode == "merge" else 0))
    if rate is None:
        return requests, None
    return requests, requests * rate.window_s / rate.max_requests


def duration_text(seconds: float) -> str:
    """``13 h 53 min``, ``4 min 10 s``, ``12 s``."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def estimate_text(mode: str, rows: int, rate: RateSpec | None, unchanged: int = 0) -> str:
    """``≈ 200,000 requests: 13 h 53 min at 1200/300``."""
    requests, seconds = estimate(mode, rows, rate, unchanged)
    if seconds is None:
        return f"≈ {requests:,} requests: no --rate limit, as fast as the server answers"
    return f"≈ {requests:,} requests: {duration_text(seconds)} at {rate}"
