"""The fake API answers exactly what its seed says, logs every request, and draws seeded faults."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from batcher.cli.main import main
from batcher.fake.chaos import Chaos, ChaosSpec, parse_chaos
from batcher.fake.server import FakeApi, start

ACCOUNT = "acct-1"
UPPER = "ABCDEF01-2345-6789-ABCD-EF0123456789"
LOWER_ID = "0f0e0d0c-0b0a-4908-8706-050403020100"
AUTH = {"Authorization": "Bearer t"}
SEED = [
    {
        "account_id": ACCOUNT,
        "id": UPPER,
        "status": "INACTIVE",
        "created_at": "2024-01-02T03:04:05.000Z",
        "updated_at": "2024-02-03T04:05:06.000Z",
        "title": "seeded",
        "beta_noise_cancellation": True,
        "ai_config": {"beta_translate": {"to": ["fr", "de"]}},
        "recording_config": {"storage_config": {"type": "aws", "access_key": "AK-SEED", "secret": "SK-SEED"}},
    },
    {"account_id": ACCOUNT, "meeting_id": LOWER_ID, "title": "by meeting_id"},
]


class Fake:
    """A running fake and a client session to it."""

    def __init__(self, api: FakeApi, session: aiohttp.ClientSession, port: int) -> None:
        self.api, self.session, self.base = api, session, f"http://127.0.0.1:{port}"

    def url(self, meeting: str) -> str:
        return f"{self.base}/accounts/{ACCOUNT}/realtimekit/meetings/{meeting}"

    async def call(self, method: str, meeting: str, body: Any = None) -> tuple[int, Any]:
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(method, self.url(meeting), data=data, headers=AUTH) as resp:
            return resp.status, await resp.json(content_type=None)


async def _fake(**options: Any) -> AsyncIterator[Fake]:
    api = FakeApi(**options)
    api.load_seed([orjson.dumps(doc) for doc in SEED])
    runner, port = await start(api)
    try:
        async with aiohttp.ClientSession() as session:
            yield Fake(api, session, port)
    finally:
        await runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    async for f in _fake(seed=1):
        yield f


async def test_a_meeting_seeded_with_an_upper_case_id_is_served_under_exactly_that_id(fake: Fake) -> None:
    status, doc = await fake.call("GET", UPPER)
    assert status == 200 and doc["data"]["id"] == UPPER
    status, _ = await fake.call("GET", UPPER.lower())
    assert status == 404  # real ids are lower-case UUIDs; the fake matches the id as stored


async def test_seeded_status_and_timestamps_are_kept(fake: Fake) -> None:
    _, doc = await fake.call("GET", UPPER)
    assert doc["data"]["status"] == "INACTIVE"
    assert doc["data"]["created_at"] == "2024-01-02T03:04:05.000Z"
    assert doc["data"]["updated_at"] == "2024-02-03T04:05:06.000Z"


async def test_a_seed_line_may_name_its_meeting_meeting_id(fake: Fake) -> None:
    status, doc = await fake.call("GET", LOWER_ID)
    assert status == 200 and doc["data"]["title"] == "by meeting_id" and "meeting_id" not in doc["data"]


async def test_get_shows_unknown_fields_but_never_secrets(fake: Fake) -> None:
    _, doc = await fake.call("GET", UPPER)
    data = doc["data"]
    assert data["beta_noise_cancellation"] is True
    assert data["ai_config"]["beta_translate"] == {"to": ["fr", "de"]}
    assert "access_key" not in data["recording_config"]["storage_config"]


async def test_put_accepts_the_unknown_fields_the_server_knows(fake: Fake) -> None:
    body = {"title": "x", "beta_noise_cancellation": False, "ai_config": {"beta_translate": {"to": ["it"]}}}
    status, doc = await fake.call("PUT", UPPER, body)
    assert status == 200, doc
    assert doc["data"]["beta_noise_cancellation"] is False
    assert doc["data"]["ai_config"]["beta_translate"] == {"to": ["it"]}


async def test_put_rejects_an_unknown_field_the_server_does_not_know_naming_it(fake: Fake) -> None:
    status, doc = await fake.call("PUT", UPPER, {"title": "x", "ai_config": {"beta_dub": True}})
    assert status == 400
    assert "ai_config.beta_dub" in doc["error"]["message"]
    assert fake.api.meetings[(ACCOUNT, UPPER)]["title"] == "seeded"  # nothing applied


async def test_put_as_replace_resets_an_unknown_field_left_out(fake: Fake) -> None:
    status, _ = await fake.call("PUT", UPPER, {"title": "x"})
    assert status == 200
    stored = fake.api.meetings[(ACCOUNT, UPPER)]
    assert "beta_noise_cancellation" not in stored and "beta_translate" not in stored["ai_config"]


async def test_extra_fields_given_explicitly_replace_what_the_seed_teaches() -> None:
    async for fake in _fake(extra_fields=["beta_noise_cancellation"]):
        assert (await fake.call("PUT", UPPER, {"beta_noise_cancellation": True}))[0] == 200
        status, doc = await fake.call("PUT", UPPER, {"ai_config": {"beta_translate": {}}})
        assert status == 400 and "ai_config.beta_translate" in doc["error"]["message"]


async def test_the_test_view_holds_the_whole_state_secrets_and_unknown_fields_included(fake: Fake) -> None:
    async with fake.session.get(f"{fake.base}/__meetings") as resp:
        dump = {d["id"]: d for d in await resp.json()}
    seeded = dump[UPPER]
    assert seeded["recording_config"]["storage_config"]["secret"] == "SK-SEED"
    assert seeded["beta_noise_cancellation"] is True and seeded["status"] == "INACTIVE"


async def test_the_request_log_records_wall_clock_arrivals_status_and_applied_writes(fake: Fake) -> None:
    before = time.time()
    await fake.call("GET", UPPER)
    await fake.call("PUT", UPPER, {"title": "y", "beta_noise_cancellation": True})
    await fake.call("PUT", UPPER, {"nope": 1})
    fake.api.faults.append({"kind": "apply_then_drop", "method": "PUT"})
    # aiohttp's client resends an idempotent request once when the connection drops: the log shows both
    await fake.call("PUT", UPPER, {"title": "z"})
    async with fake.session.get(f"{fake.base}/__log?since=1") as resp:
        log = await resp.json()
    entries = log["entries"]
    assert [(e["method"], e["status"], e["applied"]) for e in entries] == [
        ("PUT", 200, True),
        ("PUT", 400, False),
        ("PUT", 0, True),  # dropped after applying: the client never saw an answer
        ("PUT", 200, True),
    ]
    assert all(e["meeting"] == UPPER and e["account"] == ACCOUNT and e["t"] >= before for e in entries)
    assert log["next"] == 5


def test_chaos_draws_the_same_faults_for_the_same_seed() -> None:
    spec = ChaosSpec(p_429=0.1, p_drop=0.1, p_hang=0.05, p_5xx_html=0.1, p_truncated=0.05)
    first, again, other = Chaos(spec, 7), Chaos(spec, 7), Chaos(spec, 8)
    draws = [first.draw(n) for n in range(1, 500)]
    assert draws == [again.draw(n) for n in range(1, 500)]
    assert draws != [other.draw(n) for n in range(1, 500)]
    assert {"429", "drop", "hang", "5xx_html", "truncated"} <= set(first.drawn)


async def test_chaos_answers_401_for_a_window_of_requests_then_recovers() -> None:
    async for fake in _fake(chaos=ChaosSpec(auth_window=(2, 3)), seed=3):
        statuses = [(await fake.call("GET", UPPER))[0] for _ in range(6)]
        assert statuses == [200, 401, 401, 401, 200, 200]


async def test_chaos_429_carries_retry_after_and_the_bare_one_does_not() -> None:
    async for fake in _fake(chaos=ChaosSpec(p_429=1.0, retry_after_s=2), seed=1):
        async with fake.session.get(fake.url(UPPER), headers=AUTH) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"] == "2"
    async for fake in _fake(chaos=ChaosSpec(p_429_bare=1.0), seed=1):
        async with fake.session.get(fake.url(UPPER), headers=AUTH) as resp:
            assert resp.status == 429 and "Retry-After" not in resp.headers


async def test_older_x_ratelimit_headers_on_request() -> None:
    async for fake in _fake(rate_limit=(2, 60.0), x_ratelimit_headers=True, ratelimit_headers=False):
        for expected in ("1", "0"):
            async with fake.session.get(fake.url(UPPER), headers=AUTH) as resp:
                assert resp.headers["X-RateLimit-Limit"] == "2"
                assert resp.headers["X-RateLimit-Remaining"] == expected
                assert "Ratelimit" not in resp.headers
        async with fake.session.get(fake.url(UPPER), headers=AUTH) as resp:
            assert resp.status == 429 and resp.headers["X-RateLimit-Reset"].endswith("GMT")


def test_chaos_from_the_command_line_is_a_json_object_of_spec_fields() -> None:
    spec = parse_chaos('{"p_429": 0.5, "auth_window": [10, 2], "hang_s": 4}')
    assert spec == ChaosSpec(p_429=0.5, auth_window=(10, 2), hang_s=4)


@pytest.mark.parametrize("text", ["nope", "[1]", '{"p_teapot": 1}'])
def test_a_bad_chaos_option_is_a_usage_error_naming_the_keys(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fake-api", "--port", "0", "--chaos", text]) == 2
    assert "p_apply_then_drop" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_field_the_server_ignores_is_answered_200_and_keeps_its_old_value(method: str) -> None:
    """``ignores_fields``: the gap ``run --canary`` exists to find (a field the account does not support)."""
    async for fake in _fake(ignores_fields=["transcribe_on_end", "ai_config.transcription.language"]):
        fake.api.edit(ACCOUNT, LOWER_ID, {"transcribe_on_end": False})
        body = {"title": "new", "transcribe_on_end": True, "ai_config": {"transcription": {"language": "fr"}}}
        status, doc = await fake.call(method, LOWER_ID, body)
        assert status == 200 and doc["data"]["title"] == "new"
        assert doc["data"]["transcribe_on_end"] is False
        assert doc["data"]["ai_config"]["transcription"]["language"] == "en-US"


async def test_every_change_moves_updated_at_forward_to_the_millisecond(fake: Fake) -> None:
    stamps = []
    for title in ("a", "b", "c"):
        _status, doc = await fake.call("PUT", LOWER_ID, {"title": title})
        stamps.append(doc["data"]["updated_at"])
    fake.api.edit(ACCOUNT, LOWER_ID, {"title": "theirs"})
    stamps.append(fake.api.meta[(ACCOUNT, LOWER_ID)]["updated_at"])
    assert stamps == sorted(set(stamps)) and all(len(s) == 24 and s.endswith("Z") for s in stamps)


def test_the_command_line_names_the_fields_the_server_ignores() -> None:
    from batcher.cli.main import build_parser

    args = build_parser().parse_args(["fake-api", "--ignores-fields", "transcribe_on_end,title"])
    assert args.ignores_fields == "transcribe_on_end,title"
