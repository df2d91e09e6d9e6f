"""One budget per token, end to end: two `batcher run` processes, measured at the server."""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE

from ..conftest import ACCOUNT, TOKEN, write_jsonl
from ..fake_time import worst_window

ENV = {**os.environ, "CLOUDFLARE_API_TOKEN": TOKEN, "CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "PYTHONUNBUFFERED": "1"}
JITTER_S = 0.1  # arrival jitter on a loaded machine: the windows checked are this much shorter


async def test_two_processes_with_one_token_share_one_rate_at_the_server(server, tmp_path):
    server.api.arrivals = []
    ids = server.add(24)
    runs = []
    for name, half in (("a", ids[:12]), ("b", ids[12:])):
        src = write_jsonl(tmp_path / f"{name}.jsonl", [{"meeting_id": m, "title": name} for m in half])
        argv = ["run", str(src), "--mode", "replace", "--rate", "6/1", "--concurrency", "4", "-q"]
        argv += ["--base-url", server.base_url]
        runs.append(await asyncio.create_subprocess_exec(sys.executable, "-m", "batcher", *argv, env=ENV, stderr=PIPE))
    codes = [(await p.communicate(), p.returncode)[1] for p in runs]
    assert codes == [0, 0] and len(server.api.arrivals) == 24
    assert worst_window(server.api.arrivals, 1.0 - JITTER_S) <= 6, "6/1 for the token, not 6/1 per process"
