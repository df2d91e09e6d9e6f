"""The estimate line said before a job sends anything (rows, requests, time at ``--rate``).

The arithmetic is ``core.estimate``'s; this module prints it for a number of rows its caller
already knows: ``run`` from its ``Prepared`` counts (pre-flight read the file once), ``plan``
from ``count_rows`` (a quick scan; plan has no pre-flight).
"""

from __future__ import annotations

from ..core.config import JobConfig
from ..core.estimate import REQUESTS_PER_ROW, estimate, estimate_text
from ..input.source import Source
from ..report.console import Console, Progress


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
    """Print the estimate to stderr before sending (``rows`` None, as for stdin: nothing to say).

    With ``progress``, its ETA is also capped at the rows/s the rate promise allows.
    """
    mode = "plan" if is_plan else config.mode
    if progress is not None and config.rate is not None:
        progress.max_rows_per_s = config.rate.max_requests / config.rate.window_s / REQUESTS_PER_ROW[mode]
    if rows is None:
        return  # stdin: the number of rows is not known before they arrive
    text = estimate_text(mode, rows, config.rate)
    requests, seconds = estimate(mode, rows, config.rate)
    verb = "to plan" if is_plan else "to send"
    console.say("estimate", f"batcher: {rows:,} rows {verb}, {text}", rows=rows, requests=requests, seconds=seconds)
