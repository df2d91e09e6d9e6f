"""One budget per token, end to end: two `batcher run` processes, measured at the server."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from asyncio.subprocess import PIPE

from batcher.commands.rollback import rollback_job
from batcher.core.config import Secret
from batcher.run.engine import run_job

from ..conftest import ACCOUNT, TOKEN, config, write_jsonl
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


async def test_a_job_resumed_with_a_new_token_keeps_its_rate_over_its_earlier_starts(server, tmp_path):
    """The README's recovery from a 401 is "fix the token; re-run": the new token's budget file is
    empty, but Cloudflare counts per user, and the job's state knows when its requests started."""
    server.api.arrivals = []
    present = server.add(6)
    absent = [str(uuid.uuid4()) for _ in range(6)]  # 404 in the first run, there for the second
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "t"} for m in present + absent])
    first = await run_job(config(tmp_path, server, src, mode="replace", rate="6/2", token=Secret("token-one")))
    assert (first.summary["succeeded"], first.summary["failed"]) == (6, 6)
    for meeting in absent:
        server.api.add_meeting(ACCOUNT, meeting)
    again = config(tmp_path, server, src, mode="replace", rate="6/2", token=Secret("token-two"), retry_failed=True)
    second = await run_job(again)
    assert second.summary["succeeded"] == 12 and len(server.api.arrivals) == 18
    assert worst_window(server.api.arrivals, 2.0 - JITTER_S) <= 6, "6/2 across both runs, whatever the token"


async def test_a_rollback_with_a_new_token_keeps_the_rate_over_the_jobs_own_starts(server, tmp_path):
    server.api.arrivals = []
    ids = server.add(6)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "t"} for m in ids])
    run = await run_job(config(tmp_path, server, src, rate="10/1", token=Secret("token-one")))
    assert run.summary["succeeded"] == 6 and len(server.api.arrivals) == 12  # GET + PUT each
    back = await rollback_job(config(tmp_path, server, src, rate="10/1", token=Secret("token-two")))
    assert back.exit_code == 0 and all(server.doc(m)["title"] != "t" for m in ids)
    assert worst_window(server.api.arrivals, 1.0 - JITTER_S) <= 10, "10/1 across the job and its rollback"
