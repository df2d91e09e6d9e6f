"""The client carries out the retry decision: real waits, tri-state confirmation, no redirects, no token."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from batcher.core.config import RateSpec
from batcher.http import client as client_module
from batcher.http.client import Client
from batcher.http.pacer import Pacer

from ..conftest import ACCOUNT, TOKEN, config
from ..fake_time import FakeTime


class Recorder(FakeTime):
    """FakeTime that remembers every sleep (the waits the client really made)."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await super().sleep(seconds)


def client_for(server, tmp_path, t: FakeTime, rate: RateSpec | None = None, **overrides) -> tuple[Client, list[str]]:
    log: list[str] = []
    cfg = config(tmp_path, server, "x.jsonl", **overrides)
    pacer = Pacer(rate, t.clock, t.sleep)
    client = Client(cfg.http, pacer, t.sleep, rng=random.Random(0), on_retry=lambda _e, text, **_: log.append(text))
    return client, log


def answers(*values: bool | None) -> tuple[list[int], object]:
    """A verify that answers ``values`` in turn, and counts how often it was asked."""
    asked: list[int] = []
    it: Iterator[bool | None] = iter(values)

    async def verify() -> bool | None:
        asked.append(1)
        return next(it)

    return asked, verify


@pytest.mark.parametrize(("status", "retry_after"), [(502, 5), (500, 5), (504, 7), (503, 5), (429, 5)])
async def test_a_finite_retry_after_on_any_retryable_status_is_waited_out(server, tmp_path, status, retry_after):
    [mid] = server.add()
    server.api.faults.append({"kind": "status", "status": status, "retry_after": retry_after, "times": 2})
    t = Recorder()
    client, log = client_for(server, tmp_path, t)
    async with client:
        result = await client.call("GET", client.config.meeting_url(ACCOUNT, mid))
    assert result.is_ok and result.attempts == 3
    assert t.now >= 2 * retry_after, "two waits of Retry-After seconds"
    assert all(f"in {retry_after:.1f} s" in line for line in log), "-v says the wait it makes"


async def test_retry_after_zero_waits_the_backoff_and_pauses_everyone(server, tmp_path):
    [mid] = server.add()
    server.api.faults.append({"kind": "status", "status": 429, "retry_after": 0, "times": 4})
    t = Recorder()
    client, log = client_for(server, tmp_path, t)
    async with client:
        result = await client.call("GET", client.config.meeting_url(ACCOUNT, mid))
    assert result.is_ok and result.attempts == 5
    assert t.now >= 0.25 + 0.5 + 1 + 2, "not five attempts in two milliseconds"
    assert [f"{w:.1f}" for w in t.sleeps] == [line.split(" in ")[1].split(" s")[0] for line in log]
    assert all("every worker pauses" in line for line in log)


async def test_an_infinite_retry_after_is_ignored(server, tmp_path):
    [mid] = server.add()
    server.api.faults.append({"kind": "status", "status": 503, "retry_after": "inf"})
    t = Recorder()
    client, _ = client_for(server, tmp_path, t)
    async with client:
        result = await client.call("GET", client.config.meeting_url(ACCOUNT, mid))
    assert result.is_ok and t.now <= 0.5, "backoff only, not forever"


async def test_a_write_confirmed_by_get_after_a_5xx_is_not_sent_again(server, tmp_path):
    [mid] = server.add(title="old")
    server.api.faults.append({"kind": "apply_then_drop", "method": "PUT"})
    asked, verify = answers(True)
    client, _ = client_for(server, tmp_path, FakeTime())
    async with client:
        result = await client.call("PUT", client.config.meeting_url(ACCOUNT, mid), {"title": "new"}, verify)
    assert result.is_ok and "confirmed by GET" in result.message
    assert server.api.puts[mid] == 1 and len(asked) == 1


async def test_when_the_confirming_get_fails_the_write_is_resent_and_a_final_failure_is_unknown(server, tmp_path):
    [mid] = server.add(title="old")
    server.api.faults.append({"kind": "apply_then_drop", "method": "PUT", "times": 3})
    asked, verify = answers(None, None, None)  # each confirming GET got a 503: could not tell
    client, _ = client_for(server, tmp_path, FakeTime(), max_attempts=3)
    async with client:
        result = await client.call("PUT", client.config.meeting_url(ACCOUNT, mid), {"title": "new"}, verify)
    assert not result.is_ok and result.is_unknown, "the server applied it: never a plain failure"
    assert "may have been applied" in result.message
    assert server.api.requests["PUT"] == 3 and len(asked) == 3, "re-sent (idempotent), asked each time"


async def test_a_get_showing_the_write_did_not_land_makes_the_failure_certain(server, tmp_path):
    [mid] = server.add(title="old")
    server.api.faults.append({"kind": "drop", "method": "PUT", "times": 2})
    _asked, verify = answers(False, False)
    client, _ = client_for(server, tmp_path, FakeTime(), max_attempts=2)
    async with client:
        result = await client.call("PUT", client.config.meeting_url(ACCOUNT, mid), {"title": "new"}, verify)
    assert not result.is_ok and not result.is_unknown and result.error == "network"


async def test_a_write_without_verify_that_finally_fails_after_a_drop_is_unknown(server, tmp_path):
    [mid] = server.add(title="old")
    server.api.faults.extend([{"kind": "drop", "method": "PUT"}, {"kind": "status", "status": 429, "method": "PUT"}])
    client, _ = client_for(server, tmp_path, FakeTime(), max_attempts=2)
    async with client:  # a body with a write-only secret: GET cannot confirm it, so no verify
        result = await client.call("PUT", client.config.meeting_url(ACCOUNT, mid), {"title": "new"})
    assert result.status == 429 and result.is_unknown, "the drop before the 429 may have applied it"


async def test_a_redirect_is_a_failure_naming_the_location_and_is_not_followed(server, tmp_path):
    [mid] = server.add()
    server.api.faults.append({"kind": "redirect", "status": 302, "location": f"{server.base_url}/elsewhere"})
    client, _ = client_for(server, tmp_path, FakeTime())
    async with client:
        result = await client.call("GET", client.config.meeting_url(ACCOUNT, mid))
    assert (result.status, result.error) == (302, "redirect") and "/elsewhere" in result.message
    assert sum(server.api.requests.values()) == 1, "the pacer saw every request there was"


async def test_the_token_is_scrubbed_from_every_message(server, tmp_path):
    [mid] = server.add()
    echo = f"bad request: Authorization: Bearer {TOKEN}"
    server.api.faults.extend(
        [
            {"kind": "status", "status": 400, "body": echo, "method": "GET"},
            {"kind": "status", "status": 502, "body": echo, "method": "PUT"},
            {"kind": "redirect", "location": f"{server.base_url}/?t={TOKEN}", "method": "PATCH"},
        ]
    )
    client, _ = client_for(server, tmp_path, FakeTime(), max_attempts=1)
    url = f"{server.base_url}/accounts/{ACCOUNT}/realtimekit/meetings/{mid}"
    async with client:
        results = [await client.call(m, url, {"title": "x"} if m != "GET" else None) for m in ("GET", "PUT", "PATCH")]
    assert all(not r.is_ok for r in results)
    assert all(TOKEN not in r.message and "***" in r.message for r in results), [r.message for r in results]


async def test_headers_announcing_no_budget_hold_the_next_request_even_without_a_rate(server, tmp_path):
    ids = server.add(2)
    server.api.faults.append({"kind": "headers", "headers": {"Ratelimit": '"default";r=0;t=30'}})
    t = FakeTime()
    client, _ = client_for(server, tmp_path, t)  # --rate none
    async with client:
        await client.call("GET", client.config.meeting_url(ACCOUNT, ids[0]))
        assert t.now == 0.0
        await client.call("GET", client.config.meeting_url(ACCOUNT, ids[1]))
    assert t.now >= 30.0


async def test_x_ratelimit_headers_are_read_too(server, tmp_path):
    ids = server.add(2)
    server.api.faults.append({"kind": "headers", "headers": {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"}})
    t = FakeTime()
    client, _ = client_for(server, tmp_path, t)
    async with client:
        for mid in ids:
            await client.call("GET", client.config.meeting_url(ACCOUNT, mid))
    assert t.now >= 12.0


async def test_rate_none_touches_no_budget_file_and_a_rate_uses_the_per_token_one(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    [mid] = server.add()
    client, _ = client_for(server, tmp_path, FakeTime())
    async with client:
        await client.call("GET", client.config.meeting_url(ACCOUNT, mid))
    assert not cache.exists()
    client, _ = client_for(server, tmp_path, FakeTime(), RateSpec(10, 1.0))
    async with client:
        assert client._session._retry_connection is False, "aiohttp's silent re-send is off"
        await client.call("GET", client.config.meeting_url(ACCOUNT, mid))
    [budget] = (cache / "batcher").glob("budget-*.db")
    assert TOKEN not in budget.name and TOKEN.encode() not in budget.read_bytes()


async def test_a_client_that_cannot_start_releases_its_rate_budget(server, tmp_path, monkeypatch):
    """Guards the client's start-up: when aiohttp lacks what the client needs, the rate budget is released."""
    monkeypatch.setattr(client_module, "_RETRY_SWITCH", "_no_such_switch")
    cfg = config(tmp_path, server, tmp_path / "in.jsonl", rate="10/1", budget_path=str(tmp_path / "budget.db"))
    pacer = Pacer(cfg.rate)
    with pytest.raises(RuntimeError, match="aiohttp"):
        async with Client(cfg.http, pacer):
            pass
    assert pacer.budget is None
