"""plan shows exactly what run does; rollback puts back exactly what was there."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

from batcher.commands.plan import plan_job
from batcher.commands.rollback import rollback_job
from batcher.run.engine import run_job
from batcher.run.pool import Control

from ..conftest import config, read_jsonl, run_cli, start_cli, when_requests_reach, write_csv, write_jsonl

INPUTS = Path(__file__).resolve().parents[2] / "inputs"
KEYS = {"type": "aws", "bucket": "b", "access_key": "AK-CANARY", "secret": "SECRET-CANARY"}


async def test_plan_sends_no_put_and_its_diff_is_what_run_does(server, tmp_path):
    a, b = server.add(2, title="t", transcribe_on_end=True)
    [c] = server.add(ai_config={"transcription": {"language": "fr"}})
    rows = [[a, "fr", "true"], [b, "de", ""], [c, "fr", ""], ["11111111-2222-4333-8444-555555555555", "fr", ""]]
    src = write_csv(tmp_path / "in.csv", ["meeting_id", "ai_config.transcription.language", "summarize_on_end"], rows)
    before = copy.deepcopy(server.api.meetings)
    result = await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    assert result.exit_code == 1 and server.api.requests == {"GET": 4}
    plan = {line["row"]: line for line in read_jsonl(tmp_path / "plan.jsonl")}
    assert plan[1]["changes"] == [
        {"path": "ai_config.transcription.language", "before": "en-US", "after": "fr"},
        {"path": "summarize_on_end", "before": False, "after": True},
    ]
    assert (plan[3]["action"], plan[4]["action"], plan[4]["error"]) == ("unchanged", "error", "not_found")
    await run_job(config(tmp_path, server, src))
    for row, mid in ((1, a), (2, b)):
        changed = {
            path: (value, _get(server.doc(mid), path))
            for path in {ch["path"] for ch in plan[row]["changes"]}
            for value in [_get(before[("acct-1", mid)], path)]
        }
        assert {p: {"before": v[0], "after": v[1]} for p, v in changed.items()} == {
            ch["path"]: {"before": ch["before"], "after": ch["after"]} for ch in plan[row]["changes"]
        }
        assert {k: v for k, v in server.doc(mid).items() if k != "ai_config" and k != "summarize_on_end"} == {
            k: v for k, v in before[("acct-1", mid)].items() if k != "ai_config" and k != "summarize_on_end"
        }


def _get(doc, path):
    for key in path.split("."):
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


async def test_plan_redacts_secrets_and_flags_the_guard(server, tmp_path):
    [guarded] = server.add(recording_config={"storage_config": KEYS})
    [fresh] = server.add()
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"meeting_id": guarded, "title": "x"}, {"meeting_id": fresh, "recording_config": {"storage_config": KEYS}}],
    )
    await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    text = (tmp_path / "plan.jsonl").read_text()
    assert "CANARY" not in text and '"***"' in text
    lines = {line["row"]: line for line in read_jsonl(tmp_path / "plan.jsonl")}
    assert lines[1]["error"] == "credential_guard" and lines[2]["action"] == "update"


async def test_rollback_restores_the_exact_before_state(server, tmp_path):
    ids = server.add(5, title="orig", transcribe_on_end=True, recording_config={"max_seconds": 600})
    original = copy.deepcopy(server.api.meetings)
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"meeting_id": m, "title": "new", "recording_config": {"max_seconds": 7200}} for m in ids],
    )
    assert (await run_job(config(tmp_path, server, src))).exit_code == 0
    assert server.doc(ids[0])["title"] == "new"
    result = await rollback_job(config(tmp_path, server, src))
    assert result.exit_code == 0 and result.counts["succeeded"] == 5
    assert server.api.meetings == original
    again = await rollback_job(config(tmp_path, server, src))
    assert again.exit_code == 0 and sum(again.counts.values()) == 0, "a finished rollback sends nothing"


async def test_rollback_reports_conflicts_and_force_overrides(server, tmp_path):
    a, b = server.add(2, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in (a, b)])
    await run_job(config(tmp_path, server, src))
    server.doc(b)["title"] = "someone else"
    result = await rollback_job(config(tmp_path, server, src))
    assert result.exit_code == 1 and result.counts == {"succeeded": 1, "conflict": 1}
    [entry] = read_jsonl(tmp_path / "failures.jsonl")  # config() names the report
    assert (entry["meeting_id"], entry["error"]) == (b, "conflict")
    assert server.doc(b)["title"] == "someone else"
    forced = await rollback_job(config(tmp_path, server, src, force=True))
    assert forced.exit_code == 0 and server.doc(b)["title"] == "orig"


async def test_rollback_will_not_erase_credentials_it_cannot_restore(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": KEYS})
    new = {**KEYS, "bucket": "moved"}
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "recording_config": {"storage_config": new}}])
    await run_job(config(tmp_path, server, src))
    result = await rollback_job(config(tmp_path, server, src))
    assert result.counts == {"credential_guard": 1}
    assert server.doc(mid)["recording_config"]["storage_config"]["bucket"] == "moved"


async def test_rollback_resumes_after_kill(server, tmp_path):
    ids = server.add(200, title="orig")
    original = copy.deepcopy(server.api.meetings)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    assert (await run_job(config(tmp_path, server, src, state_path=str(tmp_path / "s.db")))).exit_code == 0
    args = ("rollback", "--state", str(tmp_path / "s.db"), "--rate", "none", "-q")
    reached = when_requests_reach(server, sum(server.api.requests.values()) + 150)
    proc = await start_cli(*args, base_url=server.base_url)
    done = asyncio.ensure_future(proc.wait())
    await asyncio.wait({done, asyncio.ensure_future(reached.wait())}, return_when=asyncio.FIRST_COMPLETED)
    proc.kill()
    await done
    server.api.on_request = None
    assert server.api.meetings != original, "killed part-way"
    code, _, err = await run_cli(*args, base_url=server.base_url)
    assert code == 0, err
    assert server.api.meetings == original


async def test_demo_inputs_plan_run_rollback_leave_the_api_as_it_began(server, tmp_path):
    server.api.load_seed((INPUTS / "seed-meetings.jsonl").read_bytes().splitlines())
    original = copy.deepcopy(server.api.meetings)
    for name in ("french-transcription.csv", "recording-limits.csv", "own-s3-bucket.jsonl"):
        state = str(tmp_path / f"{name}.state.db")
        cfg = config(
            tmp_path,
            server,
            INPUTS / name,
            account_id="demo-account",
            state_path=state,
            report_path=str(tmp_path / f"{name}.f.jsonl"),
        )
        planned = await plan_job(cfg, str(tmp_path / f"{name}.plan.jsonl"))
        ran = await run_job(cfg, control=Control())
        assert ran.summary["succeeded"] == planned.counts["update"], name
        assert ran.summary["failed"] == planned.counts["credential_guard"], name
    assert server.api.meetings != original
    for name in ("own-s3-bucket.jsonl", "recording-limits.csv", "french-transcription.csv"):
        cfg = config(
            tmp_path, server, INPUTS / name, account_id="demo-account", state_path=str(tmp_path / f"{name}.state.db")
        )
        assert (await rollback_job(cfg)).exit_code == 0, name
    assert server.api.meetings == original


async def test_plan_summary_counts_each_kind(server, tmp_path):
    [mid] = server.add()
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"meeting_id": mid, "title": "x"},
            {"meeting_id": "11111111-2222-4333-8444-555555555555"},
            {"meeting_id": "bad"},
        ],
    )
    result = await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    assert result.exit_code == 1
    assert (
        "1 would change, 0 unchanged, 1 invalid, 1 not found, 0 other errors, 0 would trip the credential guard"
        in result.message
    )


async def test_a_run_killed_between_snapshot_and_put_can_still_be_rolled_back(server, tmp_path):
    ids = server.add(300, title="orig", transcribe_on_end=True)
    original = copy.deepcopy(server.api.meetings)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    server.api.latency_s = 0.002
    reached = when_requests_reach(server, 250)
    proc = await start_cli("run", str(src), "--rate", "none", "--concurrency", "16", "-q", base_url=server.base_url)
    done = asyncio.ensure_future(proc.wait())
    await asyncio.wait({done, asyncio.ensure_future(reached.wait())}, return_when=asyncio.FIRST_COMPLETED)
    proc.kill()
    await done
    server.api.on_request = None
    changed = [m for m in ids if server.doc(m)["title"] == "new"]
    assert 0 < len(changed) < len(ids), "killed mid-run"
    code, _, err = await run_cli(
        "rollback", "--state", str(src) + ".state.db", "--rate", "none", base_url=server.base_url
    )
    assert code == 0, err
    assert server.api.meetings == original, "every meeting the killed run changed had its before-state saved first"
