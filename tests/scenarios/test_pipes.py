"""A pipeline that stops reading (``batcher run - --results - | head -1``) is a stop, not a crash.

The reader is a real pipe whose read end the test closes before batcher writes: every write
then fails with EPIPE, exactly as after ``head -1`` exits.
"""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from ..conftest import ENV, outcomes, read_jsonl


async def run_with_closed_stdout(args: list[str], stdin: bytes) -> tuple[int, str]:
    """Run batcher with stdout a pipe nobody reads (its read end closed); returns (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "batcher", *args, env=ENV,
            stdin=asyncio.subprocess.PIPE, stdout=write_end, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(write_end)
    _, err = await proc.communicate(stdin)
    return proc.returncode, err.decode()


async def test_results_to_a_closed_pipe_stop_the_job_resumably_without_a_traceback(server, tmp_path):
    ids = server.add(6)
    lines = b"".join(orjson.dumps({"meeting_id": m, "title": "piped"}) + b"\n" for m in ids)
    state = tmp_path / "s.db"
    args = ["run", "-", "--state", str(state), "--results", "-", "--base-url", server.base_url, "--concurrency", "1"]

    code, err = await run_with_closed_stdout(args, lines)

    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code == 130, err
    assert "rows -" in err, "the summary still goes to stderr"
    assert "stdout was closed by its reader; state saved" in err and "resume with: batcher run -" in err
    assert (tmp_path / "s.db.failures.jsonl").exists(), "the report was written"
    assert "pending" not in outcomes(state)

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", *args, env=ENV,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err2 = await proc.communicate(lines)
    assert proc.returncode == 0, err2.decode()
    assert outcomes(state) == {"succeeded": 6}
    assert all(server.doc(m)["title"] == "piped" for m in ids)
    assert read_jsonl(tmp_path / "s.db.failures.jsonl") == []


async def test_plan_into_a_closed_pipe_ends_quietly(server, tmp_path):
    ids = server.add(3)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"meeting_id": m, "title": "planned"}) + b"\n" for m in ids))

    code, err = await run_with_closed_stdout(["plan", str(src), "--base-url", server.base_url], b"")

    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert code == 130, err
    assert "stdout was closed by its reader" in err
    assert server.api.requests["PUT"] == 0
