"""Shared fixtures: the project's fake API on 127.0.0.1, port 0, and job helpers."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings

from batcher.core.config import JobConfig, Secret, parse_rate
from batcher.fake.server import FakeApi, start

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
    token) would otherwise pace each other. The subprocesses' environment
    (``ENV`` here, which ``cli``/``run_cli``/``start_cli`` use, and a test
    module's own ``ENV`` dict) gets the same cache.
    """
    cache = str(tmp_path_factory.mktemp("cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", cache)
    monkeypatch.setitem(ENV, "XDG_CACHE_HOME", cache)
    env = getattr(request.module, "ENV", None)
    if isinstance(env, dict) and env is not ENV:
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


# -- the CLI as a real subprocess (kills driven by the server's request counter, never by sleeping) --

ENV = {**os.environ, "CLOUDFLARE_API_TOKEN": TOKEN, "CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "PYTHONUNBUFFERED": "1"}


def cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run batcher synchronously (for commands that need no server)."""
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        input=stdin.decode() if stdin else None,
        timeout=120,
    )


async def start_cli(*args: str, base_url: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", *args, "--base-url", base_url,
        env=env or ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def run_cli(*args: str, base_url: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await start_cli(*args, base_url=base_url, env=env)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


def when_requests_reach(server, count: int) -> asyncio.Event:
    """An event set once the fake API has seen ``count`` API requests in total."""
    reached = asyncio.Event()
    server.api.on_request = lambda total: reached.set() if total >= count else None
    return reached


async def kill_at(server, args: tuple[str, ...], thresholds: tuple[int, ...]) -> int:
    """Run the CLI once per threshold, ``kill -9`` it when the server has seen that many requests
    (unless it finished first); returns how many kills there were."""
    kills = 0
    for threshold in thresholds:
        reached = when_requests_reach(server, threshold)
        proc = await start_cli(*args, base_url=server.base_url)
        done = asyncio.ensure_future(proc.wait())
        await asyncio.wait({done, asyncio.ensure_future(reached.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            proc.kill()
            kills += 1
        await done
    server.api.on_request = None
    return kills


def outcomes(state: Path) -> dict[str, int]:
    with sqlite3.connect(state) as db:
        return dict(db.execute("SELECT outcome, COUNT(*) FROM rows GROUP BY outcome").fetchall())


# -- canaries: secrets that must never reach a file, a stream or a repr --

CANARIES = (TOKEN, "AKIA-CANARY-ACCESS", "CANARY-SECRET-VALUE", "CANARY-SFTP-PASSWORD", "CANARY-PRIVATE-KEY")


def assert_no_canary(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for canary in CANARIES:
        assert canary.encode() not in data, f"{canary} leaked into {where}"
