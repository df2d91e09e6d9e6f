"""Snapshots in the state: one per meeting whatever the case of its id, found through the index."""

from __future__ import annotations

from batcher.state import rollback_log
from batcher.state.store import Store


def test_a_snapshot_is_found_whatever_case_the_meeting_id_is_spelled_in(tmp_path):
    """Guards the snapshot key: one meeting spelt in two cases keeps its first before-state."""
    store = Store.open(str(tmp_path / "s.db"))
    try:
        store.save_snapshot("acct", "abcdef00-0000-4000-8000-00000000000a", 1, {"title": "orig"}, {"title": "new"})
        store.mark_write("acct", "abcdef00-0000-4000-8000-00000000000a", "landed")
        store.save_snapshot("acct", "ABCDEF00-0000-4000-8000-00000000000A", 1, {"title": "new"}, {"title": "newer"})
        store.flush()
        [(before, seq)] = [(b, s.seq) for s in rollback_log.todo(store.db) for b in [s.before]]
        assert (before, seq) == ({"title": "orig"}, 2)
    finally:
        store.close()


def test_finding_a_snapshot_by_its_case_insensitive_key_uses_the_index_not_a_scan(tmp_path):
    """Guards marking a write: the snapshot is found through its case-insensitive index, not a table scan."""
    from batcher.state.snapshots import _MARK_WRITE

    store = Store.open(str(tmp_path / "s.db"))
    try:
        [(*_, plan)] = store.db.execute(
            "EXPLAIN QUERY PLAN " + _MARK_WRITE, ("landed", "a", "m", None, None)
        ).fetchall()
    finally:
        store.close()
    assert "snapshots_key" in plan
