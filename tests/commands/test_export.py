"""``batcher export`` against the fake API's list endpoint: paging as it is, paging as it misbehaves."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from batcher.commands.export import ExportOptions, export_line, export_meetings, options_path, parse_fields
from batcher.core.rows import Row, RowError, parse_row
from batcher.errors import AuthError, UsageError
from batcher.fake.listing import Listing
from batcher.fake.server import FakeApi, start
from batcher.report.console import Console
from batcher.run.engine import run_job
from batcher.run.pool import Control

from ..conftest import ACCOUNT, TOKEN, Server, cli, config, read_jsonl


async def serve(listing: Listing) -> tuple[Server, object]:
    api = FakeApi(seed=1, listing=listing)
    runner, port = await start(api)
    return Server(api, port), runner


async def export(tmp_path: Path, server: Server, **options: object) -> tuple[int, list[dict], str]:
    """Run an export to ``tmp_path/out.jsonl``; (exit code, lines, stderr)."""
    cfg = config(tmp_path, server, "", app_id="app-1", concurrency=3)
    stream = io.StringIO()
    opts = ExportOptions(out_path=str(tmp_path / "out.jsonl"), **options)  # type: ignore[arg-type]
    result = await export_meetings(cfg, opts, control=Control(), console=Console(stream))
    stream.write(result.message)
    return result.exit_code, read_jsonl(tmp_path / "out.jsonl"), stream.getvalue()


def list_requests(server: Server) -> int:
    return server.api.requests["GET"]


@pytest.mark.parametrize(
    "listing",
    [
        Listing(page_base=1),
        Listing(page_base=0),
        Listing(page_base=1, quirk="clamp"),
        Listing(page_base=1, max_per_page=3),
    ],
    ids=["one-based", "zero-based", "one-based-answers-page-0-as-page-1", "per-page-capped-below-the-ask"],
)
async def test_every_meeting_is_exported_once_whatever_the_page_base_and_size(tmp_path, listing):
    server, runner = await serve(listing)
    try:
        ids = server.add(23)
        code, lines, err = await export(tmp_path, server, per_page=5)
    finally:
        await runner.cleanup()
    assert code == 0, err
    assert sorted(line["meeting_id"] for line in lines) == sorted(ids)
    assert "listed 23 meetings of total_count 23" in err
    assert set(server.api.statuses) == {200}, "no request the server refuses: page 1 first, its offsets read"


async def test_filters_go_to_the_list_endpoint_and_listed_items_lack_ai_config(tmp_path, server):
    paris = server.add(7, title="Paris weekly")
    server.add(5, title="Lyon weekly")
    inactive = paris[0]
    server.api.meta[(ACCOUNT, inactive)]["status"] = "INACTIVE"
    code, lines, err = await export(tmp_path, server, per_page=2, search="paris", status="ACTIVE")
    assert code == 0, err
    assert sorted(line["meeting_id"] for line in lines) == sorted(paris[1:])
    assert all("ai_config" not in line and "preferred_region" not in line for line in lines)
    # read-only fields dropped, ids under the run-input names
    assert all(not {"id", "created_at", "updated_at", "status"} & line.keys() for line in lines)
    assert all(line["account_id"] == ACCOUNT for line in lines)


async def test_since_and_until_filter_by_creation_time(tmp_path, server):
    old, mid, new = server.add(3)
    for meeting, day in ((old, "2026-01-01"), (mid, "2026-03-01"), (new, "2026-05-01")):
        server.api.meta[(ACCOUNT, meeting)]["created_at"] = f"{day}T12:00:00.000Z"
    code, lines, _ = await export(tmp_path, server, since="2026-02-01", until="2026-04-01T00:00:00Z")
    assert code == 0
    assert [line["meeting_id"] for line in lines] == [mid]


async def test_full_gets_each_meeting_for_its_whole_document(tmp_path, server):
    ids = server.add(6, ai_config={"transcription": {"language": "fr"}})
    code, lines, _ = await export(tmp_path, server, per_page=4, is_full=True)
    assert code == 0
    assert {line["meeting_id"] for line in lines} == set(ids)
    assert all(line["ai_config"]["transcription"]["language"] == "fr" for line in lines)
    assert list_requests(server) == 2 + 6  # two pages from page 1, one GET per meeting


async def test_fields_projects_each_line(tmp_path, server):
    server.add(2, title="Paris", ai_config={"transcription": {"language": "fr"}})
    code, lines, _ = await export(
        tmp_path, server, is_full=True, fields=("title", "ai_config.transcription.language", "no.such")
    )
    assert code == 0
    assert all(
        set(line) == {"account_id", "meeting_id", "title", "ai_config"}
        and line["ai_config"] == {"transcription": {"language": "fr"}}
        for line in lines
    )


def test_fields_that_listed_items_lack_need_full():
    with pytest.raises(UsageError, match="add --full"):
        parse_fields("title,ai_config.transcription.language", is_full=False)
    assert parse_fields("title, ai_config", is_full=True) == ("title", "ai_config")


async def test_a_server_that_repeats_its_first_page_is_stopped_not_followed(tmp_path):
    server, runner = await serve(Listing(quirk="repeat"))
    try:
        server.add(12)
        code, lines, err = await export(tmp_path, server, per_page=5)
        requests = list_requests(server)
    finally:
        await runner.cleanup()
    assert code == 1
    assert len(lines) == 5
    assert "repeated the page before it" in err and "listed 5 meetings of total_count 12" in err
    assert requests <= 3


async def test_a_server_that_inflates_total_count_ends_on_the_empty_page_and_says_so(tmp_path):
    server, runner = await serve(Listing(quirk="inflate_total"))
    try:
        server.add(9)
        code, lines, err = await export(tmp_path, server, per_page=4)
    finally:
        await runner.cleanup()
    assert len(lines) == 9
    assert code == 1
    assert "listed 9 of the 18 meetings the server counted" in err


async def test_a_meeting_that_cannot_be_read_is_reported_and_the_rest_exported(tmp_path, server):
    ids = server.add(4)
    server.api.faults.append({"method": "GET", "meeting": ids[2], "status": 404, "times": 5})
    code, lines, err = await export(tmp_path, server, is_full=True)
    assert code == 1
    assert {line["meeting_id"] for line in lines} == set(ids) - {ids[2]}
    assert f"meeting {ids[2]}: not_found" in err and "1 could not be read" in err


async def test_a_killed_full_export_resumes_without_reading_again_what_it_wrote(tmp_path, server):
    ids = server.add(10)
    done = [server.api.public(ACCOUNT, m) for m in ids[:6]]
    written = b"".join(orjson.dumps(export_line(ACCOUNT, d)) + b"\n" for d in done)
    (tmp_path / "out.jsonl").write_bytes(written + b'{"account_id": "acct-1", "meeting_id": "cut sh')  # killed mid-line
    killed_run = ExportOptions(is_full=True).identity(config(tmp_path, server, "", app_id="app-1"))
    Path(options_path(str(tmp_path / "out.jsonl"))).write_bytes(orjson.dumps(killed_run))  # as that run left it
    code, lines, err = await export(tmp_path, server, per_page=100, is_full=True)
    assert code == 0, err
    assert sorted(line["meeting_id"] for line in lines) == sorted(ids)  # each once, the cut line gone
    assert server.api.requests["GET"] == 1 + 4  # one page, only the 4 missing meetings
    assert "6 meetings already in" in err


async def test_every_route_is_served_under_client_v4_too(tmp_path, server):
    ids = server.add(3)
    server.base_url += "/client/v4"
    code, lines, _ = await export(tmp_path, server, is_full=True)
    assert code == 0 and len(lines) == 3
    assert server.api.requests["GET"] == 1 + 3 and set(server.api.statuses) == {200}
    assert {line["meeting_id"] for line in lines} == set(ids)


async def test_a_refused_token_stops_the_export_with_exit_3(tmp_path):
    api = FakeApi(token="the-right-one")
    runner, port = await start(api)
    try:
        with pytest.raises(AuthError, match="HTTP 401 listing meetings"):
            await export(tmp_path, Server(api, port))
    finally:
        await runner.cleanup()
    assert AuthError.exit_code == 3


async def test_a_reader_closing_the_pipe_stops_the_export_without_a_traceback(tmp_path, server):
    server.add(1000)  # ~400 KB of lines: more than a pipe buffers, so the export is still writing
    env = {**os.environ, "CLOUDFLARE_API_TOKEN": TOKEN}
    argv = ["export", "--account-id", ACCOUNT, "--app-id", "app-1", "--rate", "none", "--base-url", server.base_url]
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "batcher", *argv, env=env, stdout=write_end, stderr=asyncio.subprocess.PIPE
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:  # like `| head -1`: one line, then the reader goes away
        first = await asyncio.to_thread(reader.readline)
    _, err = await proc.communicate()
    assert orjson.loads(first)["account_id"] == ACCOUNT
    assert proc.returncode == 1 and b"Traceback" not in err
    assert b"the output was closed by its reader" in err


class VirtualTime(Control):
    """A Control whose clock only moves when someone sleeps: pacing without waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


async def test_export_is_paced_by_rate_like_every_other_request(tmp_path, server):
    server.add(12)
    cfg = config(tmp_path, server, "", app_id="app-1", rate="5/60")
    control = VirtualTime()
    opts = ExportOptions(out_path=str(tmp_path / "out.jsonl"), is_full=True)
    result = await export_meetings(cfg, opts, control=control, console=Console(io.StringIO()))
    assert result.exit_code == 0 and result.written == 12
    assert server.api.requests["GET"] == 13  # one page, 12 meetings
    assert control.now >= 120  # 14 starts at 5 per 60 s: the third window opens at 120 s


MEETING = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"


def test_export_refuses_an_out_file_that_is_not_an_export_and_leaves_it_untouched(tmp_path):
    """Guards export's ``--out``: an existing file that is not an export (a state, an input) is refused and left as it was."""
    state = tmp_path / "job.state.db"
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE rows (row INTEGER)")
    src = tmp_path / "mine.csv"
    src.write_text(f"meeting_id,title\n{MEETING},x\n", encoding="utf-8")
    for victim in (state, src):
        before = victim.read_bytes()
        done = cli(
            "export",
            "--account-id",
            "acct-1",
            "--app-id",
            "app",
            "--out",
            str(victim),
            "--base-url",
            "http://127.0.0.1:9",
        )
        assert done.returncode == 2 and "not a meeting exported by batcher" in done.stderr, done.stderr
        assert victim.read_bytes() == before


async def test_a_full_backup_of_meetings_with_fields_the_schema_does_not_know_restores_through_run(tmp_path, server):
    """batcher's own backup is a run input: fields the API grew are carried as the export listed
    them (``_carried``), not refused as patch fields; every field the schema knows is still checked."""
    ids = server.add(
        3, noise_cancellation={"mode": "strong"}, ai_config={"transcription": {"language": "fr"}, "beta": 1}
    )
    code, lines, _ = await export(tmp_path, server, is_full=True)
    assert code == 0 and all(line["_carried"] == ["ai_config.beta", "noise_cancellation"] for line in lines)
    backup = tmp_path / "backup.jsonl"
    backup.write_bytes((tmp_path / "out.jsonl").read_bytes())
    drifted = server.doc(ids[0])  # someone changes a meeting after the backup
    drifted["noise_cancellation"] = {"mode": "off"}
    drifted["title"] = "changed since"
    result = await run_job(config(tmp_path, server, backup, app_id="app-1"))
    assert result.exit_code == 0, result.message
    assert (result.summary["succeeded"], result.summary["unchanged"], result.summary["failed"]) == (1, 2, 0)
    restored = server.doc(ids[0])
    assert restored["noise_cancellation"] == {"mode": "strong"} and restored["title"] == lines[0]["title"]
    assert server.doc(ids[1])["ai_config"]["beta"] == 1


def test_only_the_fields_a_line_lists_as_carried_escape_the_schema():
    data = {"meeting_id": str(uuid.uuid4()), "noise_cancellation": {"mode": "x"}, "titel": "typo"}
    listed = parse_row(1, {**data, "_carried": ["noise_cancellation"]}, ACCOUNT)
    assert isinstance(listed, RowError) and [e.field for e in listed.errors] == ["titel"]
    assert isinstance(
        parse_row(1, {**data, "titel": None} | {"_carried": ["noise_cancellation", "titel"]}, ACCOUNT), Row
    )
    unlisted = parse_row(1, data, ACCOUNT)
    assert isinstance(unlisted, RowError) and {e.field for e in unlisted.errors} == {"noise_cancellation", "titel"}
    bad = parse_row(1, {**data, "_carried": "noise_cancellation"}, ACCOUNT)
    assert isinstance(bad, RowError) and "_carried" in {e.field for e in bad.errors}


def test_a_carried_list_naming_a_field_batcher_knows_is_refused():
    """Only what the schema does not know is carried: listing ``recording_config`` would let a typo
    under it (``bukcet``) through unchecked."""
    row = {"meeting_id": str(uuid.uuid4()), "recording_config": {"storage_config": {"type": "aws", "bukcet": "b"}}}
    refused = parse_row(1, {**row, "_carried": ["recording_config"]}, ACCOUNT)
    assert isinstance(refused, RowError)
    assert {e.field for e in refused.errors} == {"_carried", "recording_config.storage_config.bukcet"}
