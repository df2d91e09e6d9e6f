"""A rollback killed between a restoring PUT that landed and the commit of its outcome.

Resumed, it finds the meeting as before. That is its own work: the meeting is
counted restored, not "already as before".
"""

from __future__ import annotations

import pytest

from batcher.commands.rollback import Rollback, rollback_job
from batcher.run.engine import run_job

from ..conftest import config, read_jsonl, write_jsonl


class Killed(Exception):
    """Stands for kill -9: nothing after it in the process runs."""


async def test_meetings_a_killed_rollback_restored_are_counted_restored_when_it_resumes(server, tmp_path, monkeypatch):
    ids = server.add(3, title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    await run_job(config(tmp_path, server, src))
    original = Rollback.record

    def killed_after_the_put(self, snap, outcome, *args, **kwargs):
        if outcome == "succeeded":
            raise Killed  # the PUT landed; its outcome was never committed
        return original(self, snap, outcome, *args, **kwargs)

    monkeypatch.setattr(Rollback, "record", killed_after_the_put)
    with pytest.raises((Killed, BaseExceptionGroup)):
        await rollback_job(config(tmp_path, server, src, concurrency=1))
    assert [server.doc(m)["title"] for m in ids].count("orig") == 1
    monkeypatch.setattr(Rollback, "record", original)

    results = tmp_path / "rollback.results.jsonl"
    result = await rollback_job(config(tmp_path, server, src, results_path=str(results)))
    assert (result.summary["succeeded"], result.summary["unchanged"]) == (3, 0)
    assert [server.doc(m)["title"] for m in ids] == ["orig"] * 3
    assert sorted(line["outcome"] for line in read_jsonl(results)) == ["succeeded"] * 3


async def test_a_restore_in_flight_is_not_a_finished_outcome(server, tmp_path, monkeypatch):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    original = Rollback.record

    def killed(self, snap, outcome, *args, **kwargs):
        raise Killed

    monkeypatch.setattr(Rollback, "record", killed)
    results = tmp_path / "rollback.results.jsonl"
    with pytest.raises((Killed, BaseExceptionGroup)):
        await rollback_job(config(tmp_path, server, src, results_path=str(results)))
    monkeypatch.setattr(Rollback, "record", original)
    summary = (await rollback_job(config(tmp_path, server, src, results_path=str(results)))).summary
    assert (summary["succeeded"], summary["failed"], summary["skipped"]) == (1, 0, 0)
    assert [line["outcome"] for line in read_jsonl(results)] == ["succeeded"]


async def test_a_restore_whose_outcome_stayed_unknown_is_counted_restored_when_it_had_landed(server, tmp_path):
    [mid] = server.add(title="orig")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": mid, "title": "new"}])
    await run_job(config(tmp_path, server, src))
    # the restoring PUT lands, but every answer to it is lost
    server.api.faults.append({"kind": "apply_then_drop", "method": "PUT", "meeting": mid, "times": 10})
    first = await rollback_job(config(tmp_path, server, src, max_attempts=3))
    assert (first.summary["succeeded"], first.summary["failed"]) == (0, 1)
    assert server.doc(mid)["title"] == "orig"
    server.api.faults.clear()
    second = await rollback_job(config(tmp_path, server, src))
    assert (second.summary["succeeded"], second.summary["unchanged"]) == (1, 0)
