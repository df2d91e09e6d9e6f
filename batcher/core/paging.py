"""The walk over the list endpoint's pages, as a pure paginator: an answer in, the next page or a stop out.

The list endpoint pages with ``page_no`` and ``per_page``, and two things about
it are undocumented: whether ``page_no`` starts at 0 or 1, and the largest
``per_page``. Cloudflare's own paginators have stopped after one page or never
stopped. So the walk trusts nothing it cannot check (every rule is in ``next``):

- it asks for page 0 first: a server that counts from 1 either refuses it
  (400, 404, 422), answers it empty (while claiming meetings), or answers it
  as page 1 (the next page then repeats it, which is allowed once); the walk
  hands each id to the caller once whatever the server does;
- it stops on an empty page, once ``total_count`` meetings are listed, on a page
  that repeats the previous one, on a page with no id not seen before, and
  after a hard cap of pages derived from ``total_count`` and the real page size;
- a failed answer (the client has already retried it) stops the walk.

As dlt's ``BasePaginator`` (``update_state`` / ``has_next_page`` /
``update_request``) in one call: ``PageWalk.next(answer)`` returns a
``PageRequest`` or a ``Stop``; the exporter only fetches, writes and loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

UNBOUNDED_PAGE_CAP = 100_000  # when the server gives no total_count: 10 million meetings at 100 a page
REFUSALS = frozenset({400, 404, 422})  # how a server counting from 1 may refuse page 0


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Ask for this page next."""

    page_no: int
    per_page: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop listing. ``reason`` None: the list is complete; else why it stopped (it may be incomplete)."""

    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PageAnswer:
    """What the client got for one page, after its retries."""

    status: int | None
    is_ok: bool
    envelope: dict[str, Any] | None = None  # the whole 2xx body: data, paging
    message: str = ""  # why it failed


_COMPLETE = Stop()


class PageWalk:
    """The state of one walk over the pages; ``new_items`` are the meetings the last page brought."""

    __slots__ = ("_cap", "_page_no", "_previous", "new_items", "pages", "per_page", "seen", "total_count")

    def __init__(self, per_page: int) -> None:
        self.per_page = per_page  # what is asked for; the server may serve fewer
        self._page_no = 0  # the page asked for last
        self._previous: list[Any] | None = None  # the ids of the page before: a repeat is a loop
        self._cap = UNBOUNDED_PAGE_CAP  # pages at most, from total_count and the page size really served
        self.pages = 0  # pages that answered a data list
        self.total_count: int | None = None  # the server's count, from its latest page that gave one
        self.seen: set[Any] = set()  # ids listed by this walk
        self.new_items: list[Any] | None = None  # the last page's items not seen before; None: nothing to take

    @property
    def listed(self) -> int:
        """Distinct meetings listed so far."""
        return len(self.seen)

    def first(self) -> PageRequest:
        """The first page to ask for: page 0 (see the module docstring)."""
        return PageRequest(self._page_no, self.per_page)

    def next(self, answer: PageAnswer) -> PageRequest | Stop:
        """Take the answer to the page asked for last: the next page to ask for, or why to stop.

        After it, ``new_items`` (when not None) are to be written before following
        the result, a ``Stop`` included.
        """
        self.new_items = None
        page_no = self._page_no
        envelope = answer.envelope
        items = envelope.get("data") if envelope is not None else None
        if not answer.is_ok or envelope is None or not isinstance(items, list):
            if page_no == 0 and answer.status in REFUSALS:
                return self._ask(1)  # a server that counts pages from 1 and refuses page 0
            why = answer.message or "the answer has no data list"
            return Stop(f"listing stopped at page_no={page_no}: {why}")
        self.pages += 1
        paging = envelope.get("paging")
        total = paging.get("total_count") if isinstance(paging, dict) else None
        if isinstance(total, int) and total >= 0:
            self.total_count = total
        if not items:
            if page_no == 0 and self.total_count:
                return self._ask(1)  # page 0 answered empty by a server that counts from 1
            return _COMPLETE
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
        if ids == self._previous and not (page_no == 1 and self.pages == 2):
            # page 1 may repeat page 0 once (a 1-based server answering page 0 as page 1); any other repeat is a loop
            return _early(f"page_no={page_no} repeated the page before it")
        new = [item for item, meeting_id in zip(items, ids, strict=True) if meeting_id not in self.seen]
        if not new and ids != self._previous:
            return _early(f"page_no={page_no} listed no meeting not seen before")
        self.seen.update(ids)
        self.new_items = new
        if self.total_count is not None:
            if self.listed >= self.total_count:
                return _COMPLETE
            self._cap = math.ceil(self.total_count / len(items)) + 2  # from the page size the server really uses
        if self.pages >= self._cap:
            return _early(f"{self.pages} pages is the most total_count allows")
        self._previous = ids
        return self._ask(page_no + 1)

    def _ask(self, page_no: int) -> PageRequest:
        self._page_no = page_no
        return PageRequest(page_no, self.per_page)


def _early(why: str) -> Stop:
    """The server's paging misbehaves: stop listing rather than loop."""
    return Stop(f"{why}; stopped listing there (the list may be incomplete)")
