"""Rows the official schema would refuse are invalid rows here, before anything is sent.

Cloudflare's OpenAPI description types ``watermark.url`` and ``rtmp_url`` as ``format: uri``
(RFC 3986), and its PATCH body does not let ``title``, ``record_on_start`` or
``live_stream_on_start`` be null (PUT does). A row batcher accepted and the server then refused
would fail only after the job had started; these are caught by the validate pass instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batcher.core.rows import RowError, parse_row
from batcher.core.schema import uri_problem
from batcher.errors import ValidationFailed
from batcher.run.engine import run_job

from ..conftest import config, write_jsonl

MID = "6f1c5c6e-2b4e-4d8e-9a57-0d4f2f0c9b11"
RTMP = "recording_config.live_streaming_config.rtmp_url"
WATERMARK = "recording_config.video_config.watermark.url"


def nested(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    *parents, leaf = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return out


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://cdn.example.com/logo^2.png", "'^'"),
        ('https://cdn.example.com/"logo".png', "'\"'"),
        ("https://cdn.example.com/a|b.png", "'|'"),
        ("rtmp://live.example.com/app/{id}", "'{'"),
        ("https://cdn.example.com/100%zz.png", "two hex digits"),
        ("rtmp://bücher.example/app", "punycode"),
        ("rtmp://live example.com/app", "' '"),
        ("live.example.com/app", "scheme://host"),
    ],
    ids=["caret", "quote", "pipe", "brace", "bad-escape", "non-ascii-host", "space", "no-scheme"],
)
@pytest.mark.parametrize("path", [RTMP, WATERMARK], ids=["rtmp_url", "watermark.url"])
def test_a_uri_the_schema_refuses_is_an_invalid_row_naming_the_fix(path: str, uri: str, says: str) -> None:
    result = parse_row(1, {"meeting_id": MID, **nested(path, uri)}, "acct")
    assert isinstance(result, RowError)
    [error] = result.errors
    assert error.field == path and says in error.reason


@pytest.mark.parametrize(
    "uri",
    [
        "rtmp://live.example.com/app/key",
        "https://cdn.example.com/a%20b.png?v=1#x",
        "rtmp://[::1]:1935/app",
        "https://xn--bcher-kva.example/logo.png",
    ],
)
def test_an_rfc_3986_uri_is_valid(uri: str) -> None:
    assert uri_problem(uri) is None


@pytest.mark.parametrize("field", ["title", "record_on_start", "live_stream_on_start"])
def test_null_for_a_field_patch_cannot_clear_is_invalid_in_patch_mode_only(field: str) -> None:
    data = {"meeting_id": MID, field: None}
    patched = parse_row(1, dict(data), "acct", mode="patch")
    assert isinstance(patched, RowError)
    assert [(e.field, "not in a PATCH" in e.reason) for e in patched.errors] == [(field, True)]
    assert not isinstance(parse_row(1, dict(data), "acct", mode="merge"), RowError)


async def test_a_job_with_a_bad_uri_sends_nothing(server, tmp_path: Path) -> None:
    [mid] = server.add()
    rows = [{"meeting_id": mid, **nested(WATERMARK, "https://cdn.example.com/logo^2.png")}]
    with pytest.raises(ValidationFailed, match="1 invalid row"):
        await run_job(config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", rows)))
    assert sum(server.api.requests.values()) == 0
