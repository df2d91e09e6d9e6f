"""Row identity and duplicate detection: keys, patch digests, file digests, SQLite key sets.

Split from ``store.py`` (which re-exports these names): pure hashing plus a
key set that keeps memory flat at any input size.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

import orjson


def row_key(account_id: str | None, meeting_id: str) -> bytes:
    """16-byte identity of a meeting, for duplicate detection."""
    return hashlib.blake2b(f"{account_id or ''}\0{meeting_id}".encode(), digest_size=16).digest()


def patch_hash(patch: dict[str, Any]) -> bytes:
    """16-byte digest of a patch's content (key order does not matter)."""
    return hashlib.blake2b(orjson.dumps(patch, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


def file_digest(path: str) -> str:
    """Content hash of an input file, streamed."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
    db.execute("CREATE TABLE keys (key BLOB PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID")
    db.execute("BEGIN")
    return KeySet(db)
