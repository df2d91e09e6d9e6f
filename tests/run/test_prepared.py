"""``Intake.prepare`` computes the start of a job once: the state's identity, pre-flight, the counts."""

from __future__ import annotations

import asyncio
from typing import Any

from batcher.run.intake import Intake
from batcher.state.store import Store

from ..conftest import config, write_jsonl

GOOD = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"
OTHER = "1c8f3bad-5a2e-4b68-8b4f-2d3e4f5a6b7c"


async def in_thread(work: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(work, **kwargs)


async def test_a_new_file_job_is_preflighted_once_and_counts_every_valid_and_invalid_row(tmp_path):
    rows = [{"meeting_id": GOOD, "title": "a"}, {"meeting_id": "not-a-uuid", "title": "b"}, {"meeting_id": OTHER}]
    cfg = config(tmp_path, None, write_jsonl(tmp_path / "in.jsonl", rows), skip_invalid=True)
    store = Store.open(cfg.state_file)
    try:
        prepared = await Intake(cfg, store, lambda err: None).prepare(in_thread)
        assert (prepared.is_preflighted, prepared.invalid) == (True, 1)
        assert (prepared.counts["total"], prepared.to_send) == (3, 2)  # the invalid row is failed, not sent
        again = await Intake(cfg, store, lambda err: None).prepare(in_thread)
        assert (again.is_preflighted, again.invalid, again.to_send) == (False, 0, 2)  # the state is this job's
    finally:
        store.close()


async def test_a_stdin_job_counts_nothing_before_its_rows_arrive(tmp_path):
    cfg = config(tmp_path, None, "-")
    store = Store.open(cfg.state_file)
    try:
        prepared = await Intake(cfg, store, lambda err: None).prepare(in_thread)
        assert (prepared.counts, prepared.to_send, prepared.is_preflighted) == (None, None, False)
    finally:
        store.close()
