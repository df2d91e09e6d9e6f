"""The time a job takes, said before it starts: requests needed and the time at ``--rate``.

At Cloudflare's limit (1200 requests / 300 s, 4 a second) a merge job over
100,000 meetings needs about 200,000 requests: almost 14 hours. People should
know that before they start, not after the first hour.
"""

from __future__ import annotations

from .config import JobConfig, RateSpec
from .progress import Console, Progress
from .source import Source

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


def count_rows(config: JobConfig) -> int | None:
    """Rows in a file input (a quick scan, nothing decoded); None for stdin or an unreadable file."""
    if config.input == "-":
        return None
    try:
        with Source(config.input, config.input_format) as source:
            return sum(1 for _ in source.records())
    except Exception:  # the real pass reports the problem properly
        return None


def say_estimate(
    console: Console,
    config: JobConfig,
    rows: int | None,
    *,
    is_plan: bool = False,
    progress: Progress | None = None,
) -> None:
    """Print the estimate to stderr before sending (``rows`` None: count a file input).

    With ``progress``, its ETA is also capped at the rows/s the rate promise allows.
    """
    mode = "plan" if is_plan else config.mode
    if progress is not None and config.rate is not None:
        progress.max_rows_per_s = config.rate.max_requests / config.rate.window_s / REQUESTS_PER_ROW[mode]
    rows = count_rows(config) if rows is None else rows
    if rows is None:
        return  # stdin: the number of rows is not known before they arrive
    text = estimate_text(mode, rows, config.rate)
    requests, seconds = estimate(mode, rows, config.rate)
    verb = "to plan" if is_plan else "to send"
    console.say("estimate", f"batcher: {rows:,} rows {verb}, {text}", rows=rows, requests=requests, seconds=seconds)
