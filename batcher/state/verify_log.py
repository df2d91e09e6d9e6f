"""What the job left on each meeting, and ``batcher verify``'s verdicts: the state's side of verify.

What a meeting should hold now is the server's answer to the last write that landed there, by
the job or by its rollback:

- merge jobs: the snapshot's ``landed_after`` (the answer to the job's last write that landed or may
  have), with ``after_updated_at`` when the last write landed and its answer gave one;
- replace and patch jobs keep no snapshot (they read nothing first): their writes' answers are
  kept in ``left_records`` (source ``run``) by the engine (``LeftRecords``);
- a rollback's restore (or a meeting it found as before) is kept in ``left_records`` (source
  ``rollback``) with the snapshot ``seq`` it judged: it is what the job left until the job writes
  the meeting again (the seq moves on).

``targets`` yields one ``Target`` a meeting, in row order, without its document (memory stays
flat: ``document_of`` loads one when a GET must show what changed). Verdicts of the latest pass
are kept in the ``verify`` table (a resumed pass skips what it judged), its progress in meta
``verify`` (``{"pass": n, "complete": bool}``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from .readers import meta_value
from .snapshots import _pack, _unpack
from .store import Store

_META = "verify"

# The meetings a job changed (a write that landed or may have), with what was left and by whom.
# A rollback's record counts for the seq it judged (restored or found as before); else the job's.
_RESTORED = "r.seq = s.seq AND r.outcome IN ('succeeded', 'unchanged')"
_TARGETS = (
    "SELECT s.account_id, s.meeting_id, s.row,"
    f" CASE WHEN {_RESTORED} AND l.seq = s.seq THEN 'rollback' WHEN {_RESTORED} THEN 'before' ELSE 'run' END,"
    f" CASE WHEN {_RESTORED} AND l.seq = s.seq THEN l.updated_at WHEN {_RESTORED} THEN NULL"
    "  WHEN s.write_state = 'landed' THEN s.after_updated_at END"
    " FROM snapshots s"
    " LEFT JOIN left_records l ON l.account_id = s.account_id AND l.meeting_id = s.meeting_id AND l.source = 'rollback'"
    " LEFT JOIN rollback r ON r.account_id = s.account_id AND r.meeting_id = s.meeting_id"
    " WHERE (s.write_state != 'failed' OR s.maybe_landed)"
    " UNION ALL"
    " SELECT account_id, meeting_id, row, 'run', updated_at FROM left_records"
    " WHERE source = 'run' AND NOT EXISTS"
    "  (SELECT 1 FROM snapshots s WHERE s.account_id = left_records.account_id AND s.meeting_id = left_records.meeting_id)"
    " ORDER BY 3, 1, 2"
)
_SAVE_LEFT = (
    "INSERT OR REPLACE INTO left_records (account_id, meeting_id, row, source, document, updated_at, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class Target(NamedTuple):
    """One meeting to verify: where, which row, whose write it shows, the stamp of that write."""

    account_id: str
    meeting_id: str
    row: int
    source: str  # run | rollback | before (restored by a rollback that kept no record: the before-state)
    updated_at: str | None  # the answer's updated_at; None: unknown (a GET must judge it)


def targets(db: sqlite3.Connection) -> Iterator[Target]:
    """Every meeting the job (or its rollback) left something on, in row order (one cursor, read
    lazily: consume it before writing to the same connection)."""
    for found in db.execute(_TARGETS):
        yield Target(*found)


def document_of(db: sqlite3.Connection, target: Target) -> dict[str, Any]:
    """What ``target``'s meeting should hold: the answer to the write that left it (``"***"`` for
    the credentials it set)."""
    if target.source == "before":
        found = db.execute(
            "SELECT before FROM snapshots WHERE account_id = ? AND meeting_id = ?",
            (target.account_id, target.meeting_id),
        ).fetchone()
        return _unpack(found[0])
    if target.source == "rollback" or not _has_snapshot(db, target):
        found = db.execute(
            "SELECT document FROM left_records WHERE account_id = ? AND meeting_id = ?",
            (target.account_id, target.meeting_id),
        ).fetchone()
        return _unpack(found[0])
    found = db.execute(
        "SELECT COALESCE(landed_after, after) FROM snapshots WHERE account_id = ? AND meeting_id = ?",
        (target.account_id, target.meeting_id),
    ).fetchone()
    return _unpack(found[0])


def _has_snapshot(db: sqlite3.Connection, target: Target) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM snapshots WHERE account_id = ? AND meeting_id = ?", (target.account_id, target.meeting_id)
        ).fetchone()
        is not None
    )


class LeftRecords:
    """A replace or patch job's record of what its writes left (buffered, committed with the outcomes)."""

    def __init__(self, store: Store) -> None:
        self._buffer: list[tuple[Any, ...]] = []
        store.flush_extras.append(self._statements)

    def add(self, account_id: str, meeting_id: str, row: int, document: dict[str, Any], updated_at: str | None) -> None:
        """The answer to a write that landed (read-only fields dropped, credentials it set ``"***"``)."""
        self._buffer.append((account_id, meeting_id, row, "run", _pack(document), updated_at, 0))

    def _statements(self) -> list[tuple[str, tuple[Any, ...]]]:
        buffered, self._buffer = self._buffer, []
        return [(_SAVE_LEFT, values) for values in buffered]


def record_restored(
    store: Store, account_id: str, meeting_id: str, row: int, seq: int, document: dict[str, Any], updated_at: str | None
) -> None:
    """What a rollback left on a meeting (its restore's answer, or the meeting found as before)."""
    store.db.execute(_SAVE_LEFT, (account_id, meeting_id, row, "rollback", _pack(document), updated_at, seq))


# -- the verify pass ---------------------------------------------------------------------------------


def start_pass(store: Store) -> tuple[int, bool]:
    """The pass to run: the latest one when it was stopped before its end (resumed: its verdicts
    stand), else a new one (the last pass's verdicts are cleared). Returns (pass, is_resumed)."""
    found = meta_value(store.db, _META, None)
    if isinstance(found, dict) and not found.get("complete"):
        return int(found["pass"]), True
    number = int(found["pass"]) + 1 if isinstance(found, dict) else 1
    store.db.execute("BEGIN")
    store.db.execute("DELETE FROM verify")
    store.set_meta(_META, {"pass": number, "complete": False})
    store.db.execute("COMMIT")
    return number, False


def end_pass(store: Store, number: int) -> None:
    """The pass judged every meeting: the next verify starts afresh."""
    store.set_meta(_META, {"pass": number, "complete": True})


def judged(db: sqlite3.Connection) -> set[tuple[str, str]]:
    """(account, meeting) of every meeting the current pass has judged."""
    return {(a, m) for a, m in db.execute("SELECT account_id, meeting_id FROM verify")}


def record_verdicts(store: Store, verdicts: list[tuple[Target, str, list[dict[str, Any]], str | None]]) -> None:
    """Keep verdicts (target, verdict, changes, message), in one commit."""
    if not verdicts:
        return
    store.db.execute("BEGIN")
    try:
        store.db.executemany(
            "INSERT OR REPLACE INTO verify (account_id, meeting_id, row, verdict, changes, message)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(t.account_id, t.meeting_id, t.row, v, orjson.dumps(c).decode(), m) for t, v, c, m in verdicts],
        )
    except BaseException:
        store.db.execute("ROLLBACK")
        raise
    store.db.execute("COMMIT")


def verdicts(db: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    """The current pass's verdicts as output lines, in row order (nothing when there is no pass:
    a state from before verify)."""
    try:
        rows = db.execute(  # a lazy cursor: memory stays flat however many meetings
            "SELECT row, meeting_id, account_id, verdict, changes, message FROM verify ORDER BY row, meeting_id"
        )
    except sqlite3.OperationalError:  # no such table: a file from an older batcher, read read-only
        return
    for row, meeting, account, verdict, changes, message in rows:
        line = {
            "row": row,
            "meeting_id": meeting,
            "account_id": account,
            "verdict": verdict,
            "changes": orjson.loads(changes),
        }
        if message:
            line["message"] = message
        yield line


def verdict_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Meetings per verdict in the current pass."""
    try:
        return dict(db.execute("SELECT verdict, COUNT(*) FROM verify GROUP BY verdict").fetchall())
    except sqlite3.OperationalError:
        return {}
