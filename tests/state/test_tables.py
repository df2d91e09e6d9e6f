"""The state file's schema version: new files, the migration chain, and files from a newer batcher."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from batcher.commands.status import read_status
from batcher.errors import StateMismatchError, UsageError
from batcher.state import tables
from batcher.state.readonly import is_locked, open_read_only
from batcher.state.store import Store

FIXTURE = Path(__file__).parent.parent / "fixtures" / "state_v0"
DATA_TABLES = ("rows", "meta", "keys", "snapshots", "rollback", "runs", "timeline")


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def _contents(path: Path) -> dict[str, list[tuple]]:
    db = sqlite3.connect(path)
    try:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in DATA_TABLES}
    finally:
        db.close()


def test_a_new_state_file_is_created_at_the_current_version_with_every_table(tmp_path):
    path = tmp_path / "new.state.db"
    Store.open(str(path)).close()
    assert _version(path) == tables.SCHEMA_VERSION
    with sqlite3.connect(path) as db:
        names = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert set(DATA_TABLES) <= names


def test_the_state_made_before_versions_migrates_to_the_current_version_and_keeps_its_rows(tmp_path):
    path = tmp_path / "job.state.db"
    shutil.copy(FIXTURE / "state.db", path)
    assert _version(path) == 0
    before = _contents(path)
    assert len(before["rows"]) == 6 and before["runs"] and before["snapshots"]

    Store.open(str(path)).close()

    assert _version(path) == tables.SCHEMA_VERSION
    after = _contents(path)
    # later versions only add columns, at the end, empty for rows written before them
    added = {"snapshots": 1}  # v2: after_updated_at
    for table, rows in before.items():
        width = len(rows[0]) if rows else 0
        assert [row[:width] for row in after[table]] == rows, table
        assert all(set(row[width:]) <= {None} and len(row) == width + added.get(table, 0) for row in after[table])


def test_a_version_1_state_gains_the_stamp_of_what_the_job_left(tmp_path):
    path = tmp_path / "job.state.db"
    shutil.copy(FIXTURE / "state.db", path)
    db = sqlite3.connect(path, isolation_level=None)
    tables.migrate(db)
    db.execute("ALTER TABLE snapshots DROP COLUMN after_updated_at")  # as a version-1 file was
    db.execute("PRAGMA user_version = 1")

    assert tables.migrate(db) == 1

    columns = [name for _cid, name, *_ in db.execute("PRAGMA table_info(snapshots)")]
    assert columns[-1] == "after_updated_at" and _version(path) == tables.SCHEMA_VERSION
    db.close()


def test_a_version_0_file_from_before_runs_were_kept_gains_the_runs_and_timeline_tables(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in (tables.ROWS, tables.META, tables.KEYS, tables.ROLLBACK):
        db.execute(statement)
    db.execute("INSERT INTO rows (row, outcome) VALUES (1, 'succeeded')")
    db.close()

    tables.migrate(db := sqlite3.connect(path, isolation_level=None))
    names = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "timeline", "snapshots"} <= names
    assert db.execute("SELECT row, outcome FROM rows").fetchall() == [(1, "succeeded")]
    db.close()


def test_migrating_a_file_already_at_the_current_version_writes_nothing(tmp_path):
    path = tmp_path / "job.state.db"
    shutil.copy(FIXTURE / "state.db", path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=DELETE")  # every write lands in the main file, none in a WAL
    db = sqlite3.connect(path, isolation_level=None)
    assert tables.migrate(db) == 0
    db.close()
    once = path.read_bytes()

    db = sqlite3.connect(path, isolation_level=None)
    assert tables.migrate(db) == tables.SCHEMA_VERSION
    db.close()

    assert path.read_bytes() == once


def _state_of_a_newer_batcher(path: Path) -> bytes:
    Store.open(str(path)).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA user_version = {tables.SCHEMA_VERSION + 1}")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path.read_bytes()


def test_a_state_from_a_newer_batcher_is_refused_by_number_and_left_byte_identical(tmp_path):
    path = tmp_path / "newer.state.db"
    made = _state_of_a_newer_batcher(path)
    files = sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(StateMismatchError) as refused:
        Store.open(str(path))

    message = str(refused.value)
    assert f"state version {tables.SCHEMA_VERSION + 1}" in message
    assert f"reads up to {tables.SCHEMA_VERSION}" in message and "upgrade batcher" in message
    assert path.read_bytes() == made
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    assert not is_locked(str(path)), "the refused open let go of the state's lock"


def test_status_and_the_report_refuse_a_state_from_a_newer_batcher_too(tmp_path):
    path = tmp_path / "newer.state.db"
    made = _state_of_a_newer_batcher(path)

    with pytest.raises(StateMismatchError, match="made by a newer batcher"):
        open_read_only(str(path))

    assert path.read_bytes() == made


def test_a_state_too_old_to_read_without_migrating_is_refused_by_status_with_the_way_to_migrate_it(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in (tables.ROWS, tables.META, tables.KEYS, tables.ROLLBACK):
        db.execute(statement)
    db.execute(  # the snapshots table of a batcher from before maybe_landed
        "CREATE TABLE snapshots (account_id TEXT NOT NULL, meeting_id TEXT NOT NULL, row INTEGER, before BLOB NOT NULL,"
        " after BLOB NOT NULL, write_state TEXT NOT NULL DEFAULT 'pending', seq INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (account_id, meeting_id))"
    )
    db.execute("INSERT INTO meta (key, value) VALUES ('fingerprint', '{}')")
    db.close()
    before = path.read_bytes()

    with pytest.raises(UsageError, match="resume it once"):
        read_status(str(path))
    assert path.read_bytes() == before
