"""The validate pass: every row decoded, checked against the schema, and de-duplicated.

Shared by ``batcher validate`` (offline), the pre-flight pass of ``run`` and
``plan``. It imports no HTTP code, so ``validate`` starts fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from .model import FieldError, Row, RowError, parse_row
from .source import Source
from .store import KeySet, row_key, scratch_keyset


def check_row(
    number: int, data: dict[str, Any], problems: list[FieldError], default_account: str | None, require_account: bool
) -> Row | RowError:
    """``parse_row`` plus the rule that every row's account is known."""
    result = parse_row(number, data, default_account, problems)
    if isinstance(result, Row) and require_account and result.account_id is None:
        fix = "add an account_id column/key, or pass --account-id / set CLOUDFLARE_ACCOUNT_ID"
        return RowError(number, result.meeting_id, None, [FieldError("account_id", f"missing: {fix}")], result.patch)
    return result


def _duplicate(row: Row, first: int) -> RowError:
    reason = f"duplicate of row {first} (same account and meeting); combine them into one row"
    return RowError(row.number, row.meeting_id, row.account_id, [FieldError("meeting_id", reason)], row.patch)


def iter_checked(
    source: Source, default_account: str | None, keys: KeySet, require_account: bool, batch: int = 4096
) -> Iterator[Row | RowError]:
    """Every row of ``source``, decoded and checked (duplicates included), in order.

    Duplicate checks go to SQLite ``batch`` rows at a time; a stream (stdin)
    uses ``batch=1`` so no row waits for later ones to arrive.
    """
    decode = source.decode
    pending: list[Row | RowError] = []
    for number, raw in source.records():
        data, problems = decode(raw)
        pending.append(check_row(number, data, problems, default_account, require_account))
        if len(pending) >= batch:
            yield from _dedup(pending, keys)
            pending = []
    yield from _dedup(pending, keys)


def _dedup(results: list[Row | RowError], keys: KeySet) -> Iterator[Row | RowError]:
    rows = [r for r in results if isinstance(r, Row)]
    firsts = iter(keys.first_rows([(row_key(r.account_id, r.meeting_id), r.number) for r in rows]))
    for result in results:
        first = next(firsts) if isinstance(result, Row) else None
        yield _duplicate(result, first) if first else result


def validate_input(
    path: str, fmt: str | None = None, default_account: str | None = None, stdin: IO[bytes] | None = None
) -> Iterator[Row | RowError]:
    """Offline validation of every row (``batcher validate``): yields each checked row."""
    keys = scratch_keyset()
    with Source(path, fmt, stdin) as source:
        yield from iter_checked(source, default_account, keys, require_account=False)
