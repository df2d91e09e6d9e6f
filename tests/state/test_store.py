"""The store: named row records, group commits that fail whole, migrations on open, no lock left behind."""

from __future__ import annotations

import sqlite3

import pytest

from batcher.state.store import Store

from ..conftest import ACCOUNT


def test_account_is_part_of_the_row_record(tmp_path):
    """Rows are named records, not 8-tuples."""
    store = Store.open(str(tmp_path / "s.db"))
    from batcher.state.store import RowRecord

    store.add_rows([RowRecord(1, ACCOUNT, "m", b"h")])
    record = store.row_record(1)
    store.close()
    assert record is not None and (record.account_id, record.outcome) == (ACCOUNT, "pending")


MEETING = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"


def test_a_failed_commit_rolls_back_and_keeps_its_outcomes_for_the_next(tmp_path):
    """Guards the group commit: a failed flush rolls back whole, and the next one carries the outcomes and counters it held."""
    from batcher.state.store import RowRecord, Store

    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        store.add_rows([RowRecord(1, "acct-1", MEETING, b"h" * 16), RowRecord(2, "acct-1", MEETING.upper(), b"i" * 16)])
        if store.db.in_transaction:  # pre-flight's own transaction
            store.commit()
        store.record(1, "succeeded", status=200, attempts=1)
        store.count_requests(2, 0, 0.5)
        store.db.execute(
            "CREATE TEMP TRIGGER full_disk BEFORE INSERT ON snapshots BEGIN SELECT RAISE(FAIL, 'disk full'); END"
        )
        with pytest.raises(sqlite3.Error, match="disk full"):
            store.save_snapshots([("acct-1", MEETING, 2, {"title": "a"}, {"title": "b"})])
        assert not store.db.in_transaction, "a failed flush left its transaction open"
        store.db.execute("DROP TRIGGER full_disk")
        store.flush()  # the next group commit: the outcome and the counters the failed one carried
        assert store.db.execute("SELECT outcome FROM rows WHERE row = 1").fetchone() == ("succeeded",)
        assert store.run_stats()["requests"] == 2
        assert store.db.execute("SELECT COUNT(*) FROM snapshots").fetchone() == (0,)  # the caller was told
    finally:
        store.close()


def test_a_state_file_from_before_maybe_landed_is_migrated_on_open(tmp_path):
    """Guards the migration on open: a state from before the ``maybe_landed`` column gets it, set from each write's state."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the snapshots table as the previous release made it
        db.execute(
            "CREATE TABLE snapshots (account_id TEXT NOT NULL, meeting_id TEXT NOT NULL, row INTEGER,"
            " before BLOB NOT NULL, after BLOB NOT NULL, write_state TEXT NOT NULL DEFAULT 'pending',"
            " seq INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (account_id, meeting_id))"
        )
        db.execute("INSERT INTO snapshots VALUES ('a', 'm1', 1, x'00', x'00', 'failed', 2)")
        db.execute("INSERT INTO snapshots VALUES ('a', 'm2', 2, x'00', x'00', 'failed', 1)")
    Store.open(str(path)).close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT meeting_id, maybe_landed FROM snapshots ORDER BY meeting_id").fetchall()
    assert rows == [("m1", 1), ("m2", 0)]


def test_a_state_file_that_is_not_a_database_leaves_no_lock_behind(tmp_path):
    """Guards Store.open: a file that is not a database raises without keeping its lock, even while the traceback lives."""
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    kept = []  # the tracebacks stay alive, as in a caller reporting the error: no garbage collector's help
    for _ in range(2):  # the second open would say "in use" if the first kept its lock
        with pytest.raises(sqlite3.DatabaseError) as caught:
            Store.open(str(path))
        kept.append(caught)
