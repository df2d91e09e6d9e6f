"""Never write from a stale or foreign read (the third round): each test names the hole it closes.

Every scenario runs the real engine (and rollback) against the fake API, with the fake's switches
for the gaps between its model and the world: a colleague editing a meeting while a request waits
(``"edit"`` on a fault), a proxy answering with another meeting's document (``"kind": "foreign"``),
answers that show stored credentials (``shows_secrets``), a server that normalises what it stores
(``trims_titles``) and a proxy's HTML page on a 2xx after the write was applied (``apply_then_page``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batcher.commands.rollback import rollback_job
from batcher.fake.server import FakeApi, start
from batcher.run.engine import run_job

from ..conftest import Server, config, read_jsonl, write_jsonl

PAUSE = {"retry_after": 0}  # answered at once: the backoff (under a second) is the wait


def _row(mid: str, **patch: object) -> list[dict[str, object]]:
    return [{"meeting_id": mid, **patch}]


def _state_bytes(tmp_path: Path) -> bytes:
    db = sqlite3.connect(tmp_path / "job.state.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return (tmp_path / "job.state.db").read_bytes()


@pytest.mark.parametrize("status", [429, 503])
async def test_a_colleagues_edit_made_while_a_write_waits_is_not_reverted_by_its_retry(server, tmp_path, status):
    """Item 1: the retry is built from a read made after the wait, merged onto the colleague's change."""
    [mid] = server.add(title="orig", record_on_start=False)
    server.api.faults.append(
        {"kind": "status", "status": status, "method": "PUT", "edit": {"record_on_start": True}, **PAUSE}
    )
    result = await run_job(config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", _row(mid, title="new"))))
    assert result.exit_code == 0 and result.summary["succeeded"] == 1
    assert (server.doc(mid)["title"], server.doc(mid)["record_on_start"]) == ("new", True)


async def test_a_colleagues_edit_of_the_rows_own_field_while_it_waits_is_a_conflict_not_overwritten(server, tmp_path):
    [mid] = server.add(title="orig")
    server.api.faults.append({"kind": "status", "status": 429, "method": "PUT", "edit": {"title": "theirs"}, **PAUSE})
    result = await run_job(config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", _row(mid, title="new"))))
    assert result.exit_code == 1
    [failure] = read_jsonl(tmp_path / "failures.jsonl")
    assert failure["error"] == "conflict" and "title" in failure["message"]
    assert server.doc(mid)["title"] == "theirs" and server.api.puts[mid] == 0


async def test_an_answer_about_another_meeting_is_never_merged_or_written(server, tmp_path):
    """Item 3: a caching proxy answers A's GET with B's document: A fails api_error, nothing is PUT."""
    a, b = server.add(title="A"), server.add(title="B", record_on_start=True)
    [a], [b] = a, b
    server.api.faults.append({"kind": "foreign", "method": "GET", "meeting": a, "as": b})
    result = await run_job(config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", _row(a, persist_chat=True))))
    assert result.exit_code == 1
    [failure] = read_jsonl(tmp_path / "failures.jsonl")
    assert failure["error"] == "api_error" and b in failure["message"]
    assert server.api.puts[a] == 0 and server.doc(a)["title"] == "A"


async def test_a_foreign_answer_to_the_read_after_a_wait_stops_the_write(server, tmp_path):
    a, b = server.add(title="A")[0], server.add(title="B")[0]
    server.api.faults.extend(
        [
            {"kind": "headers", "headers": {}, "method": "GET", "meeting": a, "times": 1},
            {"kind": "status", "status": 429, "method": "PUT", "meeting": a, **PAUSE},  # surely not applied
            {"kind": "foreign", "method": "GET", "meeting": a, "as": b},
        ]
    )
    await run_job(config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", _row(a, title="new"))))
    [failure] = read_jsonl(tmp_path / "failures.jsonl")
    assert failure["error"] == "api_error" and "document" in failure["message"]
    assert server.doc(a)["title"] == "A"


STORAGE = {
    "type": "aws",
    "bucket": "b",
    "region": "us-east-1",
    "access_key": "AKIA-STORED-CANARY",
    "secret": "S-CANARY",
}


@pytest.mark.parametrize("shows", ["real", "mask"])
async def test_credentials_an_answer_shows_never_reach_a_write_or_the_state(tmp_path, shows):
    """Item 9: the credential guard still refuses a write that lacks the row's own secrets, and the
    state never holds what the server showed."""
    api = FakeApi(seed=1, shows_secrets=shows)
    runner, port = await start(api)
    try:
        server = Server(api, port)
        [mid] = server.add(title="orig", recording_config={"storage_config": STORAGE})
        src = write_jsonl(tmp_path / "in.jsonl", _row(mid, title="new"))
        await run_job(config(tmp_path, server, src))
        [failure] = read_jsonl(tmp_path / "failures.jsonl")
        assert failure["error"] == "credential_guard"
        assert api.puts[mid] == 0
        state = _state_bytes(tmp_path)
        assert b"AKIA-STORED-CANARY" not in state and b"****" not in state
    finally:
        await runner.cleanup()


async def test_a_write_that_supplies_its_own_credentials_sends_those_not_what_an_answer_showed(tmp_path):
    api = FakeApi(seed=1, shows_secrets="mask")
    runner, port = await start(api)
    try:
        server = Server(api, port)
        [mid] = server.add(title="orig", recording_config={"storage_config": STORAGE})
        rotated = {**STORAGE, "access_key": "AKIA-NEW", "secret": "S-NEW"}
        src = write_jsonl(tmp_path / "in.jsonl", _row(mid, recording_config={"storage_config": rotated}))
        assert (await run_job(config(tmp_path, server, src))).exit_code == 0
        stored = server.doc(mid)["recording_config"]["storage_config"]
        assert (stored["access_key"], stored["secret"]) == ("AKIA-NEW", "S-NEW")
        assert b"AKIA-NEW" not in _state_bytes(tmp_path)
    finally:
        await runner.cleanup()


async def test_rollback_restores_a_meeting_the_server_normalised_when_written(tmp_path):
    """Item 10: what the job left is the server's answer (a trimmed title), so rollback finds it as left."""
    api = FakeApi(seed=1, trims_titles=True)
    runner, port = await start(api)
    try:
        server = Server(api, port)
        ids = server.add(3, title="orig")
        cfg = config(
            tmp_path, server, write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "  new  "} for m in ids])
        )
        assert (await run_job(cfg)).exit_code == 0
        assert {server.doc(m)["title"] for m in ids} == {"new"}
        undone = await rollback_job(cfg)
        assert undone.exit_code == 0 and undone.summary["succeeded"] == 3
        assert {server.doc(m)["title"] for m in ids} == {"orig"}
    finally:
        await runner.cleanup()


async def test_a_2xx_html_page_after_the_write_landed_is_confirmed_and_rolled_back(server, tmp_path):
    """Item 14: a 2xx whose body is not JSON may have landed: its outcome is judged by a read, and
    rollback restores the meeting (and a restore answered so is judged the same way)."""
    [mid] = server.add(title="orig")
    server.api.faults.append({"kind": "apply_then_page", "method": "PUT", "meeting": mid, "times": 1})
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", _row(mid, title="new")))
    result = await run_job(cfg)
    assert result.exit_code == 0 and result.summary["succeeded"] == 1
    assert server.doc(mid)["title"] == "new" and server.api.puts[mid] == 1  # confirmed, not sent again
    server.api.faults.append({"kind": "apply_then_page", "method": "PUT", "meeting": mid, "times": 1})
    undone = await rollback_job(cfg)
    assert undone.exit_code == 0 and undone.summary["succeeded"] == 1
    assert server.doc(mid)["title"] == "orig"


async def test_a_colleagues_edit_made_while_a_restore_waits_is_not_overwritten(server, tmp_path):
    """Item 2: rollback's restore after a wait reads again and judges again (without --force: conflict)."""
    [mid] = server.add(title="orig", persist_chat=False)
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", _row(mid, title="new")))
    assert (await run_job(cfg)).exit_code == 0
    server.api.faults.append(
        {"kind": "status", "status": 429, "method": "PUT", "edit": {"persist_chat": True}, **PAUSE}
    )
    undone = await rollback_job(cfg)
    assert undone.exit_code == 1 and undone.summary["failed"] == 1
    assert (server.doc(mid)["title"], server.doc(mid)["persist_chat"]) == ("new", True)


def test_the_fake_refuses_an_unknown_shows_secrets_switch() -> None:
    with pytest.raises(ValueError, match="shows_secrets"):
        FakeApi(shows_secrets="sometimes")
