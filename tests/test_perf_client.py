"""The client's fast paths send exactly what the plain ones would."""

from __future__ import annotations

import pytest
from yarl import URL

from batcher.client import Client
from batcher.limiter import Pacer

from .conftest import config

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
    client = Client(cfg, Pacer(None))
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

    from batcher.config import _segment

    assert _segment(segment) == quote(segment, safe="").replace(".", "%2E")
