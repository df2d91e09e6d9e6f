"""plan shows exactly what run does, and sends no write."""

from __future__ import annotations

import copy

from batcher.commands.plan import plan_job
from batcher.run.engine import run_job

from ..conftest import config, read_jsonl, write_csv, write_jsonl

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


STORED_S3 = {
    "type": "aws",
    "bucket": "b",
    "region": "us-east-1",
    "access_key": "OLD-AK-CANARY",
    "secret": "OLD-S-CANARY",
}


async def test_plan_and_run_agree_that_60_and_60_0_are_unchanged(server, tmp_path):
    [mid] = server.add(session_keep_alive_time_in_secs=60, recording_config={"max_seconds": 600})
    row = {"meeting_id": mid, "session_keep_alive_time_in_secs": 60.0, "recording_config": {"max_seconds": 600.0}}
    src = write_jsonl(tmp_path / "in.jsonl", [row])
    await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert (line["action"], line["changes"]) == ("unchanged", [])
    result = await run_job(config(tmp_path, server, src))
    assert result.summary["unchanged"] == 1 and server.api.requests["PUT"] == 0


async def test_plan_in_replace_mode_shows_the_put_run_will_send(server, tmp_path):
    [mid] = server.add()  # already at the defaults: run PUTs anyway (replace reads nothing first)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "persist_chat": False}])
    await plan_job(config(tmp_path, server, src, mode="replace"), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert line["action"] == "update"
    result = await run_job(config(tmp_path, server, src, mode="replace"))
    assert result.summary["succeeded"] == 1 and server.api.requests["PUT"] == 1


async def test_plan_error_lines_for_the_credential_guard_have_a_status(server, tmp_path):
    [mid] = server.add(recording_config={"storage_config": STORED_S3})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "x"}])
    await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert line["error"] == "credential_guard" and "status" in line and line["status"] is None and line["message"]


PLAIN_KEYS = {"access_key": "AK", "secret": "S"}


async def test_plan_shows_a_merged_document_refusal_as_an_error_of_its_own_kind(server, tmp_path):
    """Guards plan: a merged document lacking a required field is an error line of the kind ``invalid_merged``."""
    [mid] = server.add()
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "recording_config": {"storage_config": PLAIN_KEYS}}])
    result = await plan_job(config(tmp_path, server, src), str(tmp_path / "plan.jsonl"))
    [line] = read_jsonl(tmp_path / "plan.jsonl")
    assert (line["action"], line["error"], result.exit_code) == ("error", "invalid_merged", 1)
