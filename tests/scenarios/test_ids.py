"""Meeting ids are sent and reported as the row spells them; only duplicates ignore case."""

from __future__ import annotations

import uuid

from ..conftest import ACCOUNT, cli, read_jsonl, run_cli


async def test_an_upper_case_id_is_sent_and_reported_as_spelt(server, tmp_path):
    upper = str(uuid.uuid4()).upper()
    server.api.add_meeting(ACCOUNT, upper, title="old")
    src = tmp_path / "in.csv"
    src.write_text(f"meeting_id,title\n{upper},new\n", encoding="utf-8")
    results = tmp_path / "results.jsonl"
    code, _, err = await run_cli("run", str(src), "--results", str(results), base_url=server.base_url)
    assert code == 0, err
    assert server.doc(upper)["title"] == "new"
    assert [r["meeting_id"] for r in read_jsonl(results)] == [upper]


async def test_the_report_names_the_id_as_the_row_spells_it(server, tmp_path):
    upper = str(uuid.uuid4()).upper()
    server.api.add_meeting(ACCOUNT, upper.lower(), title="old")  # the server holds another spelling
    src = tmp_path / "in.csv"
    src.write_text(f"meeting_id,title\n{upper},new\n", encoding="utf-8")
    code, _, err = await run_cli("run", str(src), base_url=server.base_url)
    assert code == 1, err
    [failure] = read_jsonl(tmp_path / "in.csv.failures.jsonl")
    assert (failure["meeting_id"], failure["error"]) == (upper, "not_found")
    assert server.doc(upper.lower())["title"] == "old"


async def test_plan_shows_the_id_as_spelt(server, tmp_path):
    upper = str(uuid.uuid4()).upper()
    server.api.add_meeting(ACCOUNT, upper, title="old")
    src = tmp_path / "in.csv"
    src.write_text(f"meeting_id,title\n{upper},new\n", encoding="utf-8")
    code, out, err = await run_cli("plan", str(src), base_url=server.base_url)
    assert code == 0, err
    assert f'"meeting_id":"{upper}"' in out and '"action":"update"' in out


def test_two_spellings_of_one_id_are_duplicates(tmp_path):
    mid = str(uuid.uuid4())
    src = tmp_path / "in.jsonl"
    src.write_text(f'{{"meeting_id": "{mid}"}}\n{{"meeting_id": "{mid.upper()}"}}\n', encoding="utf-8")
    result = cli("validate", str(src))
    assert result.returncode == 2
    assert "row 2: meeting_id: duplicate of row 1" in result.stderr
    assert "2 rows: 1 valid, 1 invalid" in result.stderr
