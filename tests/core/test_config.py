"""JobConfig's values: meeting URLs built from encoded segments, rates parsed from their spellings."""

from __future__ import annotations

import pytest
from yarl import URL

from batcher.core.config import JobConfig, RateSpec, parse_rate


@pytest.mark.parametrize("app_id", [None, "app1"])
def test_a_url_is_built_from_encoded_segments(app_id):
    cfg = JobConfig(input="x.csv", base_url="https://api.example.com/client/v4/", app_id=app_id)
    evil = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b/../../../x?y=#z"
    url = URL(cfg.meeting_url("acct/../..", evil), encoded=True)
    assert url.query_string == "" and url.fragment == ""
    middle = ("realtime", "kit", "app1") if app_id else ("realtimekit",)
    assert url.raw_parts == (
        *("/", "client", "v4", "accounts", "acct%2F%2E%2E%2F%2E%2E", *middle, "meetings"),
        "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fx%3Fy%3D%23z",
    ), "each id is exactly one segment"


def test_parse_rate():
    assert parse_rate("1200/300") == RateSpec(1200, 300.0)
    assert parse_rate("5/0.5") == RateSpec(5, 0.5)
    assert parse_rate("none") is None
    assert parse_rate("auto").is_auto
