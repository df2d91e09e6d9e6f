"""Merge mode's snapshots: durable before their PUT, and those ready together share one commit."""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from batcher.fake.server import FakeApi, start
from batcher.run.engine import run_job
from batcher.state.store import Store

from ..conftest import Server, config, write_jsonl

CONCURRENCY = 8


class GatedApi(FakeApi):
    """Answers GETs only once ``CONCURRENCY`` of them wait (so their rows are ready in the same
    turn), and on each PUT reads the state file through its own read-only connection: what a
    crash at that moment would leave."""

    def __init__(self) -> None:
        super().__init__(seed=1)
        self.state_path = ""
        self.gets = asyncio.Barrier(CONCURRENCY)
        self.seen_at_put: list[tuple[str, Any, bytes]] = []  # (meeting, snapshot row or None, PUT body)

    async def get_meeting(self, request: web.Request) -> web.Response:
        await self.gets.wait()
        return await super().get_meeting(request)

    async def put_meeting(self, request: web.Request) -> web.Response:
        meeting = request.match_info["meeting"]
        db = sqlite3.connect(f"file:{self.state_path}?mode=ro", uri=True)
        try:
            found = db.execute(
                "SELECT write_state, after FROM snapshots WHERE account_id = ? AND meeting_id = ?",
                (request.match_info["account"], meeting),
            ).fetchone()
        finally:
            db.close()
        self.seen_at_put.append((meeting, found, await request.read()))
        return await super().put_meeting(request)


@pytest.fixture
async def gated() -> AsyncIterator[Server]:
    api = GatedApi()
    runner, port = await start(api)
    try:
        yield Server(api, port)
    finally:
        await runner.cleanup()


def _job(tmp_path: Any, server: Server, rows: int) -> Any:
    ids = server.add(rows, title="before")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": f"after {i}"} for i, m in enumerate(ids)])
    cfg = config(tmp_path, server, src, concurrency=CONCURRENCY)
    server.api.state_path = cfg.state_file  # type: ignore[attr-defined]
    return cfg


async def test_no_put_starts_before_its_snapshot_is_committed(gated, tmp_path):
    result = await run_job(_job(tmp_path, gated, 3 * CONCURRENCY))
    assert result.exit_code == 0 and result.summary["succeeded"] == 3 * CONCURRENCY
    seen = gated.api.seen_at_put
    assert len(seen) == 3 * CONCURRENCY
    for meeting, found, body in seen:
        assert found is not None, f"PUT of {meeting} started before its snapshot was committed"
        write_state, after = found
        assert write_state == "pending"
        assert zlib.decompress(after) == orjson.dumps(orjson.loads(body))  # the snapshot of *this* PUT


async def test_snapshots_ready_together_share_one_commit(gated, tmp_path, monkeypatch):
    statements: list[str] = []
    opened = Store.open.__func__  # type: ignore[attr-defined]

    def traced(cls: type[Store], path: str) -> Store:
        store = opened(cls, path)
        store.db.set_trace_callback(statements.append)
        return store

    monkeypatch.setattr(Store, "open", classmethod(traced))
    result = await run_job(_job(tmp_path, gated, 3 * CONCURRENCY))
    assert result.exit_code == 0

    per_commit, pending = [], 0  # snapshots written by each commit that wrote any
    for statement in statements:
        if statement.startswith("INSERT INTO snapshots"):
            pending += 1
        elif statement == "COMMIT" and pending:
            per_commit.append(pending)
            pending = 0
    assert sum(per_commit) == 3 * CONCURRENCY
    # a commit per snapshot would be 24 commits of one; rows whose GETs were answered together share them
    assert max(per_commit) > 1
    assert len(per_commit) < 3 * CONCURRENCY


async def test_a_failed_snapshot_commit_sends_nothing(server, tmp_path, monkeypatch):
    [mid] = server.add(title="before")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "after"}])

    def full_disk(self: Store, snapshots: list[Any]) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "save_snapshots", full_disk)
    with pytest.raises(sqlite3.OperationalError):
        await run_job(config(tmp_path, server, src))
    assert server.api.requests == {"GET": 1}
    assert server.doc(mid)["title"] == "before"
