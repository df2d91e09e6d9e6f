"""``batcher verify --state FILE``: every meeting the job changed, compared with what the job left there.

The figures of issue #22 are tested here: after a clean job every meeting is ``as_written`` (exit 0)
for at most 0.05 requests a meeting on the app path; after someone else changes 7 meetings exactly
those 7 are ``drifted`` with their paths (exit 1), for at most 0.05 a meeting plus one GET each.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from batcher.commands.rollback import rollback_job
from batcher.commands.verify import verify_job
from batcher.run.engine import run_job
from batcher.run.pool import Control

from ..conftest import ACCOUNT, Server, config, read_jsonl, write_jsonl

N = 300


def _job(tmp_path: Path, server: Server, ids: list[str], **options: Any) -> Any:
    rows = [{"meeting_id": m, "title": "new", "persist_chat": True} for m in ids]
    return config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", rows), **options)


def _requests(server: Server) -> int:
    return sum(server.api.requests.values())


async def _verify(cfg: Any, tmp_path: Path, **kwargs: Any) -> tuple[Any, list[dict[str, Any]]]:
    out = tmp_path / "verify.jsonl"
    result = await verify_job(cfg, str(out), **kwargs)
    return result, read_jsonl(out) if out.exists() else []


async def test_after_a_clean_job_every_meeting_is_as_written_for_at_most_005_requests_a_meeting(server, tmp_path):
    ids = server.add(N, title="old")
    cfg = _job(tmp_path, server, ids, app_id="app-1")
    assert (await run_job(cfg)).exit_code == 0
    before = _requests(server)
    result, lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 0 and result.counts == {"as_written": N}
    assert {line["verdict"] for line in lines} == {"as_written"} and len(lines) == N
    assert _requests(server) - before <= 0.05 * N
    assert server.api.requests["GET"] - 0 >= 0  # read-only: nothing written by verify
    assert sum(server.api.puts.values()) == N


async def test_someone_elses_change_to_7_meetings_makes_exactly_those_7_drifted_with_their_paths(server, tmp_path):
    ids = server.add(N, title="old", record_on_start=False)
    cfg = _job(tmp_path, server, ids, app_id="app-1")
    assert (await run_job(cfg)).exit_code == 0
    changed = ids[10:17]
    for m in changed:
        server.api.edit(ACCOUNT, m, {"record_on_start": True})
    before, puts = _requests(server), sum(server.api.puts.values())
    result, lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 1 and result.counts == {"as_written": N - 7, "drifted": 7}
    drifted = {line["meeting_id"]: line for line in lines if line["verdict"] == "drifted"}
    assert set(drifted) == set(changed)
    for line in drifted.values():
        assert line["changes"] == [{"path": "record_on_start", "written": False, "now": True}]
        assert line["account_id"] == ACCOUNT and isinstance(line["row"], int)
    assert _requests(server) - before <= 0.05 * N + 7
    assert sum(server.api.puts.values()) == puts  # read-only


async def test_without_the_app_path_verify_reads_each_meeting_once(server, tmp_path):
    ids = server.add(20, title="old")
    cfg = _job(tmp_path, server, ids)
    assert (await run_job(cfg)).exit_code == 0
    server.api.edit(ACCOUNT, ids[3], {"title": "theirs"})
    before = _requests(server)
    result, lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 1 and _requests(server) - before == 20
    [line] = [line for line in lines if line["verdict"] != "as_written"]
    assert line["changes"] == [{"path": "title", "written": "new", "now": "theirs"}]


async def test_a_meeting_deleted_since_the_job_is_missing(server, tmp_path):
    ids = server.add(5, title="old")
    cfg = _job(tmp_path, server, ids, app_id="app-1")
    assert (await run_job(cfg)).exit_code == 0
    del server.api.meetings[(ACCOUNT, ids[0])]
    result, lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 1 and result.counts == {"as_written": 4, "missing": 1}
    assert [line["meeting_id"] for line in lines if line["verdict"] == "missing"] == [ids[0]]


async def test_a_meeting_that_cannot_be_read_is_unknown(server, tmp_path):
    ids = server.add(3, title="old")
    cfg = _job(tmp_path, server, ids, max_attempts=1)
    assert (await run_job(cfg)).exit_code == 0
    server.api.faults.append({"kind": "status", "status": 500, "method": "GET", "meeting": ids[1]})
    result, lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 1 and result.counts == {"as_written": 2, "unknown": 1}
    [line] = [line for line in lines if line["verdict"] == "unknown"]
    assert line["meeting_id"] == ids[1] and "500" in line["message"]


@pytest.mark.parametrize("mode", ["replace", "patch"])
async def test_replace_and_patch_jobs_are_verified_against_their_writes_answers(server, tmp_path, mode):
    ids = server.add(10, title="old")
    cfg = _job(tmp_path, server, ids, app_id="app-1", mode=mode)
    assert (await run_job(cfg)).exit_code == 0
    server.api.edit(ACCOUNT, ids[0], {"persist_chat": False})
    result, lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 1 and result.counts == {"as_written": 9, "drifted": 1}
    [line] = [line for line in lines if line["verdict"] == "drifted"]
    assert line["changes"] == [{"path": "persist_chat", "written": True, "now": False}]


async def test_after_a_rollback_verify_compares_with_what_the_rollback_left(server, tmp_path):
    ids = server.add(10, title="old")
    cfg = _job(tmp_path, server, ids, app_id="app-1")
    assert (await run_job(cfg)).exit_code == 0
    assert (await rollback_job(cfg)).exit_code == 0
    before = _requests(server)
    result, _lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 0 and result.counts == {"as_written": 10}
    assert _requests(server) - before <= 2  # the restores' answers' updated_at: the list settles them
    server.api.edit(ACCOUNT, ids[2], {"title": "new"})  # someone re-applies the job's change
    result, lines = await _verify(cfg, tmp_path)
    [line] = [line for line in lines if line["verdict"] == "drifted"]
    assert line["changes"] == [{"path": "title", "written": "old", "now": "new"}]


async def test_credentials_never_appear_in_verify_output(server, tmp_path):
    storage = {"type": "aws", "bucket": "b", "region": "us-east-1", "access_key": "AKIA-V", "secret": "S-V"}
    ids = server.add(2, title="old")
    rows = [{"meeting_id": m, "recording_config": {"storage_config": storage}} for m in ids]
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", rows))
    assert (await run_job(cfg)).exit_code == 0
    server.api.edit(ACCOUNT, ids[0], {"recording_config": {"storage_config": {**storage, "bucket": "other"}}})
    result, _lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 1
    text = (tmp_path / "verify.jsonl").read_text()
    assert "AKIA-V" not in text and "S-V" not in text and "bucket" in text


async def test_a_stopped_verify_resumes_and_judges_only_what_it_had_not(server, tmp_path):
    ids = server.add(30, title="old")
    cfg = _job(tmp_path, server, ids, concurrency=1)
    assert (await run_job(cfg)).exit_code == 0
    control = Control()
    seen = 0

    def stop_after(total: int) -> None:
        nonlocal seen
        seen += 1
        if seen == 10:
            control.interrupt()

    server.api.on_request = stop_after
    first, _ = await _verify(cfg, tmp_path, control=control)
    server.api.on_request = None
    assert first.exit_code == 130
    with sqlite3.connect(tmp_path / "job.state.db") as db:
        judged = db.execute("SELECT COUNT(*) FROM verify").fetchone()[0]
    assert 0 < judged < 30
    before = _requests(server)
    rest, lines = await _verify(cfg, tmp_path)
    assert rest.exit_code == 0 and len(lines) == 30
    assert _requests(server) - before == 30 - judged
    again, _ = await _verify(cfg, tmp_path)  # a finished pass: the next verify starts afresh
    assert again.exit_code == 0 and again.requests == 30


async def test_the_command_writes_its_lines_a_human_summary_and_the_verdicts_into_the_html_report(server, tmp_path):
    from ..conftest import run_cli

    ids = server.add(12, title="old")
    cfg = _job(tmp_path, server, ids, app_id="app-1")
    assert (await run_job(cfg)).exit_code == 0
    server.api.edit(ACCOUNT, ids[5], {"title": "theirs"})
    state, out, html = tmp_path / "job.state.db", tmp_path / "v.jsonl", tmp_path / "r.html"
    code, _stdout, err = await run_cli(
        "verify", "--state", str(state), "--out", str(out), "--html", str(html), base_url=server.base_url
    )
    assert code == 1, err
    assert "batcher verify: 12 meetings the job changed - 11 as written, 1 drifted" in err
    assert f"drifted: meeting {ids[5]}" in err and "title" in err
    [line] = [line for line in read_jsonl(out) if line["verdict"] == "drifted"]
    assert line["changes"] == [{"path": "title", "written": "new", "now": "theirs"}]
    page = html.read_text()
    assert "<h2>Verification</h2>" in page and ids[5] in page and "1 drifted" in page


async def test_the_command_prints_to_stdout_by_default_and_exits_0_when_all_is_as_written(server, tmp_path):
    from ..conftest import run_cli

    ids = server.add(3, title="old")
    assert (await run_job(_job(tmp_path, server, ids))).exit_code == 0
    code, stdout, err = await run_cli("verify", "--state", str(tmp_path / "job.state.db"), base_url=server.base_url)
    assert code == 0, err
    assert [line.split('"verdict":')[1][:12] for line in stdout.splitlines()] == ['"as_written"'] * 3


def test_verify_without_a_state_is_a_usage_error() -> None:
    from ..conftest import cli

    result = cli("verify")
    assert result.returncode == 2 and "--state" in result.stderr


async def test_verify_is_paced_by_rate_like_every_other_request(server, tmp_path):
    from ..fake_time import VirtualTime

    ids = server.add(12, title="old")
    assert (await run_job(_job(tmp_path, server, ids))).exit_code == 0
    paced = _job(tmp_path, server, ids, rate="5/60")
    control = VirtualTime()
    result = await verify_job(paced, str(tmp_path / "v.jsonl"), control=Control(control.clock, control.sleep))
    assert result.exit_code == 0 and result.requests == 12
    assert control.now >= 120  # 12 starts at 5 per 60 s: the third window opens at 120 s


async def test_each_account_of_the_job_is_swept_on_its_own_list(server, tmp_path):
    a = server.add(150, title="old")
    b = server.add(150, account="acct-2", title="old")
    rows = [{"meeting_id": m, "title": "new"} for m in a] + [
        {"meeting_id": m, "account_id": "acct-2", "title": "new"} for m in b
    ]
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", rows), app_id="app-1")
    assert (await run_job(cfg)).exit_code == 0
    server.api.edit("acct-2", b[7], {"title": "theirs"})
    before = _requests(server)
    result, lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 1 and result.counts == {"as_written": 299, "drifted": 1}
    assert [(line["account_id"], line["meeting_id"]) for line in lines if line["verdict"] == "drifted"] == [
        ("acct-2", b[7])
    ]
    assert _requests(server) - before <= 0.05 * 300 + 1


async def test_a_job_that_touched_few_meetings_of_a_large_app_reads_them_one_by_one(server, tmp_path):
    """Sweeping 10 pages to settle 2 meetings would cost more than 2 GETs: after the first page, GETs."""
    server.add(1000, title="other")
    ids = server.add(2, title="old")
    cfg = _job(tmp_path, server, ids, app_id="app-1")
    assert (await run_job(cfg)).exit_code == 0
    before = _requests(server)
    result, _lines = await _verify(cfg, tmp_path)
    assert result.exit_code == 0 and result.counts == {"as_written": 2}
    assert _requests(server) - before <= 2 + 2  # at most the page-0 probe and one page, then a GET each
    assert "read one by one" in result.message


async def test_a_list_that_misbehaves_is_left_and_the_rest_read_one_by_one(tmp_path):
    """A list that serves its first page for every page number: the walk stops, verify GETs the rest."""
    from batcher.fake.listing import Listing
    from batcher.fake.server import FakeApi, start

    api = FakeApi(seed=1, listing=Listing(quirk="repeat"))
    runner, port = await start(api)
    try:
        server = Server(api, port)
        ids = server.add(250, title="old")
        cfg = _job(tmp_path, server, ids, app_id="app-1")
        assert (await run_job(cfg)).exit_code == 0
        server.api.edit(ACCOUNT, ids[200], {"title": "theirs"})
        result, lines = await _verify(cfg, tmp_path)
        assert result.exit_code == 1 and result.counts == {"as_written": 249, "drifted": 1}
        assert [line["meeting_id"] for line in lines if line["verdict"] == "drifted"] == [ids[200]]
        assert "repeated" in result.message
    finally:
        await runner.cleanup()


async def test_summary_json_counts_the_verdicts_and_this_runs_requests(server, tmp_path):
    import orjson

    ids = server.add(4, title="old")
    cfg = _job(tmp_path, server, ids, summary_path=str(tmp_path / "s.json"))
    assert (await run_job(_job(tmp_path, server, ids))).exit_code == 0
    server.api.edit(ACCOUNT, ids[0], {"title": "theirs"})
    result, _lines = await _verify(cfg, tmp_path)
    doc = orjson.loads((tmp_path / "s.json").read_bytes())
    assert {k: doc[k] for k in ("total", "as_written", "drifted", "missing", "unknown", "requests")} == {
        "total": 4,
        "as_written": 3,
        "drifted": 1,
        "missing": 0,
        "unknown": 0,
        "requests": 4,
    }
    assert result.exit_code == 1


async def test_the_options_verify_has_no_use_for_are_named_in_a_warning(server, tmp_path):
    from ..conftest import run_cli

    ids = server.add(2, title="old")
    assert (await run_job(_job(tmp_path, server, ids))).exit_code == 0
    code, _out, err = await run_cli(
        "verify", "--state", str(tmp_path / "job.state.db"), "--max-failures", "3", base_url=server.base_url
    )
    assert code == 0 and "--max-failures have no effect here" in err
