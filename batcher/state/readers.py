"""What the summaries, ``status`` and the HTML report read from a state: functions of a connection.

Every reader takes a ``sqlite3.Connection``, so the running job (``Store.db``) and a file opened
read-only while a job may be writing it (``readonly.open_read_only``) are read by the same
code, as sqlite-utils' ``Database`` takes a connection. Nothing here writes to the file: the
one temporary table (``unwritten_results``) lives in the connection's temporary database.

Readers read a version-0 file (``tables``) as it is, as long as its snapshots have ``maybe_landed``
(``open_read_only`` refuses one that lacks it): a read-only reader cannot migrate a file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, NotRequired, TypedDict

import orjson

from . import tables

OUTCOMES = ("succeeded", "unchanged", "failed", "skipped")


class Failure(NamedTuple):
    """One failed row, as the failure report shows it."""

    row: int
    meeting_id: str | None
    account_id: str | None
    error: str | None
    status: int | None
    message: str | None
    attempts: int | None
    patch: str | None  # redacted JSON


class RunStats(TypedDict):
    """A job's request counters over every run (``run_stats``) or every rollback, as the meta table keeps them."""

    requests: int
    retries: int
    elapsed_s: float
    runs: NotRequired[int]  # runs that reached their end (``run_stats`` only)
    last_run_at: NotRequired[str]  # when the last of them ended, ISO 8601 UTC (``run_stats`` only)


class ResultRecord(NamedTuple):
    """One finished row (or meeting, for rollback) as a ``--results`` line shows it."""

    row: int
    meeting_id: str | None
    account_id: str | None
    outcome: str
    status: int | None
    attempts: int
    error: str | None = None  # rollback lines say why a meeting was not restored


class AccountOutcome(NamedTuple):
    """Rows (or meetings) of one account with one outcome; the accounts beyond the top ones merged."""

    account_id: str | None  # None when ``is_top`` is False: every other account
    is_top: bool
    outcome: str
    n: int  # not ``count``: a NamedTuple field must not hide ``tuple.count``


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether the state has this table (a version-0 file may lack ``runs`` and ``timeline``)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def read_meta(db: sqlite3.Connection) -> dict[str, Any]:
    """The whole meta table, JSON-decoded: the job's identity, counters, live record."""
    return {key: orjson.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}


def meta_value(db: sqlite3.Connection, key: str, default: Any = None) -> Any:
    """One value of the meta table (JSON-decoded), or ``default``."""
    found = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return orjson.loads(found[0]) if found else default


def outcome_counts(db: sqlite3.Connection) -> dict[str, int]:
    """Rows per recorded outcome, ``pending`` included (only outcomes some row has)."""
    return dict(db.execute("SELECT outcome, COUNT(*) FROM rows GROUP BY outcome").fetchall())


def counts(db: sqlite3.Connection) -> dict[str, int]:
    """Rows per outcome over the whole job (pending counts as skipped), and ``total``."""
    out = dict.fromkeys(OUTCOMES, 0)
    for outcome, n in outcome_counts(db).items():
        key = "skipped" if outcome == "pending" else outcome
        out[key] = out.get(key, 0) + n
    out["total"] = sum(out[o] for o in OUTCOMES)
    return out


def failures(db: sqlite3.Connection) -> Iterator[Failure]:
    """Every failed row of the job, in row order (read as it comes: nothing held per row)."""
    for found in db.execute(
        "SELECT row, meeting_id, account_id, error, status, message, attempts, patch"
        " FROM rows WHERE outcome = 'failed' ORDER BY row"
    ):
        yield Failure(*found)


def failure_counts(db: sqlite3.Connection) -> dict[str | None, int]:
    """Failed rows per error kind, commonest first."""
    return dict(db.execute("SELECT error, COUNT(*) FROM rows WHERE outcome = 'failed' GROUP BY error ORDER BY 2 DESC"))


def failure_messages(db: sqlite3.Connection) -> Iterator[tuple[str | None, str | None, int]]:
    """(error kind, message, failed rows) for every distinct pair, commonest first."""
    yield from db.execute(
        "SELECT error, message, COUNT(*) FROM rows WHERE outcome = 'failed' GROUP BY error, message ORDER BY 3 DESC"
    )


def row_accounts(db: sqlite3.Connection, top: int) -> tuple[list[AccountOutcome], int]:
    """Rows per account and outcome (``accounts_by_outcome`` of the rows table)."""
    return accounts_by_outcome(db, "SELECT account_id, outcome, COUNT(*) FROM rows GROUP BY 1, 2", top)


def accounts_by_outcome(db: sqlite3.Connection, counts_sql: str, top: int) -> tuple[list[AccountOutcome], int]:
    """From ``counts_sql`` (``account, outcome, n``): the ``top`` accounts with the most rows, each
    by outcome, then every other account merged (``is_top`` False); and how many those others are.

    The merging is done by SQLite: memory stays bounded however many accounts the job has.
    """
    query = (
        f"WITH t(account, outcome, n) AS ({counts_sql}),"
        " top(account) AS (SELECT account FROM t GROUP BY account ORDER BY SUM(n) DESC, account LIMIT ?)"
        " SELECT kept, CASE WHEN kept THEN account END, outcome, SUM(n) FROM"
        " (SELECT t.*, EXISTS (SELECT 1 FROM top WHERE top.account IS t.account) AS kept FROM t)"
        " GROUP BY 1, 2, 3 ORDER BY kept DESC, 2"
    )
    found = [AccountOutcome(account, bool(kept), outcome, n) for kept, account, outcome, n in db.execute(query, (top,))]
    others = 0
    if any(not entry.is_top for entry in found):
        (others,) = db.execute(
            f"WITH t(account, outcome, n) AS ({counts_sql}) SELECT COUNT(*) - ? FROM (SELECT DISTINCT account FROM t)",
            (top,),
        ).fetchone()
    return found, others


def unwritten_results(
    db: sqlite3.Connection, finished_sql: str, written: Iterable[tuple[Any, Any, Any]]
) -> Iterator[ResultRecord]:
    """The finished rows of ``finished_sql`` that have no line among ``written``, in row order.

    ``finished_sql`` selects ``row, meeting_id, account_id, outcome, status, attempts`` (and
    optionally ``error``); ``written`` gives (row, meeting_id, outcome) of the lines already in a
    results file. A line counts as present when all three match, so a retried row whose new
    outcome was lost still gets its line. The written keys go to a temporary table, not to
    memory: a million-line file costs no RAM. ``written`` is read to its end before the first
    record is yielded.
    """
    db.execute(tables.RESULTS_SEEN)
    db.execute("DELETE FROM temp.results_seen")
    insert = "INSERT INTO temp.results_seen VALUES (?, ?, ?)"
    batch: list[tuple[Any, Any, Any]] = []
    for key in written:
        batch.append(key)
        if len(batch) >= 10000:
            db.executemany(insert, batch)
            batch.clear()
    db.executemany(insert, batch)
    db.execute(tables.RESULTS_SEEN_ROW)
    for values in db.execute(
        f"SELECT * FROM ({finished_sql}) AS c WHERE NOT EXISTS (SELECT 1 FROM temp.results_seen AS s"
        " WHERE s.row = c.row AND s.meeting_id IS c.meeting_id AND s.outcome = c.outcome) ORDER BY c.row"
    ):
        yield ResultRecord(*values)
    db.execute("DROP TABLE temp.results_seen")
