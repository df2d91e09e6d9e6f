"""ISO 8601 times as the list endpoint's schema wants them: full UTC date-times, ``...Z``.

The official schema types ``start_time`` and ``end_time`` as ``format: date-time``: a bare date,
a time without an offset, or the basic format (``20260101T000000Z``) is refused there. So a time
is completed before it is sent, never sent as given and refused: a time without an offset is UTC;
a bare date is that day's first second as a start and its last second as an end (so the day is
included); the basic format is written in the extended one.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["list_time"]


def list_time(text: str, *, is_end: bool = False) -> str:
    """``text`` (any ISO 8601 date or date-time) as ``YYYY-MM-DDTHH:MM:SS[.mmm]Z``; ValueError if it is none."""
    clean = text.strip()
    when = datetime.fromisoformat(clean.replace("z", "Z"))
    is_date = "T" not in clean.upper() and len(clean) in (8, 10)
    if is_date and is_end:
        when = when.replace(hour=23, minute=59, second=59)
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    fraction = f".{when.microsecond // 1000:03d}" if when.microsecond else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
