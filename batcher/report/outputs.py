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
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import orjson

from ..state import normalised as normalised_tally
from ..state.readers import ResultRecord, RunStats
from ..state.store import Store

# The state's finished rows (or meetings) that the results file has no line for: given the
# (row, meeting_id, outcome) of the lines it holds (Store.finished_rows, rollback_log.finished).
Unwritten = Callable[[Iterator[tuple[Any, Any, Any]]], Iterable[ResultRecord]]

REPORT_FIELDS = ("row", "meeting_id", "account_id", "error", "status", "message", "attempts", "patch")
RESULT_FIELDS = ("row", "meeting_id", "account_id", "outcome", "status", "attempts")


def write_failure_report(store: Store, path: str) -> int:
    """Write every failed row of the job to ``path`` (JSONL, or CSV by extension); returns the count."""
    return write_report(store.failures(), path)


def write_report(entries: Iterable[tuple[Any, ...]], path: str) -> int:
    """Write ``(row, meeting_id, account_id, error, status, message, attempts, patch JSON)`` entries.

    JSONL, or CSV when ``path`` ends in ``.csv``; written (with a header for
    CSV) even when there is nothing to report. Returns the count.
    """
    count = 0
    is_csv = path.lower().endswith(".csv")
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out) if is_csv else None
        if writer:
            writer.writerow(REPORT_FIELDS)
        for row, meeting, account, error, status, message, attempts, patch in entries:
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
    """``--results``: one JSON line per finished row, exactly once across kills and resumes.

    A line is only *written* by ``flush()``, which the caller runs right after
    committing the outcomes to the state file (commit, then write): so the file
    never names a row whose outcome a ``kill -9`` could still undo (that row
    would be sent again and finish a second time). Lines of outcomes committed
    but not yet written when the process died are recovered by ``catch_up()``
    on the next run, from the state file, before anything is sent: it reads the
    existing file (cutting off a torn last line) and appends every committed
    outcome that has no line yet.

    With ``-`` (stdout) nothing can be read back across processes: the stream
    then covers the rows finished by this run only, and a kill may lose the
    lines of the last uncommitted group.

    When stdout's reader goes away (``| head -1``) the stream stops writing,
    sets ``is_broken`` and calls ``on_broken`` once: the job stops as on a
    first interrupt (state saved, report written, resumable).
    """

    def __init__(self, path: str | None, on_broken: Callable[[], None] | None = None) -> None:
        self.is_on = bool(path)
        self.path = path if path and path != "-" else None
        self.is_broken = False
        self._on_broken = on_broken
        self._out: IO[bytes] | None = None
        self._owned = False
        self._lines: list[bytes] = []
        if path == "-":
            self._out = sys.stdout.buffer
        elif path:
            self._out = open(path, "ab")  # noqa: SIM115 - closed in close(); append: a resume continues it
            self._owned = True

    def emit(
        self,
        row: int,
        meeting_id: str | None,
        account_id: str | None,
        outcome: str,
        status: int | None,
        attempts: int,
        error: str | None = None,
        *,
        normalised: list[str] | None = None,
    ) -> None:
        """Queue one finished row; it is written by the next ``flush()`` (after the commit).

        ``normalised``: the paths where the write's answer holds another value than the row sent
        (the line then carries them; lines caught up from the state after a kill do not)."""
        if self._out is not None:
            self._lines.append(_result_line(row, meeting_id, account_id, outcome, status, attempts, error, normalised))

    def flush(self) -> None:
        """Write and push out the queued lines: call only once their outcomes are committed."""
        if self._out is None:
            return
        try:
            if self._lines:
                lines, self._lines = self._lines, []
                self._out.write(b"".join(lines))
            self._out.flush()
        except BrokenPipeError:
            self._broken()

    def catch_up(self, unwritten: Unwritten) -> int:
        """Append the committed outcomes the file has no line for; returns how many.

        ``unwritten`` is handed the (row, meeting_id, outcome) of every line
        already in the file and gives the committed finished rows missing from
        it, in row order: the state compares the two on disk, not in memory
        (``readers.unwritten_results``), so a million-line file costs no RAM.
        """
        if self.path is None or self._out is None:
            return 0
        self.flush()
        written = ((doc.get("row"), doc.get("meeting_id"), doc.get("outcome")) for doc in self._read_back())
        count = 0
        for record in unwritten(written):
            self._lines.append(_result_line(*record))
            count += 1
            if len(self._lines) >= 1000:
                self.flush()
        self.flush()
        return count

    def _read_back(self) -> Iterator[dict[str, Any]]:
        """The lines already in the file; a torn last line (kill mid-write) is cut off first."""
        assert self.path is not None and self._out is not None
        with open(self.path, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                # Find the end of the last complete line, reading backwards in blocks.
                end = size
                while end > 0:
                    start = max(0, end - 65536)
                    fh.seek(start)
                    block = fh.read(end - start)
                    cut = block.rfind(b"\n")
                    if cut >= 0:
                        end = start + cut + 1
                        break
                    end = start
                if end != size:
                    fh.truncate(end)
            fh.seek(0)
            for line in fh:
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # not one of ours: it names no row
                if isinstance(doc, dict):
                    yield doc

    def _broken(self) -> None:
        """The reader went away: write nothing more; stop the job once."""
        if self._owned:  # a FIFO given by name
            self._owned = False
            self._out = None
        else:
            silence_stdout()
            self._out = None
        self._lines.clear()
        if not self.is_broken and self._on_broken is not None:
            self._on_broken()
        self.is_broken = True

    def close(self) -> None:
        """Close (stdout stays open). Lines never flushed are dropped: their outcomes
        may not be committed; the next run's ``catch_up`` writes the ones that were."""
        self._lines.clear()
        if self._out is not None:
            self._out.flush()
        if self._owned and self._out is not None:
            self._out.close()


def _result_line(
    row: int,
    meeting_id: str | None,
    account_id: str | None,
    outcome: str,
    status: int | None,
    attempts: int,
    error: str | None = None,
    normalised: list[str] | None = None,
) -> bytes:
    doc: dict[str, Any] = dict(
        zip(RESULT_FIELDS, (row, meeting_id, account_id, outcome, status, attempts), strict=True)
    )
    if error is not None:
        doc["error"] = error  # rollback lines say why a meeting was not restored
    if normalised:
        doc["normalised"] = normalised  # the server holds another value than sent at these paths
    return orjson.dumps(doc) + b"\n"


def summary(store: Store, totals: RunStats) -> dict[str, Any]:
    """The ``--summary-json`` document: counts over the whole job plus request totals."""
    counts = store.counts()
    doc: dict[str, Any] = {
        "total": counts["total"],
        "succeeded": counts["succeeded"],
        "unchanged": counts["unchanged"],
        "failed": counts["failed"],
        "skipped": counts["skipped"],
        "requests": int(totals.get("requests", 0)),
        "retries": int(totals.get("retries", 0)),
        "elapsed_s": round(float(totals.get("elapsed_s", 0.0)), 3),
    }
    if found := normalised_tally.read(store.db):
        # paths where a write's answer held another value than sent: rows, and one example (sent, held)
        doc["normalised"] = {
            path: {"rows": entry["rows"], "example": {"sent": entry["sent"], "held": entry["held"]}}
            for path, entry in sorted(found.items())
        }
    return doc


def human_summary(doc: dict[str, Any], store: Store, report_path: str, this_run: str) -> str:
    """The summary printed on stderr at the end of every run."""
    lines = [
        f"batcher: {doc['total']} rows - {doc['succeeded']} succeeded, {doc['unchanged']} unchanged, "
        f"{doc['failed']} failed, {doc['skipped']} skipped",
        f"  {doc['requests']} requests ({doc['retries']} retries) over the whole job; {this_run}",
    ]
    for path, entry in doc.get("normalised", {}).items():
        example = entry["example"]
        lines.append(
            f"  normalised {path}: {entry['rows']} succeeded rows hold another value than sent - e.g. sent "
            f"{orjson.dumps(example['sent']).decode()}, the server holds {orjson.dumps(example['held']).decode()}"
        )
    if doc["failed"]:
        kinds: Counter[str | None] = Counter()
        messages: dict[str | None, Counter[str]] = {}
        for failure in store.failures():
            kinds[failure.error] += 1
            messages.setdefault(failure.error, Counter())[(failure.message or "")[:200]] += 1
        for kind, n in kinds.most_common():
            top = "; ".join(f"{m} (x{c})" for m, c in messages[kind].most_common(2))
            lines.append(f"  failed {kind}: {n} - {top}")
    lines.append(f"  report: {report_path}   state: {store.path}")
    return "\n".join(lines)
