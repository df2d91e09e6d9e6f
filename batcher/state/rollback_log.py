"""Rollback's view of the state file: which snapshots to judge, what was found, what to report.

The ``snapshots`` table is written by the engine (``Store.save_snapshot``,
``Store.mark_write``); the ``rollback`` table only by rollback, one row per
meeting with the snapshot ``seq`` it judged. An outcome counts for that seq
only: once the job writes the meeting again, the meeting is judged afresh.
Readers take a connection (``readers``: the report reads them read-only);
writers take the ``Store`` that holds the file's lock.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from .readers import (
    AccountOutcome,
    Failure,
    ResultRecord,
    RunStats,
    accounts_by_outcome,
    meta_value,
    unwritten_results,
)
from .snapshots import _unpack
from .store import Store

_STATS_KEY = "rollback_stats"

# Snapshots a rollback judges: the latest write landed or may have landed, or it failed after an
# earlier write of the job that landed or may have (maybe_landed, sticky): save_snapshot kept the
# first before-state and landed_after holds that earlier write, so the meeting must be read.
JUDGED = "(s.write_state != 'failed' OR s.maybe_landed)"

# Committed rollback outcomes of the job's current writes, as results lines (see ``finished``).
_FINISHED = (
    "SELECT s.row AS row, r.meeting_id AS meeting_id, r.account_id AS account_id, r.outcome AS outcome,"
    " r.status AS status, r.attempts AS attempts, r.error AS error"
    " FROM rollback r JOIN snapshots s USING (account_id, meeting_id)"
    f" WHERE r.seq = s.seq AND r.outcome != 'restoring' AND {JUDGED}"
)


class SnapshotRecord(NamedTuple):
    """One meeting's way back, as a rollback sees it."""

    account_id: str
    meeting_id: str
    row: int
    before: dict[str, Any]
    after: dict[str, Any]
    write_state: str  # pending | landed | unknown | earlier (failed, after an earlier write that may have landed)
    seq: int
    landed_after: dict[str, Any] | None = None  # the job's last write that landed or may have
    restoring: bool = False  # an earlier rollback's restoring PUT may have landed (stopped, or outcome unknown)


def todo(db: sqlite3.Connection, chunk: int = 1000) -> Iterator[SnapshotRecord]:
    """Snapshots a rollback must judge now, in chunks (memory stays flat).

    Every meeting whose latest job write landed or may have landed
    (write_state landed, unknown or pending), or failed after an earlier write
    of the job (handed out as ``earlier``), unless a rollback already
    restored it or found it as before *at the same seq*: a later write of the
    job (``run --retry-failed``, ``run --force``) bumps the seq, so the meeting
    is judged again. Conflicts and errors are judged again by every rollback.
    """
    last = 0
    while True:
        batch = db.execute(
            "SELECT s.rowid, s.account_id, s.meeting_id, s.row, s.before, s.after, s.write_state, s.seq,"
            " s.landed_after, r.seq = s.seq AND (r.outcome = 'restoring' OR r.error = 'unknown_outcome')"
            " FROM snapshots s LEFT JOIN rollback r USING (account_id, meeting_id)"
            f" WHERE s.rowid > ? AND {JUDGED}"
            " AND (r.outcome IS NULL OR r.seq != s.seq OR r.outcome NOT IN ('succeeded', 'unchanged'))"
            " ORDER BY s.rowid LIMIT ?",
            (last, chunk),
        ).fetchall()
        if not batch:
            return
        for _rowid, account, meeting, row, before, after, write_state, seq, landed_after, restoring in batch:
            state = "earlier" if write_state == "failed" else write_state
            landed = _unpack(landed_after) if landed_after is not None else None
            yield SnapshotRecord(
                account, meeting, row, _unpack(before), _unpack(after), state, seq, landed, bool(restoring)
            )
        last = batch[-1][0]


def record(
    store: Store,
    snap: SnapshotRecord,
    outcome: str,
    error: str | None,
    status: int | None,
    message: str,
    attempts: int,
    counters: tuple[int, int, float] = (0, 0, 0.0),
) -> None:
    """Record one rollback outcome, the seq it judged and ``counters`` (committed at once: rollbacks are few).

    ``counters`` (requests, retries, seconds since the last record) are added
    to the rollback's totals in the same transaction, so a killed rollback
    loses none of the requests it made before its last outcome.
    """
    store.db.execute("BEGIN")
    try:
        store.db.execute(
            "INSERT OR REPLACE INTO rollback (account_id, meeting_id, outcome, error, status, message, attempts, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (snap.account_id, snap.meeting_id, outcome, error, status, message, attempts, snap.seq),
        )
        add_stats(store, counters)
    except BaseException:
        store.db.execute("ROLLBACK")
        raise
    store.db.execute("COMMIT")


def stats(db: sqlite3.Connection) -> RunStats:
    """Requests, retries and elapsed seconds over every rollback of the job (killed ones included)."""
    found: RunStats = meta_value(db, _STATS_KEY, {"requests": 0, "retries": 0, "elapsed_s": 0.0})
    return found


def add_stats(store: Store, counters: tuple[int, int, float]) -> None:
    """Add (requests, retries, seconds) to the rollback totals (in the caller's transaction, if any)."""
    requests, retries, elapsed_s = counters
    if not (requests or retries or elapsed_s):
        return
    total = stats(store.db)
    store.set_meta(
        _STATS_KEY,
        {
            "requests": total["requests"] + requests,
            "retries": total["retries"] + retries,
            "elapsed_s": round(total["elapsed_s"] + elapsed_s, 3),
        },
    )


def tally(db: sqlite3.Connection) -> dict[str, Counter[str]]:
    """What rollbacks found for the job's current writes, by write_state class.

    ``{"landed", "unknown", "earlier", "failed"}`` to Counters: each Counter
    has ``meetings`` plus, per judged meeting, its outcome (``succeeded``,
    ``unchanged``) or the error of a failed one (``conflict``,
    ``credential_guard``, ``not_found``...); a meeting not judged at its
    current seq counts as ``pending`` (so does one whose restoring PUT was sent
    by a rollback stopped before its outcome: ``restoring``). ``unknown`` covers write_state unknown
    and pending (a write killed before its outcome was committed); ``earlier``
    is a failed write after an earlier one of the job; ``failed`` (the job's
    only write never landed: not a change of the job) only has ``meetings``.
    """
    out: dict[str, Counter[str]] = {
        "landed": Counter(),
        "unknown": Counter(),
        "earlier": Counter(),
        "failed": Counter(),
    }
    for write_state, judged, n in db.execute(
        "SELECT CASE WHEN s.write_state = 'failed' AND s.maybe_landed THEN 'earlier' ELSE s.write_state END,"
        " CASE WHEN r.seq IS s.seq AND r.outcome != 'restoring' THEN COALESCE(r.error, r.outcome) ELSE 'pending' END,"
        " COUNT(*)"
        " FROM snapshots s LEFT JOIN rollback r USING (account_id, meeting_id) GROUP BY 1, 2"
    ):
        group = "unknown" if write_state == "pending" else write_state
        out[group]["meetings"] += n
        if group != "failed":
            out[group][judged] += n
    return out


def failures(db: sqlite3.Connection) -> Iterator[Failure]:
    """Report entries ``(row, meeting_id, account_id, error, status, message, attempts, None)`` of failed outcomes.

    Only outcomes for the job's current writes (same seq), never a snapshot
    whose only write failed. The last field is the report's ``patch``: rollback
    sends a before-document, not a patch.
    """
    for entry in db.execute(
        "SELECT s.row, r.meeting_id, r.account_id, r.error, r.status, r.message, r.attempts"
        " FROM rollback r JOIN snapshots s USING (account_id, meeting_id)"
        f" WHERE r.outcome = 'failed' AND r.seq = s.seq AND {JUDGED} ORDER BY s.row"
    ):
        yield Failure._make((*entry, None))


def finished(db: sqlite3.Connection, written: Iterable[tuple[Any, Any, Any]] = ()) -> Iterator[ResultRecord]:
    """Result lines of the committed rollback outcomes of the job's current writes, except those
    ``written`` already names by (row, meeting_id, outcome) (``readers.unwritten_results``)."""
    return unwritten_results(db, _FINISHED, written)


def has_outcomes(db: sqlite3.Connection) -> bool:
    """Whether any rollback outcome was ever recorded."""
    return db.execute("SELECT 1 FROM rollback LIMIT 1").fetchone() is not None


def accounts(db: sqlite3.Connection, top: int) -> tuple[list[AccountOutcome], int]:
    """Judged meetings per account and outcome for the job's current writes (``accounts_by_outcome``).

    A meeting not judged at its current seq, or whose restoring PUT was sent by a rollback stopped
    before its outcome (``restoring``), is ``pending``, as in ``tally``.
    """
    counts_sql = (
        "SELECT s.account_id, CASE WHEN r.seq IS s.seq AND r.outcome != 'restoring' THEN r.outcome"
        " ELSE 'pending' END, COUNT(*)"
        " FROM snapshots s LEFT JOIN rollback r USING (account_id, meeting_id)"
        f" WHERE {JUDGED} GROUP BY 1, 2"
    )
    return accounts_by_outcome(db, counts_sql, top)
