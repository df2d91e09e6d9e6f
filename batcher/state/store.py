"""The SQLite state file: job identity, one row per input row, snapshots, rollback.

Durability with a bound: outcomes are buffered and committed in groups; the
engine flushes once ``--concurrency`` outcomes are waiting (and a few times a
second), so after a ``kill -9`` at most that many finished rows, plus those in
flight, are sent again. WAL with ``synchronous=NORMAL`` makes a commit survive the death of the
process (only a power cut could undo the last ones), at a few microseconds a
commit instead of an fsync each. The job's request counters (requests, retries,
elapsed) ride on the same group commits as deltas, so a killed run still counts.

A ``--force`` rebuild carries every outcome of a row whose (account, meeting,
patch) is unchanged, failures included: ``--force`` alone never retries a
failed row; ``--retry-failed`` does.

Secrets are never stored: patches are kept only as a hash (to match rows on
``--force``) and, for failed rows, redacted; snapshots hold what GET showed
(which never includes credentials) and what was PUT with credentials shown as "***" (so rollback knows which it set).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from ..errors import StateLockedError, StateMismatchError
from . import readers, tables
from .keyset import KeySet
from .readers import OUTCOMES, Failure, ResultRecord, RunStats
from .snapshots import _MARK_WRITE, SnapshotsMixin

__all__ = ["OUTCOMES", "Failure", "RowRecord", "Store"]


@dataclass(slots=True)
class RowRecord:
    """One input row as the state keeps it (columns of the ``rows`` table, in order)."""

    row: int
    account_id: str | None
    meeting_id: str | None
    patch_hash: bytes | None
    outcome: str = "pending"
    error: str | None = None
    message: str | None = None
    patch: str | None = None  # redacted JSON, failed rows only


_STATS_KEY = "run_stats"
_UPDATE_ROW = "UPDATE rows SET outcome = ?, error = ?, status = ?, message = ?, attempts = ?, patch = ? WHERE row = ?"


class Store(SnapshotsMixin):
    """One job's state file. Open with ``Store.open(path)``; single writer (file lock).

    Snapshots (merge mode's way back) are written by ``SnapshotsMixin`` (snapshots.py).
    """

    def __init__(self, path: str, db: sqlite3.Connection, lock: IO[bytes], is_new: bool) -> None:
        self.path = path
        self.db = db
        self.is_new = is_new
        self._lock = lock
        self._pending: list[tuple[Any, ...]] = []
        self._pending_writes: list[tuple[str, str, str, bytes | None, str | None]] = []
        self._stats_delta: tuple[int, int, float] = (0, 0, 0.0)  # requests, retries, elapsed_s not yet committed
        # more statements for every commit, e.g. the timeline's buckets (core/timings.py): they ride on each one
        self.flush_extras: list[Callable[[], list[tuple[str, tuple[Any, ...]]]]] = []
        self._unsaved_extras: list[tuple[str, tuple[Any, ...]]] = []  # flush_extras statements of a failed flush
        self.keys = KeySet(db)

    @classmethod
    def open(cls, path: str) -> Store:
        """Open (or create) the state file, take its lock and bring it to the current schema
        (``tables.migrate``); a file from a newer batcher is refused (``StateMismatchError``)."""
        is_new = not os.path.exists(path)
        lock = open(path, "ab")  # noqa: SIM115 - held for the Store's life
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateLockedError(
                f"{path} is in use by another batcher process; wait for it to finish or stop it first"
            ) from None
        db = None
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            version = tables.version_of(db, path)  # a newer batcher's file is refused before anything is written
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            tables.migrate(db, version)
        except BaseException:
            # a corrupt or unreadable file: release what was taken before saying so
            if db is not None:
                db.close()
            lock.close()
            raise
        return cls(path, db, lock, is_new)

    @property
    def is_closed(self) -> bool:
        """True once ``close`` ran."""
        return self._lock.closed

    def close(self) -> None:
        """Flush, release the lock (safe to call twice)."""
        if self._lock.closed:
            return
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.flush()
        self.db.close()
        self._lock.close()

    # -- job identity -------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A value from the meta table (JSON-decoded)."""
        return readers.meta_value(self.db, key, default)

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value in the meta table."""
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, orjson.dumps(value).decode()))

    def check_identity(self, fingerprint: dict[str, Any], *, force: bool) -> bool:
        """Compare with the job that made this state. True when rows must be rebuilt.

        Raises ``StateMismatchError`` naming every difference unless ``force``.
        """
        old = self.get_meta("fingerprint")
        if old is None:
            return True
        differs = [f"{k}: was {old.get(k)!r}, now {v!r}" for k, v in fingerprint.items() if old.get(k) != v]
        if not differs:
            return False
        if not force:
            raise StateMismatchError(
                f"{self.path} belongs to a different job ({'; '.join(differs)}). "
                "Use another --state, or --force to reuse it (rows already done with the same patch are not resent)"
            )
        return True

    # -- rows -----------------------------------------------------------------

    def begin(self) -> None:
        """Start a write transaction (for bulk loads)."""
        self.db.execute("BEGIN")

    def commit(self) -> None:
        """Commit the current transaction."""
        self.db.execute("COMMIT")

    def rollback_tx(self) -> None:
        """Abandon the current transaction."""
        self.db.execute("ROLLBACK")

    def archive_rows(self) -> None:
        """Move rows aside before a ``--force`` rebuild, to carry done outcomes over.

        Plain statements only (``executescript`` would commit): this runs inside
        the rebuild's transaction, so a rebuild that fails leaves the old rows.
        """
        self.db.execute("DROP TABLE IF EXISTS rows_old")
        self.db.execute("ALTER TABLE rows RENAME TO rows_old")
        self.db.execute(tables.ROWS)
        self.db.execute("DELETE FROM keys")
        self.db.execute(tables.ROWS_OLD_MEETING)

    def carry_over(self) -> int:
        """After a rebuild: rows whose (account, meeting, patch) was already done stay done."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rows_old'").fetchone():
            return 0
        # Failed rows keep their failure too: --force alone never retries them (--retry-failed does).
        cur = self.db.execute(
            """UPDATE rows SET outcome = o.outcome, error = o.error, status = o.status, message = o.message,
                 attempts = o.attempts, patch = o.patch
               FROM rows_old AS o
               WHERE rows.outcome = 'pending' AND o.meeting_id = rows.meeting_id
                 AND o.account_id IS rows.account_id AND o.patch_hash = rows.patch_hash
                 AND o.outcome IN ('succeeded', 'unchanged', 'failed')"""
        )
        self.db.execute("DROP TABLE rows_old")
        return cur.rowcount

    def add_rows(self, rows: Iterable[RowRecord]) -> None:
        """Insert (or replace) row records."""
        self.db.executemany(
            "INSERT OR REPLACE INTO rows (row, account_id, meeting_id, patch_hash, outcome, error, message, patch)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            # not dataclasses.astuple: it deep-copies every field (a third of pre-flight's store time)
            ((r.row, r.account_id, r.meeting_id, r.patch_hash, r.outcome, r.error, r.message, r.patch) for r in rows),
        )

    def row_record(self, row: int) -> RowRecord | None:
        """The recorded state of one row, or None if unknown."""
        found = self.db.execute(
            "SELECT row, account_id, meeting_id, patch_hash, outcome, error, message, patch FROM rows WHERE row = ?",
            (row,),
        ).fetchone()
        return RowRecord(*found) if found else None

    def count_todo(self, retry_failed: bool) -> int:
        """How many rows a run would send."""
        count: int = self.db.execute(f"SELECT COUNT(*) FROM rows WHERE {_todo_where(retry_failed)}").fetchone()[0]
        return count

    def todo_rows(self, retry_failed: bool, chunk: int = 4096) -> Iterator[RowRecord]:
        """Rows still to send, ascending, read in chunks (memory stays flat).

        Only what identifies a row is read (number, account, meeting, patch hash):
        the send pass compares each row it sends with it.
        """
        where = _todo_where(retry_failed)
        last = 0
        while True:
            batch = self.db.execute(
                f"SELECT row, account_id, meeting_id, patch_hash FROM rows WHERE row > ? AND {where} ORDER BY row LIMIT ?",
                (last, chunk),
            ).fetchall()
            if not batch:
                return
            for found in batch:
                yield RowRecord(*found)
            last = batch[-1][0]

    def canary_rows(self, n: int, retry_failed: bool) -> list[int]:
        """``run --canary N``: the first ``n`` rows still to send, and the first such row of every
        other account among them (the canary spreads over the input's accounts), ascending."""
        where = _todo_where(retry_failed)
        first = [r for (r,) in self.db.execute(f"SELECT row FROM rows WHERE {where} ORDER BY row LIMIT ?", (n,))]
        if not first:
            return []
        per_account = self.db.execute(
            f"SELECT MIN(row) FROM rows WHERE {where} AND meeting_id IS NOT NULL AND account_id IS NOT NULL"
            " AND account_id NOT IN (SELECT account_id FROM rows WHERE row IN"
            f" ({','.join('?' * len(first))}) AND account_id IS NOT NULL) GROUP BY account_id",
            first,
        )
        return sorted({*first, *(r for (r,) in per_account)})

    def record(
        self,
        row: int,
        outcome: str,
        *,
        error: str | None = None,
        status: int | None = None,
        message: str | None = None,
        attempts: int = 0,
        patch: str | None = None,
    ) -> int:
        """Buffer one row's outcome; returns how many are waiting for ``flush``."""
        self._pending.append((outcome, error, status, message, attempts, patch, row))
        return len(self._pending)

    def count_requests(self, requests: int, retries: int, elapsed_s: float) -> None:
        """Add request counters to the job's totals; committed with the next ``flush``.

        So a killed run's requests are not forgotten: after ``kill -9`` the
        totals miss only what happened since the last group commit.
        """
        old_requests, old_retries, old_elapsed_s = self._stats_delta
        self._stats_delta = (old_requests + requests, old_retries + retries, old_elapsed_s + elapsed_s)

    def flush(self, *also: tuple[str, tuple[Any, ...]]) -> None:
        """Commit buffered outcomes, counters (and ``also``, more statements) in one transaction.

        If a statement fails, the transaction is rolled back and the buffers are kept for the
        next flush (the outcomes, counters and ``flush_extras``' statements; not ``also``: its
        caller gets the error), so one failed commit neither loses outcomes nor leaves a
        transaction open for every later one to fail on.
        """
        extras = self._unsaved_extras
        for extra in self.flush_extras:
            extras = [*extras, *extra()]
        self._unsaved_extras = extras  # kept until a commit carries them
        has_stats = self._stats_delta[0] or self._stats_delta[1]
        if not self._pending and not self._pending_writes and not also and not extras and not has_stats:
            return
        self.db.execute("BEGIN")  # before the buffers are taken: if it fails, they are all still there
        pending, self._pending = self._pending, []
        writes, self._pending_writes = self._pending_writes, []
        delta, self._stats_delta = self._stats_delta, (0, 0, 0.0)
        self._unsaved_extras = []
        try:
            if any(delta):
                total = self.run_stats()
                total["requests"] += delta[0]
                total["retries"] += delta[1]
                total["elapsed_s"] = round(total["elapsed_s"] + delta[2], 3)
                self.set_meta(_STATS_KEY, total)
            if pending:
                self.db.executemany(_UPDATE_ROW, pending)
            if writes:
                self.db.executemany(_MARK_WRITE, writes)
            for statement in (*extras, *also):
                self.db.execute(*statement)
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            self._pending = pending + self._pending
            self._pending_writes = writes + self._pending_writes
            since, self._stats_delta = self._stats_delta, delta
            self.count_requests(*since)
            self._unsaved_extras = extras
            raise

    def mark_unfinished_skipped(self) -> int:
        """Rows never finished (the job stopped first) become ``skipped``."""
        self.flush()
        return self.db.execute("UPDATE rows SET outcome = 'skipped' WHERE outcome = 'pending'").rowcount

    def counts(self) -> dict[str, int]:
        """Rows per outcome over the whole job (pending counts as skipped)."""
        return readers.counts(self.db)

    def failures(self) -> Iterator[Failure]:
        """Every failed row of the job, in row order."""
        return readers.failures(self.db)

    def finished_rows(self, retry_failed: bool, written: Iterable[tuple[Any, Any, Any]] = ()) -> Iterator[ResultRecord]:
        """Result lines of the rows whose outcome is committed and that this run will not send again,
        except those ``written`` already names by (row, meeting_id, outcome) (``readers.unwritten_results``)."""
        finished = (
            "SELECT row, meeting_id, account_id, outcome, status, attempts FROM rows"
            f" WHERE outcome IN ('succeeded', 'unchanged', 'failed') AND NOT {_todo_where(retry_failed)}"
        )
        return readers.unwritten_results(self.db, finished, written)

    def run_stats(self) -> RunStats:
        """The job's committed request counters over every run (killed ones included)."""
        stats: RunStats = self.get_meta(_STATS_KEY, {"requests": 0, "retries": 0, "elapsed_s": 0.0})
        return stats

    def end_run(self) -> RunStats:
        """Commit the last counters and count one finished run; returns the totals."""
        self.flush()
        total = self.run_stats()
        total["runs"] = total.get("runs", 0) + 1
        total["last_run_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.set_meta(_STATS_KEY, total)
        return total


def _todo_where(retry_failed: bool) -> str:
    """The rows a run sends: failed rows come back with --retry-failed (never invalid ones: the
    input is the same, so they would fail the same way) and always when the job halted on a bad
    token (auth): that failure was the job's, not the row's."""
    retry = " OR error != 'invalid'" if retry_failed else ""
    return f"(outcome IN ('pending', 'skipped') OR (outcome = 'failed' AND (error = 'auth'{retry})))"
