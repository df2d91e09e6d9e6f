"""Merge mode's way back: the ``snapshots`` table of the state file (see ``Store``).

One row per meeting the job tried to write: ``before`` (the meeting before the
job's first write that may have landed), ``after`` (the latest write),
``write_state`` of that latest write, ``maybe_landed`` (sticky: some write of
the job landed or may have), ``landed_after`` (the last write that landed or
may have, kept when a newer write fails) and ``seq``. Meeting ids compare
ignoring case, as duplicates in the input do. ``rollback_log.py`` reads it; the table and its
indexes are declared in ``tables.py`` (which also brings an older file's table up to date).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ..core.documents import same, strip_secrets


def _pack(document: dict[str, Any]) -> bytes:
    return zlib.compress(orjson.dumps(document), 1)


def _unpack(blob: bytes) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(zlib.decompress(blob))
    return document


# The job's writes of one meeting: ids compare ignoring case (as duplicates in the input do),
# so a --force run that spells an id in another case finds the same snapshot. The queries name
# the index on lower(meeting_id) (INDEXED BY): else SQLite may pick the primary key on account_id
# alone and scan every snapshot of the account on each write.
_SNAPSHOT_KEY = "account_id = ? AND lower(meeting_id) = lower(?)"
# mark_write: (state, account, meeting, answer, stamp). A write that landed or may have is remembered
# for good. ``answer`` (a packed document, or NULL): the server's answer to a write that landed, which
# then replaces the body sent as what the job left there (a server may normalise what it stores).
_MARK_WRITE = (
    "UPDATE snapshots INDEXED BY snapshots_key SET write_state = ?1, maybe_landed = (maybe_landed OR ?1 != 'failed'),"
    " after = COALESCE(?4, after),"
    " after_updated_at = CASE WHEN ?4 IS NULL THEN after_updated_at ELSE ?5 END,"
    " landed_after = CASE WHEN ?1 = 'failed' THEN landed_after ELSE COALESCE(?4, after) END"
    " WHERE account_id = ?2 AND lower(meeting_id) = lower(?3)"
)

# save_snapshot: (after, row, before, account, meeting), then the insert for a meeting not seen yet.
_SAVE_UPDATE = (
    "UPDATE snapshots INDEXED BY snapshots_key SET after = ?1, row = ?2,"
    " before = CASE WHEN maybe_landed = 0 AND write_state = 'failed' THEN ?3 ELSE before END,"
    " landed_after = CASE WHEN write_state = 'failed' THEN landed_after ELSE after END,"
    " after_updated_at = CASE WHEN write_state IN ('landed', 'failed') THEN after_updated_at END,"
    " maybe_landed = (maybe_landed OR write_state != 'failed'),"
    " write_state = 'pending', seq = seq + 1"
    " WHERE account_id = ?4 AND lower(meeting_id) = lower(?5)"
)
_SAVE_INSERT = (
    "INSERT INTO snapshots (account_id, meeting_id, row, before, after, write_state, seq)"
    " SELECT ?, ?, ?, ?, ?, 'pending', 1"
    f" WHERE NOT EXISTS (SELECT 1 FROM snapshots INDEXED BY snapshots_key WHERE {_SNAPSHOT_KEY})"
)


class SnapshotsMixin:
    """The snapshot methods of ``Store`` (which supplies ``db``, ``flush`` and the write buffer)."""

    db: sqlite3.Connection
    _pending_writes: list[tuple[str, str, str, bytes | None, str | None]]

    flush: Callable[..., None]  # Store.flush: commits buffered outcomes with extra statements

    def save_snapshot(
        self, account_id: str, meeting_id: str, row: int, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        """Keep the first before-state of a meeting and the latest after-state; durable on return.

        Called *before* the PUT, so a crash between the two cannot lose the
        way back. Commits the buffered outcomes with it. Documents are stored
        compressed (a meeting is ~1.5 KB of JSON, ~0.4 KB zlib'd): a
        million-meeting job keeps its way back in a few hundred MB.

        ``before`` is replaced only while no earlier write of the job may have
        landed (``maybe_landed``: one landed, was unknown, or was still pending
        when this one came): after that, GET shows the job's own change, not
        the way back. A write still pending here may have landed: it becomes
        ``landed_after`` and sets ``maybe_landed``.
        """
        self.save_snapshots([(account_id, meeting_id, row, before, after)])

    def save_snapshots(self, snapshots: list[tuple[str, str, int, dict[str, Any], dict[str, Any]]]) -> None:
        """``save_snapshot`` for several meetings (account, meeting, row, before, after) in one commit.

        Durable on return, all of them; applied in order, so two writes of one
        meeting in the same batch are judged as if saved one after the other.
        """
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for account_id, meeting_id, row, before, after in snapshots:
            packed_before, packed_after = _pack(before), _pack(after)
            statements.append((_SAVE_UPDATE, (packed_after, row, packed_before, account_id, meeting_id)))
            statements.append(
                (_SAVE_INSERT, (account_id, meeting_id, row, packed_before, packed_after, account_id, meeting_id))
            )
        self.flush(*statements)

    def mark_write(
        self,
        account_id: str,
        meeting_id: str,
        state: str,
        answer: dict[str, Any] | None = None,
        updated_at: str | None = None,
    ) -> None:
        """Record whether the job's last write of a meeting landed: landed | unknown | failed.

        ``answer``: for a write that landed, the meeting as the server answered it (read-only
        fields dropped, the credentials the job set as ``"***"``): what the job left there, kept
        as ``after`` (and ``landed_after``) in place of the body sent, with its ``updated_at``.
        Buffered with the row outcomes (committed by the next ``flush``): until then the snapshot
        says ``pending``, which rollback treats like ``unknown``.
        """
        packed = _pack(answer) if answer is not None else None
        self._pending_writes.append((state, account_id, meeting_id, packed, updated_at))

    def confirm_write(self, account_id: str, meeting_id: str, shown: dict[str, Any]) -> bool:
        """A resumed run found the meeting showing the job's pending/unknown write: mark it ``landed``.

        ``shown`` is the meeting as GET showed it, read-only fields dropped.
        Returns True when the snapshot was marked (buffered like ``mark_write``).
        """
        found = self.db.execute(
            f"SELECT after FROM snapshots INDEXED BY snapshots_key WHERE {_SNAPSHOT_KEY} AND write_state IN ('pending', 'unknown')",
            (account_id, meeting_id),
        ).fetchone()
        if found is None or not same(shown, strip_secrets(_unpack(found[0]))):
            return False
        self.mark_write(account_id, meeting_id, "landed")
        return True

    def snapshots(self) -> Iterator[tuple[str, str, int, dict[str, Any], dict[str, Any]]]:
        """(account_id, meeting_id, row, before, after) of every snapshot, failed writes included."""
        for account, meeting, row, before, after in self.db.execute(
            "SELECT account_id, meeting_id, row, before, after FROM snapshots ORDER BY row"
        ):
            yield account, meeting, row, _unpack(before), _unpack(after)
