"""The walk over the list endpoint's pages, as a pure paginator: an answer in, the next page or a stop out.

The list endpoint pages with ``page_no`` and ``per_page``, and two things about
it are undocumented: whether ``page_no`` starts at 0 or 1, and the largest
``per_page``. Cloudflare's own paginators have stopped after one page or never
stopped. So the walk trusts nothing it cannot check (every rule is in ``next``):

- it asks for page 1 first, and reads the answer's ``paging.start_offset`` (1-based, as the API
  counts it): a page 1 that starts past the first meeting, or that is empty while
  ``total_count`` claims meetings, comes from a server counting from 0, and page 0 is asked for
  next. A page 1 that proves nothing (no ``start_offset``, or one meeting at offset 1, which either
  base gives) leaves the base open: page 0 is asked for once at the end, if fewer meetings were
  listed than ``total_count`` claims or no count was given, and a refusal of it means "counts
  from 1". No other answer is a paging hint: a refused request (4xx) stops the walk with its message;
- it stops on an empty page, once ``total_count`` meetings are listed, on a page
  that repeats the previous one, on a page with no id not seen before, and
  after a hard cap of pages derived from ``total_count`` and the real page size;
- a failed answer (the client has already retried it) stops the walk, except a refused page 0
  asked for on a guess (no ``start_offset``): the server counts from 1 after all.

The walk hands each id to the caller once whatever the server does.

As dlt's ``BasePaginator`` (``update_state`` / ``has_next_page`` /
``update_request``) in one call: ``PageWalk.next(answer)`` returns a
``PageRequest`` or a ``Stop``; the exporter only fetches, writes and loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

UNBOUNDED_PAGE_CAP = 100_000  # when the server gives no total_count: 10 million meetings at 100 a page
REFUSALS = frozenset({400, 404, 422})  # how a server counting from 1 refuses page 0


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

    __slots__ = (
        "_after_zero",
        "_cap",
        "_has_offsets",
        "_page_no",
        "_previous",
        "new_items",
        "pages",
        "per_page",
        "seen",
        "total_count",
    )

    def __init__(self, per_page: int) -> None:
        self.per_page = per_page  # what is asked for; the server may serve fewer
        self._page_no = 1  # the page asked for last
        self._previous: list[Any] | None = None  # the ids of the page before: a repeat is a loop
        self._cap = UNBOUNDED_PAGE_CAP  # pages at most, from total_count and the page size really served
        self._has_offsets = False  # page 1 proved where it starts (start_offset, or counts): the base is known
        self._after_zero: PageRequest | Stop | None = None  # where the walk goes on once page 0 answered
        self.pages = 0  # pages that answered a data list
        self.total_count: int | None = None  # the server's count, from its latest page that gave one
        self.seen: set[Any] = set()  # ids listed by this walk
        self.new_items: list[Any] | None = None  # the last page's items not seen before; None: nothing to take

    @property
    def listed(self) -> int:
        """Distinct meetings listed so far."""
        return len(self.seen)

    def first(self) -> PageRequest:
        """The first page to ask for: page 1 (see the module docstring)."""
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
            if page_no == 0 and not self._has_offsets and answer.status in REFUSALS and self._after_zero:
                return self._go_on()  # page 0 was a guess: the server counts from 1 after all
            why = answer.message or "the answer has no data list"
            return Stop(f"listing stopped at page_no={page_no}: {why}")
        self.pages += 1
        paging = envelope.get("paging")
        paging = paging if isinstance(paging, dict) else {}
        total = paging.get("total_count")
        if isinstance(total, int) and total >= 0:
            self.total_count = total
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
        if page_no == 0:  # the first page of a server counting from 0: take what is new, go on
            self._take(items, ids)
            return self._go_on()
        if page_no == 1 and self.pages == 1:
            start = paging.get("start_offset")
            start = start if isinstance(start, int) and not isinstance(start, bool) else None
            # page 1 is the first page when it starts at offset 0 or 1 (whichever base the offsets
            # count from); one item at offset 1 could be either, so that proves nothing
            is_first = start == 0 or (start == 1 and len(items) > 1)
            counts_from_0 = (not items and bool(self.total_count)) or (start is not None and start > 1)
            self._has_offsets = is_first or counts_from_0 or (not items and self.total_count == 0)
            if counts_from_0:  # page 1 is the second page: page 0 next, then on from page 2
                self._take(items, ids)
                self._previous = ids
                self._after_zero = self._ask(2) if items else _COMPLETE
                return self._ask(0)
        if not items:
            return self._end(_COMPLETE)
        if ids == self._previous:
            return _early(f"page_no={page_no} repeated the page before it")
        new = [item for item, meeting_id in zip(items, ids, strict=True) if meeting_id not in self.seen]
        if not new:
            return _early(f"page_no={page_no} listed no meeting not seen before")
        self._take(items, ids)
        if self.total_count is not None:
            if self.listed >= self.total_count:
                return _COMPLETE
            self._cap = math.ceil(self.total_count / len(items)) + 2  # from the page size the server really uses
        if self.pages >= self._cap:
            return _early(f"{self.pages} pages is the most total_count allows")
        self._previous = ids
        return self._ask(page_no + 1)

    def _take(self, items: list[Any], ids: list[Any]) -> None:
        self.new_items = [item for item, meeting_id in zip(items, ids, strict=True) if meeting_id not in self.seen]
        self.seen.update(ids)

    def _end(self, stop: Stop) -> PageRequest | Stop:
        """The forward walk ends: unless page 1 proved where it starts, a list short of
        ``total_count`` (or with no count to judge by) may lack a page 0 (a server counting from 0
        that gives no offsets): ask it once, and take a refusal as "counts from 1"."""
        short = self.total_count is None or self.listed < self.total_count
        if not self._has_offsets and short and self._after_zero is None:
            self._after_zero = stop
            return self._ask(0)
        return stop

    def _go_on(self) -> PageRequest | Stop:
        after, self._after_zero = self._after_zero or _COMPLETE, _COMPLETE  # page 0 is asked once
        if isinstance(after, PageRequest):
            self._page_no = after.page_no
        return after

    def _ask(self, page_no: int) -> PageRequest:
        self._page_no = page_no
        return PageRequest(page_no, self.per_page)


def _early(why: str) -> Stop:
    """The server's paging misbehaves: stop listing rather than loop."""
    return Stop(f"{why}; stopped listing there (the list may be incomplete)")
