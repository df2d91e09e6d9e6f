"""``--results FILE``: every finished row exactly once, across kill -9 and resume."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections import Counter

import orjson

from batcher.report.outputs import ResultsStream
from batcher.run.engine import run_job
from batcher.state.readers import unwritten_results

from ..conftest import config, kill_at, outcomes, run_cli, start_cli, when_requests_reach, write_jsonl

COMMITTED = "SELECT row, meeting_id, account_id, outcome, status, attempts FROM done"


def _db_with(rows: list[tuple[int, str, str]]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE done (row, meeting_id, account_id, outcome, status, attempts)")
    db.executemany("INSERT INTO done VALUES (?, ?, 'a', ?, 200, 1)", rows)
    return db


def _committed(db: sqlite3.Connection):
    """What the state hands ``catch_up``: committed rows of ``done`` that the file has no line for."""
    return lambda written: unwritten_results(db, COMMITTED, written)


def _lines(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_catch_up_cuts_a_torn_line_and_appends_only_what_is_missing(tmp_path):
    path = tmp_path / "r.jsonl"
    present = b'{"row":1,"meeting_id":"m1","account_id":"a","outcome":"succeeded","status":200,"attempts":1}\n'
    path.write_bytes(present + b'{"row":2,"meeting_id":"m2","acc')  # killed mid-line
    db = _db_with([(1, "m1", "succeeded"), (2, "m2", "succeeded"), (3, "m3", "failed")])
    stream = ResultsStream(str(path))
    assert stream.catch_up(_committed(db)) == 2
    stream.close()
    assert [(d["row"], d["outcome"]) for d in _lines(path)] == [(1, "succeeded"), (2, "succeeded"), (3, "failed")]
    again = ResultsStream(str(path))
    assert again.catch_up(_committed(db)) == 0, "nothing twice"
    again.close()


def test_a_retried_row_whose_new_outcome_was_lost_gets_its_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"row":1,"meeting_id":"m1","account_id":"a","outcome":"failed","status":503,"attempts":5}\n')
    db = _db_with([(1, "m1", "succeeded")])
    stream = ResultsStream(str(path))
    assert stream.catch_up(_committed(db)) == 1
    stream.close()
    assert [d["outcome"] for d in _lines(path)] == ["failed", "succeeded"]


def test_lines_are_written_only_by_flush(tmp_path):
    path = tmp_path / "r.jsonl"
    stream = ResultsStream(str(path))
    stream.emit(1, "m1", "a", "succeeded", 200, 1)
    assert path.read_bytes() == b"", "not before the outcome is committed"
    stream.flush()
    stream.emit(2, "m2", "a", "succeeded", 200, 1)
    stream.close()
    assert [d["row"] for d in _lines(path)] == [1], "a line never flushed is left to the next run's catch-up"


async def test_results_file_has_every_row_exactly_once_after_kill_9_and_resume(server, tmp_path):
    ids = server.add(600)
    server.api.latency_s = 0.002
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "migrated"} for m in ids])
    results = tmp_path / "results.jsonl"
    args = ("run", str(src), "--rate", "none", "--concurrency", "32", "--results", str(results), "-q")
    kills = await kill_at(server, args, (200, 500, 800))
    code, _, err = await run_cli(*args, base_url=server.base_url)
    assert code == 0, err
    assert kills >= 2
    assert sum(outcomes(tmp_path / "in.jsonl.state.db").values()) == 600
    lines = _lines(results)  # every line whole: a torn one would not parse
    per_row = Counter(line["row"] for line in lines)
    missing = sorted(set(range(1, 601)) - set(per_row))
    twice = sorted(row for row, n in per_row.items() if n > 1)
    assert (missing, twice) == ([], []), f"{kills} kills: {len(missing)} rows missing, {len(twice)} written twice"
    assert {line["meeting_id"] for line in lines} == set(ids)


async def test_rollback_results_have_every_meeting_once_after_kill_9_and_resume(server, tmp_path):
    ids = server.add(200, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    code, _, err = await run_cli("run", str(src), "--rate", "none", base_url=server.base_url)
    assert code == 0, err
    results = tmp_path / "rollback.jsonl"
    args = ("rollback", "--state", f"{src}.state.db", "--rate", "none", "--concurrency", "16", "-q")
    args += ("--results", str(results))
    reached = when_requests_reach(server, sum(server.api.requests.values()) + 150)
    proc = await start_cli(*args, base_url=server.base_url)
    done = asyncio.ensure_future(proc.wait())
    await asyncio.wait({done, asyncio.ensure_future(reached.wait())}, return_when=asyncio.FIRST_COMPLETED)
    proc.kill()
    await done
    server.api.on_request = None
    assert any(server.doc(m)["title"] == "new" for m in ids), "killed part-way"
    code, _, err = await run_cli(*args, base_url=server.base_url)
    assert code == 0, err
    per_meeting = Counter(line["meeting_id"] for line in _lines(results))
    assert set(per_meeting) == set(ids) and set(per_meeting.values()) == {1}
    # a restore that landed just before the kill is found as before on resume: unchanged, still one line
    assert {line["outcome"] for line in _lines(results)} <= {"succeeded", "unchanged"}
    assert all(server.doc(m)["title"] == "orig" for m in ids)


async def test_a_stdin_jobs_invalid_row_has_one_results_line_across_resumes(server, tmp_path):
    """#20 item 15: resumed with the same stream, a stdin job wrote one more ``failed`` line for each
    invalid row on every run; a file job wrote one. Now both write each row exactly once."""
    [mid] = server.add()
    data = b"".join(
        orjson.dumps(row) + b"\n"
        for row in ({"meeting_id": mid, "title": "ok"}, {"meeting_id": mid[:8], "title": "bad id"})
    )
    results = tmp_path / "results.jsonl"
    for _ in range(3):
        cfg = config(tmp_path, server, "-", results_path=str(results), skip_invalid=True)
        await run_job(cfg, stdin=io.BytesIO(data))
    per_row = Counter(line["row"] for line in _lines(results))
    assert per_row == {1: 1, 2: 1}
