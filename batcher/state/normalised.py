"""The run's normalised values: rows whose write was answered 2xx with another value than the one
sent, at a path the row set (``core.canary.normalised``), counted by path over the whole job.

Kept in the ``meta`` table (key ``normalised``): ``{path: {"rows": n, "sent": v, "held": w}}``, one
example (the first) a path. The tally rides on the store's group commits (``Store.flush_extras``),
so its counts are durable with the outcomes they count: a killed run neither loses nor doubles them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from ..core.canary import normalised
from .readers import meta_value
from .store import Store

_KEY = "normalised"
_SAVE = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"


def read(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    """The job's tally so far (``{}``: no row was normalised)."""
    found: dict[str, dict[str, Any]] = meta_value(db, _KEY, {})
    return found


class Tally:
    """This run's additions to the job's tally, committed with the next group commit."""

    def __init__(self, store: Store) -> None:
        self.totals = read(store.db)
        self.is_changed = False
        store.flush_extras.append(self._statements)

    def add(self, patch: dict[str, Any], answer: dict[str, Any]) -> list[str]:
        """Count the paths where a row's write answer (the meeting's document) holds another value
        than its ``patch`` sent (``core.canary.normalised``); returns them."""
        found = normalised(patch, answer)
        for difference in found:
            entry = self.totals.setdefault(
                difference.path, {"rows": 0, "sent": difference.sent, "held": difference.held}
            )
            entry["rows"] += 1
            self.is_changed = True
        return [d.path for d in found]

    def _statements(self) -> list[tuple[str, tuple[Any, ...]]]:
        if not self.is_changed:
            return []
        self.is_changed = False
        return [(_SAVE, (_KEY, orjson.dumps(self.totals).decode()))]
