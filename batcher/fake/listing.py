"""The fake API's list endpoint: paging and filters, shaped like RealtimeKit's.

``GET /accounts/{a}/realtime/kit/{app}/meetings?page_no=&per_page=&search=&start_time=&end_time=&status=``
answers ``{"success": true, "data": [...], "paging": {"total_count", "start_offset", "end_offset"}}``.
Listed items carry no ``ai_config`` and no ``preferred_region`` (only the per-meeting GET has them).

Two things the real API leaves undocumented are explicit here, so tests can try
both answers: whether ``page_no`` counts from 0 or 1 (``Listing.page_base``)
and the largest ``per_page`` (``Listing.max_per_page``: larger asks are clamped).
``Listing.quirk`` makes the server misbehave the way paginators have been seen to:
``"repeat"`` serves the first page for every page number; ``"inflate_total"``
claims twice as many meetings as there are; ``"clamp"`` answers a page number
below the base as the first page instead of refusing it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LIST_HIDDEN = ("ai_config", "preferred_region")
DEFAULT_PER_PAGE = 20
QUIRKS = (None, "repeat", "inflate_total", "clamp")


@dataclass(frozen=True)
class Listing:
    """How the fake list endpoint pages: base of ``page_no``, largest page, a misbehaviour."""

    page_base: int = 1
    max_per_page: int = 100
    quirk: str | None = None

    def __post_init__(self) -> None:
        if self.page_base not in (0, 1) or self.max_per_page < 1 or self.quirk not in QUIRKS:
            raise ValueError(f"bad Listing: {self}")


# RFC 3339 date-time, as the official schema's ``format: date-time`` (what the real API validates)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or an offset; none means UTC) as an aware datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_query_time(name: str, text: str) -> datetime:
    """A ``start_time``/``end_time`` query value: a full date-time with an offset, as the schema demands."""
    if not _DATE_TIME.fullmatch(text):
        raise ValueError(f"{name} must be a date-time such as 2026-01-01T00:00:00Z, not {text!r}")
    return parse_time(text)


def _error(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"success": False, "error": {"code": 400, "message": message}}


def _matches(doc: dict[str, Any], search: str, start: datetime | None, end: datetime | None, status: str) -> bool:
    if search and search not in doc["id"].lower() and search not in (doc.get("title") or "").lower():
        return False
    if status and doc.get("status") != status:
        return False
    if start or end:
        created = parse_time(doc["created_at"])
        if (start and created < start) or (end and created > end):
            return False
    return True


def list_page(meetings: list[dict[str, Any]], query: Mapping[str, str], listing: Listing) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for one list request over ``meetings`` (as GET shows them, in creation order)."""
    try:
        page_no = int(query.get("page_no", listing.page_base))
        per_page = int(query.get("per_page", DEFAULT_PER_PAGE)) or DEFAULT_PER_PAGE
        start = parse_query_time("start_time", query["start_time"]) if query.get("start_time") else None
        end = parse_query_time("end_time", query["end_time"]) if query.get("end_time") else None
    except ValueError as exc:
        return _error(f"bad query: {exc}")
    if page_no < listing.page_base and listing.quirk == "clamp":
        page_no = listing.page_base
    if page_no < listing.page_base or per_page < 0:
        return _error(f"page_no starts at {listing.page_base}")
    status = query.get("status", "")
    if status not in ("", "ACTIVE", "INACTIVE"):
        return _error("status must be ACTIVE or INACTIVE")
    search = query.get("search", "").lower()
    found = [m for m in meetings if _matches(m, search, start, end, status)]
    per_page = min(per_page, listing.max_per_page)
    index = 0 if listing.quirk == "repeat" else page_no - listing.page_base
    first = index * per_page
    page = [{k: v for k, v in m.items() if k not in LIST_HIDDEN} for m in found[first : first + per_page]]
    total = len(found) * (2 if listing.quirk == "inflate_total" else 1)
    paging = {"total_count": total, "start_offset": first + 1 if page else 0, "end_offset": first + len(page)}
    return 200, {"success": True, "data": page, "paging": paging}
