"""The validate pass: every row decoded, checked against the schema, and de-duplicated.

Shared by ``batcher validate`` (offline), the pre-flight pass of ``run`` and
``plan``. It imports no HTTP code, so ``validate`` starts fast.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator, Sequence
from itertools import pairwise
from typing import Any

from ..core.identity import KeyIndex, row_key
from ..core.rowrules import FieldError
from ..core.rows import Row, RowError, parse_row
from .source import Source

_PAIR = struct.Struct(">QQ")


def check_row(
    number: int,
    data: dict[str, Any],
    problems: list[FieldError],
    default_account: str | None,
    require_account: bool,
    *,
    defer_required: bool = False,
    mode: str | None = None,
) -> Row | RowError:
    """``parse_row`` plus the rule that every row's account is known (``mode``: see ``parse_row``)."""
    result = parse_row(number, data, default_account, problems, defer_required=defer_required, mode=mode)
    if isinstance(result, Row) and require_account and result.account_id is None:
        fix = "add an account_id column/key, or pass --account-id / set CLOUDFLARE_ACCOUNT_ID"
        return RowError(number, result.meeting_id, None, [FieldError("account_id", f"missing: {fix}")], result.patch)
    return result


def _duplicate(row: Row, first: int, *, is_late: bool) -> RowError:
    """``is_late``: found after the last row (the row was already yielded as a ``Row``)."""
    reason = f"duplicate of row {first} (same account and meeting); combine them into one row"
    return RowError(row.number, row.meeting_id, row.account_id, [FieldError("meeting_id", reason)], row.patch, is_late)


def meeting_key(account_id: str | None, meeting_id: str) -> bytes:
    """A row's identity for duplicates: ids are sent as spelt, but compared ignoring case."""
    return row_key(account_id, meeting_id.lower())


class KeyLog:
    """Duplicate detection for a whole file: about 32 bytes a row, no index.

    Checking each key against an index as it streams costs a B-tree insert a
    row (several microseconds once the index outgrows the cache). A file can
    be read twice, so instead each valid row's 16-byte key and row number go
    into flat arrays, with the key's high half also filed into one of 256
    buckets by its top byte. ``duplicates()`` sorts one small bucket at a time
    (no large transient list) to find the few keys seen twice, then one scan
    names every later row that repeats an earlier one.
    """

    def __init__(self) -> None:
        self._hi = array("Q")
        self._lo = array("Q")
        self._rows = array("Q")
        self._buckets = [array("Q") for _ in range(256)]

    def add(self, row: Row) -> None:
        """Remember one valid row's key."""
        hi, lo = _PAIR.unpack(meeting_key(row.account_id, row.meeting_id))
        self._hi.append(hi)
        self._lo.append(lo)
        self._rows.append(row.number)
        self._buckets[hi >> 56].append(hi)

    def duplicates(self) -> dict[int, int]:
        """``{row: first row with the same key}`` for every repeated key (after all rows are added)."""
        twice = {a for bucket in self._buckets for a, b in pairwise(sorted(bucket)) if a == b}
        first: dict[tuple[int, int], int] = {}
        dups: dict[int, int] = {}
        if twice:
            for hi, lo, row in zip(self._hi, self._lo, self._rows, strict=True):
                if hi in twice:
                    dups.setdefault(row, first.setdefault((hi, lo), row))
        return {row: f for row, f in dups.items() if f != row}


def iter_checked(
    source: Source,
    default_account: str | None,
    keys: KeyIndex | KeyLog,
    require_account: bool,
    batch: int = 4096,
    *,
    defer_required: bool = False,
    mode: str | None = None,
) -> Iterator[Row | RowError]:
    """Every row of ``source``, decoded and checked, in order.

    With a ``KeyIndex`` (the state's ``KeySet``) duplicates are caught here, ``batch`` rows at a time in
    SQLite (a stream such as stdin uses ``batch=1`` so no row waits for later
    ones). With a ``KeyLog`` they are only recorded: call
    ``duplicate_errors`` once the rows are exhausted.
    """
    decode = source.decode
    if isinstance(keys, KeyLog):
        for number, raw in source.records():
            data, problems = decode(raw)
            result = check_row(
                number, data, problems, default_account, require_account, defer_required=defer_required, mode=mode
            )
            if isinstance(result, Row):
                keys.add(result)
            yield result
        return
    pending: list[Row | RowError] = []
    for number, raw in source.records():
        data, problems = decode(raw)
        pending.append(
            check_row(
                number, data, problems, default_account, require_account, defer_required=defer_required, mode=mode
            )
        )
        if len(pending) >= batch:
            yield from _dedup(pending, keys)
            pending = []
    yield from _dedup(pending, keys)


def duplicate_errors(
    path: str,
    fmt: str | None,
    default_account: str | None,
    duplicates: dict[int, int],
    defer_required: bool = False,
    *,
    mode: str | None = None,
    constants: Sequence[tuple[str, Any]] = (),
) -> Iterator[RowError]:
    """Re-read a file for the rows ``KeyLog.duplicates()`` named; one RowError each, in row order.

    ``mode`` and ``constants`` (``--set``) must be the first pass's, or a row valid then reads invalid now.
    """
    if not duplicates:
        return
    with Source(path, fmt, constants=constants) as source:
        for number, raw in source.records():
            if number in duplicates:
                data, problems = source.decode(raw)
                row = check_row(
                    number, data, problems, default_account, False, defer_required=defer_required, mode=mode
                )
                if isinstance(row, Row):
                    yield _duplicate(row, duplicates[number], is_late=True)


def _dedup(results: list[Row | RowError], keys: KeyIndex) -> Iterator[Row | RowError]:
    rows = [r for r in results if isinstance(r, Row)]
    firsts = iter(keys.first_rows([(meeting_key(r.account_id, r.meeting_id), r.number) for r in rows]))
    for result in results:
        first = next(firsts) if isinstance(result, Row) else None
        yield _duplicate(result, first, is_late=False) if isinstance(result, Row) and first else result
