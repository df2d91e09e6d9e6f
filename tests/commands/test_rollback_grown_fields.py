"""Rollback after the API grew a field: a new field at its default is not someone else's edit.

An API release adds ``noise_cancellation: false`` to every meeting. Neither the before-state nor
the job's write had it, so a rollback that compared whole documents would call every meeting a
``conflict`` and restore nothing. A grown field is left out of the comparison only while it holds
its default (false, null, 0, "", empty; the spec's default for a field the schema knows): one set
to anything else may be a person's choice, and stays a conflict.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batcher.commands.rollback import rollback_job
from batcher.core.decide import Options, Refuse, Send, restore
from batcher.run.engine import run_job

from ..conftest import config, write_jsonl

BEFORE = {"title": "orig", "persist_chat": False}
AFTER = {"title": "new", "persist_chat": False}


@pytest.mark.parametrize(
    "grown", [{"noise_cancellation": False}, {"beta": {"knob": None}}, {"transcribe_on_end": False}]
)
def test_a_field_the_api_grew_at_its_default_does_not_make_a_conflict(grown: dict) -> None:
    decision = restore("landed", BEFORE, AFTER, {**AFTER, **grown}, Options())
    assert isinstance(decision, Send) and decision.body["title"] == "orig"


def test_a_grown_field_holding_another_value_is_still_a_conflict() -> None:
    decision = restore("landed", BEFORE, AFTER, {**AFTER, "noise_cancellation": True}, Options())
    assert isinstance(decision, Refuse) and decision.error == "conflict"


async def test_rollback_restores_every_meeting_after_the_api_grew_a_field(server, tmp_path: Path) -> None:
    ids = server.add(4, title="orig")
    cfg = config(tmp_path, server, write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids]))
    assert (await run_job(cfg)).exit_code == 0
    for mid in ids:  # the API release: every meeting now shows the new field at its default
        server.doc(mid)["noise_cancellation"] = False

    result = await rollback_job(cfg)

    assert result.exit_code == 0
    assert [server.doc(m)["title"] for m in ids] == ["orig"] * 4
