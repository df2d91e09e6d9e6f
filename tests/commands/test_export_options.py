"""``export``: times sent as the list schema accepts them, and resuming only the same export.

A bare date, a time without an offset and the basic format were sent as given, refused with a
400, and the refusal was then read as a paging hint. Here each is completed before it is sent,
and a server that validates like the official schema answers the first request.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from batcher.commands.export import ExportOptions, export_meetings
from batcher.core.times import list_time
from batcher.errors import UsageError
from batcher.report.console import Console
from batcher.run.pool import Control

from ..conftest import ACCOUNT, config, read_jsonl


@pytest.mark.parametrize(
    ("given", "start", "end"),
    [
        ("2026-01-01", "2026-01-01T00:00:00Z", "2026-01-01T23:59:59Z"),
        ("2026-01-01T00:00:00", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("20260101T000000Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T12:30:00+02:00", "2026-01-01T10:30:00Z", "2026-01-01T10:30:00Z"),
        ("2026-01-01T00:00:00.250Z", "2026-01-01T00:00:00.250Z", "2026-01-01T00:00:00.250Z"),
    ],
    ids=["bare-date", "no-offset", "basic-format", "offset", "fraction"],
)
def test_a_time_is_completed_to_a_full_utc_date_time(given: str, start: str, end: str) -> None:
    assert (list_time(given), list_time(given, is_end=True)) == (start, end)


@pytest.mark.parametrize("since", ["2026-02-01", "2026-02-01T00:00:00", "20260201T000000Z"])
async def test_export_since_in_any_iso_form_is_answered_by_a_validating_server(
    server, tmp_path: Path, since: str
) -> None:
    old, new = server.add(2)
    for meeting, day in ((old, "2026-01-01"), (new, "2026-03-01")):
        server.api.meta[(ACCOUNT, meeting)]["created_at"] = f"{day}T12:00:00.000Z"
    cfg = config(tmp_path, server, "", app_id="app-1")

    async def export(**filters: str) -> tuple[int, list[str], int]:
        start, out = len(server.api.log), tmp_path / f"out-{len(filters)}.jsonl"
        options = ExportOptions(out_path=str(out), **filters)
        result = await export_meetings(cfg, options, control=Control(), console=Console(io.StringIO()))
        refused = sum(1 for e in server.api.log[start:] if e.get("status") == 400)
        return result.exit_code, [line["meeting_id"] for line in read_jsonl(out)], refused

    _, _, refused_unfiltered = await export()  # what paging itself costs (a page_no probe)
    code, listed, refused = await export(since=since)

    assert (code, listed) == (0, [new])
    assert refused == refused_unfiltered  # the time itself was never refused


async def test_an_export_resumes_only_an_export_made_with_the_same_options(server, tmp_path: Path) -> None:
    server.add(10)
    cfg = config(tmp_path, server, "", app_id="app-1")
    out = tmp_path / "backup.jsonl"

    async def export(**options: object) -> int:
        opts = ExportOptions(out_path=str(out), **options)  # type: ignore[arg-type]
        return (await export_meetings(cfg, opts, control=Control(), console=Console(io.StringIO()))).exit_code

    assert await export(fields=("title",)) == 0
    listing = out.read_bytes()
    with pytest.raises(
        UsageError, match=r"holds a different export \(full: was False, now True; fields: was \['title'\], now \[\]\)"
    ):
        await export(is_full=True)
    assert out.read_bytes() == listing  # left as it was
    assert await export(fields=("title",)) == 0  # the same command resumes: nothing new to write
    assert out.read_bytes() == listing


async def test_an_export_whose_record_of_options_is_gone_is_not_resumed(server, tmp_path: Path) -> None:
    server.add(3)
    cfg = config(tmp_path, server, "", app_id="app-1")
    out = tmp_path / "backup.jsonl"
    opts = ExportOptions(out_path=str(out), is_full=True)
    assert (await export_meetings(cfg, opts, control=Control(), console=Console(io.StringIO()))).exit_code == 0
    Path(f"{out}.options.json").unlink()  # a cache cleaner, or a copy of the file alone
    with pytest.raises(UsageError, match="missing or unreadable"):
        await export_meetings(cfg, opts, control=Control(), console=Console(io.StringIO()))
