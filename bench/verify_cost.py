"""What ``batcher verify`` costs on the app path: requests a meeting after a clean job, and after
someone else changed 7 meetings (issue #22's figures), against the in-process fake API.

    .venv/bin/python bench/verify_cost.py [N ...]      # default: 300 1000 10000
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

import orjson

from batcher.commands.verify import verify_job
from batcher.core.config import JobConfig, Secret
from batcher.fake.server import FakeApi, start
from batcher.run.engine import run_job

ACCOUNT, APP, DRIFTED = "acct-1", "app-1", 7


async def measure(n: int) -> str:
    api = FakeApi(seed=1)
    runner, port = await start(api)
    try:
        tmp = Path(tempfile.mkdtemp())
        ids = [api.add_meeting(ACCOUNT, str(uuid.uuid4()), title="old") for _ in range(n)]
        src = tmp / "in.jsonl"
        src.write_bytes(b"".join(orjson.dumps({"meeting_id": m, "title": "new"}) + b"\n" for m in ids))
        cfg = JobConfig(
            input=str(src),
            token=Secret("t"),
            base_url=f"http://127.0.0.1:{port}",
            account_id=ACCOUNT,
            app_id=APP,
            rate=None,
            concurrency=8,
            budget_path=str(tmp / "budget.db"),
        )
        assert (await run_job(cfg)).exit_code == 0
        clean = await verify_job(cfg, str(tmp / "verify.jsonl"))
        for meeting in ids[:DRIFTED]:
            api.edit(ACCOUNT, meeting, {"record_on_start": True})
        drift = await verify_job(cfg, str(tmp / "verify.jsonl"))
        return (
            f"{n} meetings: clean exit {clean.exit_code}, {clean.requests} requests ({clean.requests / n:.4f} a meeting); "
            f"{DRIFTED} drifted: exit {drift.exit_code}, {drift.requests} requests "
            f"({(drift.requests - DRIFTED) / n:.4f} a meeting + {DRIFTED} GETs), {dict(drift.counts)}"
        )
    finally:
        await runner.cleanup()


async def main(sizes: list[int]) -> None:
    for n in sizes:
        print(await measure(n), flush=True)


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [300, 1000, 10000]))
