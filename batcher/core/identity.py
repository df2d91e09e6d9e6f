"""Row identity: a meeting's key, a patch's digest, and what a duplicate finder must offer.

Pure hashing. The key set that keeps memory flat at any input size lives in the state
(``state.keyset.KeySet``, an SQLite table); the input's checks see it through ``KeyIndex``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import orjson


def row_key(account_id: str | None, meeting_id: str) -> bytes:
    """16-byte identity of a meeting, for duplicate detection."""
    return hashlib.blake2b(f"{account_id or ''}\0{meeting_id}".encode(), digest_size=16).digest()


def patch_hash(patch: dict[str, Any]) -> bytes:
    """16-byte digest of a patch's content (key order does not matter)."""
    return hashlib.blake2b(orjson.dumps(patch, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


class KeyIndex(Protocol):
    """Something that remembers row keys: ``state.keyset.KeySet`` (on disk) or ``input.checks.KeyLog``."""

    def first_rows(self, entries: list[tuple[bytes, int]]) -> list[int | None]:
        """Record (key, row) pairs; for each, the earlier row that had the key, or None."""
        ...
