"""Rollback puts back exactly what was there, reports like run, goes only to the job's server, and refuses jobs that kept no way back."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import sys
from pathlib import Path

import pytest

from batcher.commands.plan import plan_job
from batcher.commands.rollback import no_way_back, resolve_target, rollback_job
from batcher.errors import UsageError
from batcher.run.engine import run_job
from batcher.run.pool import Control
from batcher.state import rollback_log
from batcher.state.store import Store

from ..conftest import ACCOUNT, ENV, config, read_jsonl, run_cli, start_cli, when_requests_reach, write_jsonl

JOB = {"base_url": "http://a.example/client/v4", "app_id": "app1", "account_id": "acct-1", "mode": "merge"}


@pytest.mark.parametrize(
    ("given", "force", "expected"),
    [
        ({}, False, {"base_url": "http://a.example/client/v4", "app_id": "app1", "account_id": "acct-1"}),
        ({"base_url": "http://a.example/client/v4/"}, False, {"base_url": "http://a.example/client/v4"}),
        ({"base_url": "http://b.example"}, False, "base URL: the job used http://a.example/client/v4, this rollback was given http://b.example"),
        ({"base_url": "http://b.example"}, True, {"base_url": "http://b.example"}),
        ({"app_id": "app2"}, False, "app id: the job used app1, this rollback was given app2"),
        ({"account_id": "other"}, False, "account: the job used acct-1, this rollback was given other"),
        ({"account_id": "acct-1", "app_id": "app1"}, False, {"app_id": "app1"}),
        ({"app_id": "app1"}, False, {"app_id": "app1"}),
    ],
    ids=["nothing-given", "same-url", "other-url", "other-url-forced", "other-app", "other-account", "same-app-account", "same-app"],
)  # fmt: skip
def test_resolve_target_table(given, force, expected):
    full = {"base_url": None, "app_id": None, "account_id": None, **given}
    if isinstance(expected, str):
        with pytest.raises(UsageError, match=re.escape(expected)):
            resolve_target(JOB, full, force=force)
        return
    target, differences = resolve_target(JOB, full, force=force)
    assert {k: target[k] for k in expected} == expected
    assert bool(differences) == (force and given.get("base_url") == "http://b.example")


def test_resolve_target_without_a_recorded_job_uses_what_is_given_or_the_default():
    target, _ = resolve_target(None, {"base_url": None, "app_id": None, "account_id": None}, force=False)
    assert target["base_url"] == "https://api.cloudflare.com/client/v4"
    job_without_account = {**JOB, "account_id": None}
    assert resolve_target(job_without_account, {"account_id": "x"}, force=False)[0]["account_id"] == "x"
    with pytest.raises(UsageError, match="app id: the job used none"):
        resolve_target({**JOB, "app_id": None}, {"app_id": "x"}, force=False)


@pytest.mark.parametrize(("mode", "snapshots"), [("replace", 0), ("patch", 0), ("merge", 0), ("replace", 3)])
def test_no_way_back_only_for_replace_and_patch_jobs_without_snapshots(mode, snapshots):
    why = no_way_back({"mode": mode}, snapshots)
    assert (why is not None) == (mode != "merge" and snapshots == 0)
    if why:
        assert f"{mode} mode" in why and "kept no before-state" in why and "--mode merge" in why


@pytest.mark.parametrize("mode", ["replace", "patch"])
async def test_rollback_of_a_replace_or_patch_job_is_refused_with_a_reason(server, tmp_path, mode):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    code, _, err = await run_cli("run", str(src), "--mode", mode, base_url=server.base_url)
    assert code == 0, err
    requests = sum(server.api.requests.values())
    code, _, err = await run_cli("rollback", "--state", f"{src}.state.db", base_url=server.base_url)
    assert code == 2, err
    assert f"this job ran in {mode} mode" in err and "kept no before-state" in err
    assert "0 meetings changed" not in err and sum(server.api.requests.values()) == requests


async def test_rollback_reports_results_summary_and_stops_on_max_failures(server, tmp_path):
    a, b, c = server.add(3, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in (a, b, c)])
    await run_job(config(tmp_path, server, src))
    server.doc(a)["title"] = server.doc(b)["title"] = "someone else"
    args = ["rollback", "--state", str(tmp_path / "job.state.db"), "--rate", "none", "--concurrency", "1"]
    outputs = ["--results", str(tmp_path / "r.jsonl"), "--summary-json", str(tmp_path / "s.json")]
    code, _, err = await run_cli(*args, *outputs, "--max-failures", "0", base_url=server.base_url)
    assert code == 3, err
    assert "--max-failures" in err
    code, _, err = await run_cli(*args, *outputs, "--report", str(tmp_path / "f.csv"), base_url=server.base_url)
    assert code == 1, err
    results = read_jsonl(tmp_path / "r.jsonl")
    # one line per judgement: the halted run judged a only; the second judged all three again
    # (a conflict is judged again by every rollback)
    assert [(r["meeting_id"], r["outcome"], r.get("error")) for r in results] == [
        (a, "failed", "conflict"),
        (a, "failed", "conflict"),
        (b, "failed", "conflict"),
        (c, "succeeded", None),
    ]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert {k: summary[k] for k in ("total", "succeeded", "unchanged", "failed", "skipped")} == {
        "total": 3,
        "succeeded": 1,
        "unchanged": 0,
        "failed": 2,
        "skipped": 0,
    }
    assert summary["landed"]["failed"] == {"conflict": 2} and summary["requests"] >= 4
    report = (tmp_path / "f.csv").read_text().splitlines()
    assert report[0].startswith("row,meeting_id,account_id,error") and len(report) == 3


async def _rollback_without_flags(state: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", "rollback", "--state", state, "--rate", "none",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    return proc.returncode, err.decode()


async def test_rollback_goes_to_the_jobs_server_and_refuses_another_one(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    code, _, err = await run_cli("run", str(src), base_url=server.base_url)
    assert code == 0, err
    state = f"{src}.state.db"
    elsewhere = "http://127.0.0.1:9/client/v4"
    code, err = await _rollback_without_flags(state, {**ENV, "BATCHER_BASE_URL": elsewhere})
    assert code == 2, err
    assert f"the job used {server.base_url}" in err and f"given {elsewhere}" in err
    code, _, err = await run_cli("rollback", "--state", state, "--app-id", "other", base_url=server.base_url)
    assert code == 2 and "app id: the job used none (the /realtimekit/ path), this rollback was given other" in err
    assert server.doc(mid)["title"] == "new"
    env = {k: v for k, v in ENV.items() if k not in ("BATCHER_BASE_URL", "BATCHER_APP_ID")}
    code, err = await _rollback_without_flags(state, env)
    assert code == 0, err
    assert server.doc(mid)["title"] == "orig", "no flag: the recorded base URL, not the default"


async def test_library_rollback_refuses_a_config_pointing_elsewhere_unless_forced(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    with pytest.raises(UsageError, match=re.escape("this rollback was given http://127.0.0.1:9")):
        await rollback_job(config(tmp_path, None, src))
    with pytest.raises(UsageError, match="account: the job used acct-1"):
        await rollback_job(config(tmp_path, server, src, account_id="acct-2"))
    assert server.doc(mid, ACCOUNT)["title"] == "new"


INPUTS = Path(__file__).resolve().parents[2] / "inputs"


KEYS = {"type": "aws", "bucket": "b", "access_key": "AK-CANARY", "secret": "SECRET-CANARY"}


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


async def test_a_rollback_killed_before_its_summary_has_counted_its_requests(server, tmp_path, monkeypatch):
    """Guards rollback's request counters: committed with the outcomes, not only in the end-of-run summary."""
    ids = server.add(3, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    await run_job(config(tmp_path, server, src))

    def killed(*_args, **_kwargs):
        raise SystemExit("killed")  # as a kill after the last meeting, before the end-of-run summary

    monkeypatch.setattr("batcher.commands.rollback.write_report", killed)
    with pytest.raises(SystemExit):
        await rollback_job(config(tmp_path, server, src))
    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        assert rollback_log.stats(store.db)["requests"] == 6  # a GET and a PUT per meeting
    finally:
        store.close()


async def test_a_rollback_whose_results_file_cannot_open_releases_the_state(server, tmp_path):
    """Guards rollback's start-up: a ``--results`` file that cannot open releases the state's lock."""
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    with pytest.raises(OSError) as caught:  # its traceback stays alive: no garbage collector's help
        await rollback_job(config(tmp_path, server, src, results_path=str(tmp_path / "no" / "such" / "dir.jsonl")))
    Store.open(str(tmp_path / "job.state.db")).close()  # not "in use by another batcher process"
    assert caught.value is not None
