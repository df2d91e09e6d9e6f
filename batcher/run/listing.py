"""A reader of the list endpoint, a page at a time: ``core.paging.PageWalk`` driven over the client.

``GET /accounts/{a}/realtime/kit/{app}/meetings`` pages in ways nothing documents (``page_no``
from 0 or 1, the largest ``per_page``) and has been seen to misbehave; every rule about that is
``PageWalk``'s. This reader only fetches the page the walk asks for (paced and retried like every
request) and hands over the meetings each page brings, once each. ``export`` walks the list its own
way (it writes as it goes); ``verify`` reads it with this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from yarl import URL

from ..core.paging import PageAnswer, PageRequest, PageWalk, Stop
from ..errors import AuthError
from ..http.client import Client

DEFAULT_PER_PAGE = 100  # the contract asks for pages of at least 100


class ListReader:
    """One account's (and app's) meetings, page by page: ``async for items in reader.pages()``.

    After the loop, ``stop_reason`` says why the walk ended early (None: the list is complete, or
    the caller stopped it) and ``walk`` holds ``total_count``, the pages read and the ids listed.
    """

    def __init__(
        self,
        client: Client,
        base_url: str,
        account_id: str,
        app_id: str,
        per_page: int = DEFAULT_PER_PAGE,
        query: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.url = URL(base_url.rstrip("/") + f"/accounts/{account_id}/realtime/kit/{app_id}/meetings")
        self.query = dict(query or {})
        self.walk = PageWalk(per_page)
        self.stop_reason: str | None = None
        self.page_size = 0  # how many items the last page really held

    async def fetch(self, request: PageRequest) -> PageAnswer:
        """One page (a 401/403 raises ``AuthError``: every further request would fail too)."""
        query = {**self.query, "page_no": str(request.page_no), "per_page": str(request.per_page)}
        got = await self.client.call("GET", str(self.url.with_query(query)))
        if got.error == "auth":
            raise AuthError(f"HTTP {got.status} listing meetings: {got.message}. Check the token and its permission")
        return PageAnswer(got.status, got.is_ok, got.envelope, got.message)

    async def pages(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The meetings of each page not listed before (dicts with an ``id``), until the walk stops."""
        request: PageRequest | Stop = self.walk.first()
        while isinstance(request, PageRequest):
            answer = await self.fetch(request)
            request = self.walk.next(answer)
            items = self.walk.new_items
            if items is not None:
                data = answer.envelope.get("data") if answer.envelope else None
                self.page_size = len(data) if isinstance(data, list) else len(items)
                yield [item for item in items if isinstance(item, dict)]
        self.stop_reason = request.reason

    def pages_left(self) -> int | None:
        """Pages still to read at the size the server serves (None: no total_count to judge from)."""
        total = self.walk.total_count
        if total is None or not self.page_size:
            return None
        return max(0, -(-(total - self.walk.listed) // self.page_size))
