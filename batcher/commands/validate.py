"""``batcher validate``: the whole validate pass alone, offline (no token, no network)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, Any

from ..core.rows import Row, RowError
from ..input.checks import KeyLog, duplicate_errors, iter_checked
from ..input.source import Source
from ..state.keyset import KeySet, scratch_keyset


def validate_input(
    path: str,
    fmt: str | None = None,
    default_account: str | None = None,
    stdin: IO[bytes] | None = None,
    mode: str | None = None,
    constants: Sequence[tuple[str, Any]] = (),
    defer_required: bool = False,
) -> Iterator[Row | RowError]:
    """Offline validation of every row (``batcher validate``): yields each checked row.

    ``defer_required`` (merge mode): required-if fields the row leaves out are
    not errors here, as in ``run``: the meeting may supply them (see
    ``core.rows.missing_required`` for what the caller can still point out).

    For a file, duplicates are found after the last row: a duplicate row is
    yielded first as a ``Row`` and again at the end as a ``RowError`` with
    ``is_duplicate`` set. On stdin they are caught in place.
    """
    keys: KeySet | KeyLog = scratch_keyset() if path == "-" else KeyLog()
    with Source(path, fmt, stdin, constants) as source:
        yield from iter_checked(
            source, default_account, keys, require_account=False, batch=1, mode=mode, defer_required=defer_required
        )
    if isinstance(keys, KeyLog):
        yield from duplicate_errors(
            path, fmt, default_account, keys.duplicates(), mode=mode, constants=constants, defer_required=defer_required
        )
