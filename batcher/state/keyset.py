"""Duplicate detection on disk: a key table in SQLite, so memory stays flat at any input size.

It satisfies ``core.identity.KeyIndex``; ``scratch_keyset`` gives one with no state file
(``plan``, ``validate -``).
"""

from __future__ import annotations

import sqlite3

from . import tables


class KeySet:
    """Duplicate detection in SQLite, so memory stays flat at any input size."""

    def __init__(self, db: sqlite3.Connection, table: str = "keys") -> None:
        self._db = db
        self._table = table
        self._insert = f"INSERT OR IGNORE INTO {table} (key, row) VALUES (?, ?)"

    def first_rows(self, entries: list[tuple[bytes, int]]) -> list[int | None]:
        """Record (key, row) pairs; for each, the earlier row that had the key, or None.

        Duplicates are rare, so the whole batch goes in one statement; only
        when some key was already there is each looked up (a row finds itself
        when it was the first, or the earlier row when it was not).
        """
        if self._db.executemany(self._insert, entries).rowcount == len(entries):
            return [None] * len(entries)
        return [self._earlier(key, row) for key, row in entries]

    def _earlier(self, key: bytes, row: int) -> int | None:
        (first,) = self._db.execute(f"SELECT row FROM {self._table} WHERE key = ?", (key,)).fetchone()
        return None if first == row else first


def scratch_keyset() -> KeySet:
    """A KeySet in a temporary on-disk database, for jobs with no state file (``plan``, ``validate -``)."""
    db = sqlite3.connect("", isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute(tables.KEYS)
    db.execute("BEGIN")
    return KeySet(db)
