"""Shared fixtures: the project's fake API on 127.0.0.1, port 0, and job helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings

from batcher.core.config import JobConfig, Secret, parse_rate
from batcher.fake.server import FakeApi, start
from batcher.http.budget import default_budget_path

# One profile everywhere (CI and laptops): no deadline and no "too slow" check, because the
# first @given test pays Hypothesis' start-up on a loaded 2-core machine; derandomized, so a
# failure replays identically.
settings.register_profile(
    "batcher",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    max_examples=100,
)
settings.load_profile("batcher")

ACCOUNT = "acct-1"
TOKEN = "test-token-CANARY-7f3a"


class Server:
    """A running fake API and what a test needs to talk to it."""

    def __init__(self, api: FakeApi, port: int) -> None:
        self.api = api
        self.base_url = f"http://127.0.0.1:{port}"

    def add(self, n: int = 1, account: str = ACCOUNT, **fields: Any) -> list[str]:
        """Add ``n`` meetings with ``fields``; returns their ids."""
        return [self.api.add_meeting(account, str(uuid.uuid4()), **fields) for _ in range(n)]

    def doc(self, meeting_id: str, account: str = ACCOUNT) -> dict[str, Any]:
        """The stored meeting (secrets included)."""
        return self.api.meetings[(account, meeting_id)]


@pytest.fixture(autouse=True)
def _private_cache(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rate budget files (budget.py) go to a fresh cache per test, never the user's ~/.cache.

    One budget per token is the point of that file, so tests (which share a
    token) would otherwise pace each other; a module's ``ENV`` dict for
    subprocesses gets the same cache, and ``config()`` names the budget file in
    it as the command line would (the library reads no environment variable).
    """
    cache = str(tmp_path_factory.mktemp("cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", cache)
    env = getattr(request.module, "ENV", None)
    if isinstance(env, dict):
        monkeypatch.setitem(env, "XDG_CACHE_HOME", cache)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    api = FakeApi(seed=1)
    runner, port = await start(api)
    try:
        yield Server(api, port)
    finally:
        await runner.cleanup()


def config(tmp_path: Path, server: Server | None, input_path: Path | str, **overrides: Any) -> JobConfig:
    """A JobConfig pointed at the fake API with test-friendly defaults (no rate limit)."""
    values: dict[str, Any] = {
        "input": str(input_path),
        "token": Secret(TOKEN),
        "base_url": server.base_url if server else "http://127.0.0.1:9",
        "account_id": ACCOUNT,
        "rate": None,
        "concurrency": 4,
        "timeout_s": 5.0,
        "state_path": str(tmp_path / "job.state.db"),
        "report_path": str(tmp_path / "failures.jsonl"),
    }
    if "rate" in overrides and isinstance(overrides["rate"], str):
        overrides["rate"] = parse_rate(overrides["rate"])
    values.update(overrides)
    if values.get("budget_path") is None:  # the command line's default, in this test's private cache
        values["budget_path"] = str(default_budget_path(values["token"].reveal(), os.environ))
    return JobConfig(**values)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as JSONL."""
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    """Write a simple CSV (cells already strings)."""
    lines = [",".join(header)] + [",".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSONL file."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
