"""The whole migration as a user runs it, every step a real ``batcher`` process.

export (filtered, several pages, --full) -> a canary against a copy whose account ignores a field
(exit 3), and a clean --canary-only then the rest against a healthy copy -> the export seeds a
rehearsal fake API -> an ids-only stream with --set -> status --json while the job is paused on
Retry-After and after it ends -> verify (as written; then someone else's change is drifted) ->
rollback -> verify against what the rollback left.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid

from batcher.commands.status import read_status
from batcher.errors import UsageError
from batcher.fake.listing import Listing
from batcher.fake.server import FakeApi, start

from ..conftest import ACCOUNT, TOKEN, read_jsonl

ENV = {**os.environ, "CLOUDFLARE_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
# The rehearsal API answers this many PUTs in a row with 429 and a short Retry-After: the job is
# paused (with only a request's gap between pauses) long enough for a `batcher status` process
# to start and look, however loaded the machine; each retried row still has attempts to spare.
PAUSES, RETRY_AFTER_S = 3, 2
APP = "app-1"


def paused_until(state: str) -> str | None:
    """The state's pause as status reports it; None also while the job is still creating its state."""
    try:
        return read_status(state)["paused_until"]
    except UsageError:
        return None


async def batcher(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", *args, env=ENV,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(stdin)
    return proc.returncode, out.decode(), err.decode()


async def test_export_seed_set_status_rollback(tmp_path):
    # The "production" API: 1-based pages of at most 4, Paris and Lyon meetings.
    prod = FakeApi(seed=1, listing=Listing(page_base=1, max_per_page=4))
    summarization = {"summarization": {"word_limit": 700}}
    paris = [
        prod.add_meeting(ACCOUNT, str(uuid.uuid4()), title=f"Paris {i}", ai_config=summarization) for i in range(6)
    ]
    for i in range(5):
        prod.add_meeting(ACCOUNT, str(uuid.uuid4()), title=f"Lyon {i}")
    prod_runner, prod_port = await start(prod)
    export = tmp_path / "export.jsonl"
    try:
        code, _, err = await batcher(
            "export", "--account-id", ACCOUNT, "--app-id", APP, "--search", "Paris", "--full",
            "--per-page", "10", "--out", str(export), "--base-url", f"http://127.0.0.1:{prod_port}/client/v4",
        )  # fmt: skip
    finally:
        await prod_runner.cleanup()
    assert code == 0, err
    assert "listed 6 meetings of total_count 6 in 2 pages" in err  # 4 + 2: the server's cap, not our ask
    lines = read_jsonl(export)
    assert sorted(line["meeting_id"] for line in lines) == sorted(paris)
    assert all(line["ai_config"]["summarization"]["word_limit"] == 700 for line in lines)  # --full
    code, _, err = await batcher("validate", str(export))  # the export is also a valid run input
    assert code == 0 and "6 rows: 6 valid, 0 invalid" in err

    # A canary first, against a copy whose account ignores the language: stopped after its first row.
    await _canary_steps(tmp_path, export)

    # The export seeds a rehearsal API; its first PUTs are answered 429 with a short Retry-After.
    rehearsal = FakeApi(seed=2)
    assert rehearsal.load_seed(export.read_bytes().splitlines()) == 6
    rehearsal.faults.append({"method": "PUT", "status": 429, "retry_after": RETRY_AFTER_S, "times": PAUSES})
    runner, port = await start(rehearsal)
    base = f"http://127.0.0.1:{port}/client/v4"
    state = str(tmp_path / "paris.db")
    try:
        ids_only = b"".join(
            json.dumps({"meeting_id": line["meeting_id"], "account_id": line["account_id"]}).encode() + b"\n"
            for line in lines
        )
        run = ["run", "-", "--state", state, "--app-id", APP, "--base-url", base, "--concurrency", "2"]
        job = asyncio.create_task(batcher(*run, "--set", "ai_config.transcription.language=fr", stdin=ids_only))
        deadline = time.monotonic() + 60
        paused: dict[str, object] = {}
        while not paused.get("paused_until"):  # a status process that starts after a pause ended looks again
            assert time.monotonic() < deadline and not job.done(), "status never showed the Retry-After pause"
            if not paused_until(state):
                await asyncio.sleep(0.05)
                continue
            code, out, err = await batcher("status", "--state", state, "--json")
            assert code == 0, err
            paused = json.loads(out)
        assert paused["running"] is True
        assert paused["retries"] >= 1 and paused["requests"] >= 2
        assert "--set ai_config.transcription.language=fr" in paused["resume"]

        code, _, err = await job
        assert code == 0, err
        code, out, _ = await batcher("status", "--state", state, "--json")
        after = json.loads(out)
        assert {k: after[k] for k in ("total", "succeeded", "failed", "pending", "paused_until")} == {
            "total": 6,
            "succeeded": 6,
            "failed": 0,
            "pending": 0,
            "paused_until": None,
        }
        # 6 GET + 6 PUT, the 429s, and after each pause a fresh read before the PUT is sent again
        assert after["requests"] == sum(rehearsal.requests.values()) == 12 + 2 * PAUSES
        for meeting in paris:
            doc = rehearsal.meetings[(ACCOUNT, meeting)]
            assert doc["ai_config"]["transcription"]["language"] == "fr"
            assert doc["ai_config"]["summarization"]["word_limit"] == 700

        # Proven after: every meeting as the job left it; then a colleague's change shows, path by path.
        verify = ["verify", "--state", state, "--app-id", APP, "--base-url", base]
        code, out, err = await batcher(*verify)
        assert code == 0, err
        assert [json.loads(line)["verdict"] for line in out.splitlines()] == ["as_written"] * 6
        rehearsal.edit(ACCOUNT, paris[2], {"persist_chat": True})
        code, out, err = await batcher(
            *verify, "--out", str(tmp_path / "verify.jsonl"), "--html", str(tmp_path / "r.html")
        )
        assert code == 1 and f"drifted: meeting {paris[2]}" in err, err
        [drifted] = [line for line in read_jsonl(tmp_path / "verify.jsonl") if line["verdict"] != "as_written"]
        assert drifted["changes"] == [{"path": "persist_chat", "written": False, "now": True}]
        assert "<h2>Verification</h2>" in (tmp_path / "r.html").read_text()
        rehearsal.edit(ACCOUNT, paris[2], {"persist_chat": False})  # put back: the rollback may restore it

        code, _, err = await batcher("rollback", "--state", state, "--app-id", APP, "--base-url", base)
        assert code == 0, err
        for meeting in paris:
            doc = rehearsal.meetings[(ACCOUNT, meeting)]
            assert doc["ai_config"]["transcription"]["language"] == "en-US"
            assert doc["ai_config"]["summarization"]["word_limit"] == 700
        code, out, err = await batcher(*verify)  # after the rollback: compared with what it left
        assert code == 0, err
        assert [json.loads(line)["verdict"] for line in out.splitlines()] == ["as_written"] * 6
    finally:
        await runner.cleanup()


async def _canary_steps(tmp_path, export) -> None:
    """run --canary: stopped (exit 3) by a server that ignores a field; clean, --canary-only, then the rest."""
    ignoring = FakeApi(seed=3, ignores_fields=("ai_config.transcription.language",))
    ignoring.load_seed(export.read_bytes().splitlines())
    healthy = FakeApi(seed=4)
    healthy.load_seed(export.read_bytes().splitlines())
    (ignoring_runner, ignoring_port), (healthy_runner, healthy_port) = await start(ignoring), await start(healthy)
    ids = tmp_path / "ids.jsonl"  # ids only: the change comes from --set
    ids.write_bytes(
        b"".join(
            json.dumps({"meeting_id": line["meeting_id"], "account_id": line["account_id"]}).encode() + b"\n"
            for line in read_jsonl(export)
        )
    )
    try:
        job = ["run", str(ids), "--app-id", APP, "--set", "ai_config.transcription.language=fr"]
        job += ["--concurrency", "1", "--canary", "2"]
        ignored = [*job, "--state", str(tmp_path / "ignored.db"), "--base-url", f"http://127.0.0.1:{ignoring_port}"]
        code, _, err = await batcher(*ignored)
        assert code == 3, err
        assert 'ai_config.transcription.language: sent "fr", the server holds "en-US"' in err
        assert sum(ignoring.puts.values()) == 1  # the canary's first row, read back: nothing after it

        clean = [*job, "--state", str(tmp_path / "clean.db"), "--base-url", f"http://127.0.0.1:{healthy_port}"]
        code, _, err = await batcher(*clean, "--canary-only")
        assert code == 0 and "every field as sent" in err, err
        assert sum(healthy.puts.values()) == 2
        code, _, err = await batcher(*clean)  # the same command without --canary-only goes on
        assert code == 0, err
        assert sorted(healthy.puts.values()) == [1] * 6  # the canary's rows were not written again
        code, _, err = await batcher("verify", *clean[clean.index("--state") :], "--app-id", APP)
        assert code == 0, err
    finally:
        await ignoring_runner.cleanup()
        await healthy_runner.cleanup()
