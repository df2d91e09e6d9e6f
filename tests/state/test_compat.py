"""A state file written by the batcher of before the restructuring still opens, resumes and rolls back.

``tests/fixtures/state_v0`` was made by ``make.py`` there with batcher at commit 7f5a603: a merge job
of six renames whose third row names a meeting the server lacks, stopped by ``--max-failures 0``
after it (rows 1-2 succeeded, 3 failed, 4-6 skipped); ``server.jsonl`` is the server afterwards.
The job recorded its input's path and the server's URL (a port of that day): the test moves the
state to its own folder and server by rewriting those two values, as ``--force`` would not (it
changes how rows are matched).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import orjson

from batcher.commands.rollback import rollback_job
from batcher.fake.server import FakeApi, start
from batcher.run.engine import run_job

from ..conftest import config

FIXTURE = Path(__file__).parents[1] / "fixtures" / "state_v0"
MISSING = "00000000-0000-0000-0000-000000001003"


def _move_job(state: Path, input_path: Path, base_url: str) -> None:
    db = sqlite3.connect(state)
    (value,) = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
    fp = orjson.loads(value)
    fp["input"], fp["base_url"] = str(input_path.resolve()), base_url
    db.execute("UPDATE meta SET value = ? WHERE key = 'fingerprint'", (orjson.dumps(fp).decode(),))
    db.commit()
    db.close()


async def test_a_state_made_before_the_restructuring_resumes_and_rolls_back(tmp_path: Path) -> None:
    api = FakeApi(seed=1)
    api.load_seed((FIXTURE / "server.jsonl").read_bytes().splitlines())
    runner, port = await start(api)
    try:
        base_url = f"http://127.0.0.1:{port}"
        state, input_path = tmp_path / "job.state.db", tmp_path / "input.csv"
        shutil.copy(FIXTURE / "state.db", state)
        shutil.copy(FIXTURE / "input.csv", input_path)
        _move_job(state, input_path, base_url)
        cfg = config(tmp_path, None, input_path, base_url=base_url, concurrency=1, state_path=str(state))

        result = await run_job(cfg)

        assert result.exit_code == 1  # row 3 stays failed (no --retry-failed)
        assert {k: result.summary[k] for k in ("total", "succeeded", "failed", "skipped")} == {
            "total": 6,
            "succeeded": 5,
            "failed": 1,
            "skipped": 0,
        }
        titles = {mid: doc["title"] for (_, mid), doc in api.meetings.items()}
        assert sorted(titles.values()) == ["new 0", "new 1", "new 3", "new 4", "new 5", "old 6"]
        assert MISSING not in titles

        undone = await rollback_job(cfg)

        assert undone.exit_code == 0
        assert sorted(doc["title"] for doc in api.meetings.values()) == [f"old {i}" for i in (0, 1, 3, 4, 5, 6)]
    finally:
        await runner.cleanup()
