"""``run --canary N [--canary-only]``: a few rows written first, read back, judged on every field.

The fake's ``ignores_fields`` switch is the server the issue measured: it answers 200 for a field
and keeps the old value. Each test runs the real engine against the fake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batcher.core.canary import expected_after, judge, normalised
from batcher.errors import UsageError
from batcher.fake.server import FakeApi, start
from batcher.run.engine import run_job

from ..conftest import ACCOUNT, Server, config, outcomes, read_jsonl, write_jsonl


@pytest.fixture
async def ignoring() -> Any:
    """A fake that answers 200 for ``transcribe_on_end`` and keeps its old value."""
    api = FakeApi(seed=1, ignores_fields=("transcribe_on_end",))
    runner, port = await start(api)
    try:
        yield Server(api, port)
    finally:
        await runner.cleanup()


def _rows(ids: list[str], **patch: Any) -> list[dict[str, Any]]:
    return [{"meeting_id": m, **patch} for m in ids]


def _written(server: Server) -> int:
    """Writes the fake applied."""
    return sum(server.api.puts.values())


@pytest.mark.parametrize("mode", ["merge", "patch", "replace"])
async def test_a_canary_stops_the_job_with_exit_3_when_the_server_ignores_a_field(ignoring, tmp_path, mode):
    ids = ignoring.add(200, transcribe_on_end=False)
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, transcribe_on_end=True))
    result = await run_job(config(tmp_path, ignoring, src, mode=mode, canary=5))
    assert result.exit_code == 3
    assert _written(ignoring) <= 5 + 4  # the canary's writes, plus at most those in flight (concurrency 4)
    assert f"meeting {ids[0]}" in result.message
    assert "transcribe_on_end: sent true, the server holds false" in result.message
    assert result.summary["skipped"] >= 195


async def test_without_a_canary_the_same_server_ends_every_row_succeeded(ignoring, tmp_path):
    """What the issue measured on main: 200 succeeded, exit 0 (the canary is what stops it)."""
    ids = ignoring.add(20, transcribe_on_end=False)
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, transcribe_on_end=True))
    result = await run_job(config(tmp_path, ignoring, src))
    assert result.exit_code == 0 and result.summary["succeeded"] == 20


@pytest.mark.parametrize("mode", ["merge", "patch", "replace"])
async def test_on_a_healthy_server_a_canary_job_finishes_every_row_exactly(server, tmp_path, mode):
    ids = server.add(30, title="old", record_on_start=False)
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, title="new", transcribe_on_end=True))
    result = await run_job(config(tmp_path, server, src, mode=mode, canary=5))
    assert result.exit_code == 0 and result.summary["succeeded"] == 30
    assert {server.doc(m)["title"] for m in ids} == {"new"}
    assert all(server.api.puts[m] == 1 for m in ids)  # each written once, the canary's too


async def test_a_difference_in_a_field_the_row_did_not_set_stops_the_canary(server, tmp_path):
    """A write that resets a neighbour: unknown fields and ai_config are judged too (merge mode
    carries them; a fake that drops the unknown one shows the difference)."""
    ids = server.add(10, title="old", ai_config={"transcription": {"language": "fr"}})
    server.api.ignores_fields = ("ai_config.transcription.language",)
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, ai_config={"transcription": {"language": "de"}}))
    result = await run_job(config(tmp_path, server, src, canary=2, concurrency=1))
    assert result.exit_code == 3
    assert 'ai_config.transcription.language: sent "de", the server holds "fr"' in result.message
    assert _written(server) == 1  # concurrency 1: the first canary row's write, nothing after it


async def test_canary_only_stops_after_a_clean_canary_and_the_same_command_without_it_goes_on(server, tmp_path):
    ids = server.add(20, title="old")
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, title="new"))
    first = await run_job(config(tmp_path, server, src, canary=3, canary_only=True))
    assert first.exit_code == 0 and "--canary-only" in first.message
    assert (first.summary["succeeded"], first.summary["skipped"]) == (3, 17)
    assert [m for m in ids if server.api.puts[m]] == ids[:3]
    rest = await run_job(config(tmp_path, server, src, canary=3))
    assert rest.exit_code == 0 and rest.summary["succeeded"] == 20
    assert all(server.api.puts[m] == 1 for m in ids)  # the canary's rows are not written again
    assert outcomes(tmp_path / "job.state.db") == {"succeeded": 20}


async def test_the_canary_takes_a_row_of_every_account_in_the_input(server, tmp_path):
    a = server.add(10, account=ACCOUNT, title="old")
    b = server.add(1, account="acct-2", title="old")
    c = server.add(1, account="acct-3", title="old")
    rows = [*_rows(a, title="new"), {"meeting_id": b[0], "account_id": "acct-2", "title": "new"}]
    rows += [{"meeting_id": c[0], "account_id": "acct-3", "title": "new"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    result = await run_job(config(tmp_path, server, src, canary=2, canary_only=True))
    assert result.exit_code == 0 and result.summary["succeeded"] == 4
    written = {m for m, n in server.api.puts.items() if n}
    assert written == {a[0], a[1], b[0], c[0]}


async def test_a_stdin_jobs_canary_is_the_first_n_rows_read(server, tmp_path):
    ids = server.add(10, title="old")
    data = b"".join(f'{{"meeting_id": "{m}", "title": "new"}}\n'.encode() for m in ids)
    import io

    cfg = config(tmp_path, server, "-", canary=4, canary_only=True)
    result = await run_job(cfg, stdin=io.BytesIO(data))
    assert result.exit_code == 0
    assert [m for m in ids if server.api.puts[m]] == ids[:4]


async def test_canary_zero_is_no_canary(ignoring, tmp_path):
    ids = ignoring.add(5, transcribe_on_end=False)
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, transcribe_on_end=True))
    result = await run_job(config(tmp_path, ignoring, src, canary=0))
    assert result.exit_code == 0 and result.summary["succeeded"] == 5


def test_canary_only_without_a_canary_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--canary N"):
        config(tmp_path, None, tmp_path / "in.jsonl", canary_only=True)


async def test_a_failed_canary_row_is_reported_like_any_failed_row_and_not_judged(server, tmp_path):
    ids = server.add(4, title="old")
    gone = "00000000-0000-4000-8000-000000000000"
    src = write_jsonl(tmp_path / "in.jsonl", _rows([gone, *ids], title="new"))
    result = await run_job(config(tmp_path, server, src, canary=2))
    assert result.exit_code == 1 and result.summary["succeeded"] == 4
    [failure] = read_jsonl(tmp_path / "failures.jsonl")
    assert failure["error"] == "not_found"


# -- the pure judgement ----------------------------------------------------------------------------

BEFORE = {"id": "m", "updated_at": "t1", "status": "ACTIVE", "title": "a", "beta": 1, "ai_config": {"x": 1}}


def test_merge_expects_the_before_document_with_the_patch_applied_and_ignores_updated_at() -> None:
    now = {**BEFORE, "updated_at": "t2", "title": "b"}
    assert judge("merge", expected_after("merge", BEFORE, {"title": "b"}), now).is_clean


def test_a_field_reset_by_the_write_is_a_difference_with_what_was_sent_and_what_is_held() -> None:
    now = {**BEFORE, "title": "b", "ai_config": {}}
    verdict = judge("merge", expected_after("merge", BEFORE, {"title": "b"}), now)
    assert [(d.path, d.sent, d.held) for d in verdict.differences] == [("ai_config.x", 1, None)]


def test_a_replace_judges_the_row_over_the_defaults_and_lists_other_fields_unjudged() -> None:
    from batcher.core.schema import DEFAULT_DOCUMENT

    now = {**DEFAULT_DOCUMENT, "id": "m", "title": "b", "beta": True}
    verdict = judge("replace", expected_after("replace", None, {"title": "b"}), now)
    assert verdict.is_clean and verdict.unjudged == ("beta",)


def test_credentials_are_never_compared() -> None:
    storage = {"recording_config": {"storage_config": {"type": "aws", "secret": "S"}}}
    now = {**BEFORE, "recording_config": {"storage_config": {"type": "aws", "secret": "****"}}}
    assert judge("merge", expected_after("merge", BEFORE, storage), now).is_clean


def test_normalised_names_each_path_the_answer_holds_otherwise() -> None:
    found = normalised({"title": "  a  ", "persist_chat": True}, {"title": "a", "persist_chat": True})
    assert [(d.path, d.sent, d.held) for d in found] == [("title", "  a  ", "a")]


async def test_a_canary_none_of_whose_rows_could_be_written_stops_the_job(server, tmp_path):
    """Nothing written and read back proves nothing: the job stops before the other rows."""
    ids = server.add(5, title="old")
    gone = ["00000000-0000-4000-8000-00000000000" + str(i) for i in range(2)]
    src = write_jsonl(tmp_path / "in.jsonl", _rows([*gone, *ids], title="new"))
    result = await run_job(config(tmp_path, server, src, canary=2))
    assert result.exit_code == 3 and "none of its 2 rows could be written" in result.message
    assert _written(server) == 0 and result.summary["skipped"] == 5


async def test_a_colleagues_change_merged_in_after_a_wait_is_not_a_canary_difference(server, tmp_path):
    """The write was built from the read made after the wait: the canary expects what it kept."""
    ids = server.add(3, title="old", record_on_start=False)
    server.api.faults.append(
        {"kind": "status", "status": 429, "method": "PUT", "retry_after": 0, "edit": {"record_on_start": True}}
    )
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, title="new"))
    result = await run_job(config(tmp_path, server, src, canary=1, concurrency=1))
    assert result.exit_code == 0, result.message
    assert (server.doc(ids[0])["title"], server.doc(ids[0])["record_on_start"]) == ("new", True)


async def test_a_forced_run_with_another_input_judges_a_new_canary(server, ignoring, tmp_path):
    """A clean canary counts for the job it judged: --force with a changed input is judged afresh."""
    ids = ignoring.add(6, transcribe_on_end=False, title="old")
    src = write_jsonl(tmp_path / "in.jsonl", _rows(ids, title="new"))
    first = await run_job(config(tmp_path, ignoring, src, canary=2, canary_only=True))
    assert first.exit_code == 0
    write_jsonl(src, _rows(ids, title="new", transcribe_on_end=True))
    again = await run_job(config(tmp_path, ignoring, src, canary=2, force=True))
    assert again.exit_code == 3 and "transcribe_on_end" in again.message
