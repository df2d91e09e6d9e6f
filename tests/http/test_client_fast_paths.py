"""The client's fast paths send exactly what the plain ones would."""

from __future__ import annotations

import uuid

import pytest
from aiohttp import web
from yarl import URL

from batcher.fake.server import FakeApi, start
from batcher.http.client import Client
from batcher.http.pacer import Pacer
from batcher.run.engine import run_job

from ..conftest import ACCOUNT, config, write_jsonl

BASES = [
    "http://127.0.0.1:8787",
    "https://api.cloudflare.com/client/v4",
    "https://api.cloudflare.com/client/v4/",
    "http://host:99/x",
    "http://[::1]:8080/client/v4",
    "HTTP://Host.Example/a",  # not in encoded form: yarl normalises it, no fast path
    "http://host/a%20b",
]


@pytest.mark.parametrize("base", BASES)
def test_prebuilt_url_is_the_url_yarl_would_parse(tmp_path, base):
    cfg = config(tmp_path, None, tmp_path / "in.csv", base_url=base)
    client = Client(cfg.http, Pacer(None))
    for url in (
        cfg.meeting_url("acct-1", "0b5c6f0e-1d2f-4a7e-9d6c-3b1f2e4d5a6b"),
        cfg.meeting_url("a/../b?c#d", "m.1%2F"),  # encoded segments stay encoded
        base.rstrip("/") + "/accounts/a/realtime/kit/app/meetings?page_no=2&per_page=100",  # a query: no fast path
    ):
        target = client.target(url)
        if str(URL(base)) != base:
            assert target == url  # yarl encodes it, as before
        else:
            assert isinstance(target, URL) and str(target) == url
            assert target == URL(url, encoded=True)


@pytest.mark.parametrize(
    "segment",
    ["0b5c6f0e-1d2f-4a7e-9d6c-3b1f2e4d5a6b", "plain_id~1", "", ".", "..", "a.b", "a/b", "a?b#c", "%2E", "é", "a b"],
)
def test_segment_fast_path_encodes_as_quote_does(segment):
    from urllib.parse import quote

    from batcher.core.config import _segment

    assert _segment(segment) == quote(segment, safe="").replace(".", "%2E")


class CookieApi(FakeApi):
    """Sets a cookie on every answer (as a CDN in front of an API may) and notes what comes back."""

    def __init__(self) -> None:
        super().__init__(seed=1)
        self.cookies_seen: list[str] = []

    def _with_cookie(self, request: web.Request, response: web.Response) -> web.Response:
        self.cookies_seen.append(request.headers.get("Cookie", ""))
        response.set_cookie("edge_session", "abc123", path="/")
        return response

    async def get_meeting(self, request: web.Request) -> web.Response:
        return self._with_cookie(request, await super().get_meeting(request))

    async def put_meeting(self, request: web.Request) -> web.Response:
        return self._with_cookie(request, await super().put_meeting(request))


async def test_cookies_the_server_sets_are_never_sent_back(tmp_path):
    api = CookieApi()
    runner, port = await start(api)
    try:
        ids = [api.add_meeting(ACCOUNT, str(uuid.uuid4()), title="before") for _ in range(3)]
        src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "after"} for m in ids])
        # a host name, not an IP: aiohttp's default cookie jar ignores cookies from IP addresses
        result = await run_job(config(tmp_path, None, src, base_url=f"http://localhost:{port}", concurrency=1))
    finally:
        await runner.cleanup()
    assert result.exit_code == 0
    assert len(api.cookies_seen) == 6  # GET and PUT per row
    assert api.cookies_seen == [""] * 6  # a session cookie would tie requests together: the token alone authenticates
