"""What the job tells people: the failure report, the results stream, the summary.

Everything here is written from the state file, so after a resumed job the
report and the counts cover every run, not only the last process. Text that
may echo a secret (a server's error message) goes through ``scrub`` first.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

import orjson

from .merge import REDACTED, redact, storage_of
from .model import SECRET_FIELDS
from .store import Store

REPORT_FIELDS = ("row", "meeting_id", "account_id", "error", "status", "message", "attempts", "patch")
RESULT_FIELDS = ("row", "meeting_id", "account_id", "outcome", "status", "attempts")


def secret_values(patch: dict[str, Any] | None) -> list[str]:
    """The storage credentials a patch carries (to scrub from any text)."""
    storage = storage_of(patch or {}) or {}
    return [v for k, v in storage.items() if k in SECRET_FIELDS and isinstance(v, str) and v]


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secrets:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redacted_patch_json(patch: dict[str, Any] | None) -> str | None:
    """The patch as JSON with credentials replaced: safe for state and reports."""
    return None if patch is None else orjson.dumps(redact(patch)).decode()


def write_failure_report(store: Store, path: str) -> int:
    """Write every failed row of the job to ``path`` (JSONL, or CSV by extension); returns the count."""
    count = 0
    is_csv = path.lower().endswith(".csv")
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out) if is_csv else None
        if writer:
            writer.writerow(REPORT_FIELDS)
        for row, meeting, account, error, status, message, attempts, patch in store.failures():
            patch_obj = orjson.loads(patch) if patch else None
            if writer:
                writer.writerow([row, meeting, account, error, status, message, attempts, patch or ""])
            else:
                entry = dict(
                    zip(
                        REPORT_FIELDS, (row, meeting, account, error, status, message, attempts, patch_obj), strict=True
                    )
                )
                out.write(orjson.dumps(entry).decode() + "\n")
            count += 1
    return count


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null after EPIPE (Python's documented advice), so later
    writes and the interpreter's final flush succeed quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


class ResultsStream:
    """``--results``: one JSON line per row as it finishes (``-`` for stdout).

    When stdout's reader goes away (``| head -1``) the stream stops writing,
    sets ``is_broken`` and calls ``on_broken`` once: the job stops as on a
    first interrupt (state saved, report written, resumable).
    """

    def __init__(self, path: str | None, on_broken: Callable[[], None] | None = None) -> None:
        self.is_on = bool(path)
        self.is_broken = False
        self._on_broken = on_broken
        self._out: IO[bytes] | None = None
        self._owned = False
        if path == "-":
            self._out = sys.stdout.buffer
        elif path:
            self._out = open(path, "ab")  # noqa: SIM115 - closed in close(); append: a resume continues it
            self._owned = True

    def emit(
        self, row: int, meeting_id: str | None, account_id: str | None, outcome: str, status: int | None, attempts: int
    ) -> None:
        """Write one finished row."""
        if self._out is not None:
            values = (row, meeting_id, account_id, outcome, status, attempts)
            try:
                self._out.write(orjson.dumps(dict(zip(RESULT_FIELDS, values, strict=True))) + b"\n")
            except BrokenPipeError:
                self._broken()

    def flush(self) -> None:
        """Push buffered lines out (called with each group commit)."""
        if self._out is not None:
            try:
                self._out.flush()
            except BrokenPipeError:
                self._broken()

    def _broken(self) -> None:
        """The reader went away: write nothing more; stop the job once."""
        if self._owned:  # a FIFO given by name
            self._owned = False
            self._out = None
        else:
            silence_stdout()
        if not self.is_broken and self._on_broken is not None:
            self._on_broken()
        self.is_broken = True

    def close(self) -> None:
        """Flush and close (stdout stays open)."""
        self.flush()
        if self._owned and self._out is not None:
            self._out.close()


def summary(store: Store, totals: dict[str, float]) -> dict[str, Any]:
    """The ``--summary-json`` document: counts over the whole job plus request totals."""
    counts = store.counts()
    return {
        "total": counts["total"],
        "succeeded": counts["succeeded"],
        "unchanged": counts["unchanged"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
        "requests": int(totals.get("requests", 0)),
        "retries": int(totals.get("retries", 0)),
        "elapsed_s": round(float(totals.get("elapsed_s", 0.0)), 3),
    }


def human_summary(doc: dict[str, Any], store: Store, report_path: str, this_run: str) -> str:
    """The summary printed on stderr at the end of every run."""
    lines = [
        f"batcher: {doc['total']} rows - {doc['succeeded']} succeeded, {doc['unchanged']} unchanged, "
        f"{doc['failed']} failed, {doc['skipped']} skipped",
        f"  {doc['requests']} requests ({doc['retries']} retries) over the whole job; {this_run}",
    ]
    if doc["failed"]:
        kinds: Counter[str] = Counter()
        messages: dict[str, Counter[str]] = {}
        for _row, _m, _a, error, _s, message, _n, _p in store.failures():
            kinds[error] += 1
            messages.setdefault(error, Counter())[(message or "")[:200]] += 1
        for kind, n in kinds.most_common():
            top = "; ".join(f"{m} (x{c})" for m, c in messages[kind].most_common(2))
            lines.append(f"  failed {kind}: {n} - {top}")
    lines.append(f"  report: {report_path}   state: {store.path}")
    return "\n".join(lines)
