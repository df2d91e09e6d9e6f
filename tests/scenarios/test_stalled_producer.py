"""A pipeline whose producer stalls: rows received are sent, and Ctrl-C is obeyed at once.

Stdin is read off the event loop (``input/stdin_lines.py``). Before, a pending read froze the job:
nothing was sent for rows already received, and a Ctrl-C waited for the pipe to close, then sent
every row read meanwhile. Each test keeps the producer's end of the pipe open (a stalled ``jq``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import orjson

from ..conftest import ENV, when_requests_reach

GENEROUS_S = 60.0  # an upper bound on a wait that ends as soon as the event comes (never slept)


async def _start(server, state: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", "run", "-", "--state", state, "--base-url", server.base_url,
        "--rate", "none", "--concurrency", "2",
        env=ENV, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


def _lines(ids: list[str]) -> bytes:
    return b"".join(orjson.dumps({"meeting_id": m, "title": "new"}) + b"\n" for m in ids)


async def test_rows_received_are_sent_while_the_producer_stalls(server, tmp_path):
    ids = server.add(3, title="orig")
    reached = when_requests_reach(server, 6)  # a GET and a PUT for each of the three rows
    proc = await _start(server, str(tmp_path / "job.db"))
    assert proc.stdin is not None
    proc.stdin.write(_lines(ids))
    await proc.stdin.drain()  # and then nothing more: the pipe stays open
    try:
        await asyncio.wait_for(reached.wait(), GENEROUS_S)
        assert all(server.doc(m)["title"] == "new" for m in ids)
        assert proc.returncode is None, "still waiting for more rows"
    finally:
        proc.stdin.close()
        await proc.wait()
    assert proc.returncode == 0


async def test_ctrl_c_while_the_producer_stalls_ends_the_job_at_once_and_sends_nothing_more(server, tmp_path):
    first, later = server.add(2, title="orig"), server.add(3, title="orig")
    reached = when_requests_reach(server, 4)
    proc = await _start(server, str(tmp_path / "job.db"))
    assert proc.stdin is not None
    proc.stdin.write(_lines(first))
    await proc.stdin.drain()
    await asyncio.wait_for(reached.wait(), GENEROUS_S)
    puts_before = server.api.requests["PUT"]

    os.kill(proc.pid, signal.SIGINT)  # the producer is still stalled, its pipe open
    code = await asyncio.wait_for(proc.wait(), GENEROUS_S)
    _, err = await proc.communicate()

    assert code == 130, err.decode()
    assert b"resume" in err
    proc.stdin.write(_lines(later)) if not proc.stdin.is_closing() else None
    assert server.api.requests["PUT"] == puts_before == 2
    assert all(server.doc(m)["title"] == "orig" for m in later)
