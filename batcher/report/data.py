"""What the HTML report shows, read from a job's state file (read-only; works while the job runs).

Pure arithmetic over what the state's readers return, no charts and no SQL:
``read_report(path)`` opens the file read-only and returns a ``ReportData``
whose figures tests compare with the state. Times are Unix seconds (UTC).
Nothing here shows a token or a patch: messages come from the rows and
rollback tables, which hold them already scrubbed of the token and of the
row's storage credentials (engine.finish_call, client.scrub).

Timeline buckets (core/timings.py: 1 s to 60 s wide) are merged into display
intervals of a "nice" width, a multiple of every bucket width, so that a chart
has at most ``MAX_POINTS`` of them however long the job ran; the percentiles of
an interval come from its merged histogram.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..core.timings import Bucket, percentile
from ..errors import UsageError
from ..state import normalised, readers, rollback_log, verify_log
from ..state.readers import AccountOutcome
from ..state.readonly import foreign_tables, is_locked, open_read_only
from ..state.runs import RunRecord, read_runs, read_timeline

MAX_POINTS = 180
# each a multiple of every narrower bucket width (timeline.WIDTHS: 1, 5, 30, 60)
NICE_WIDTHS_S = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400)
TOP_MESSAGES = 3
# Messages are grouped with the row's own ids (and any other UUID) written as placeholders: "Meeting <meeting>
# not found" for 312 rows is one message, not 312.
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
# Other runs of digits (4 or more) and of hex (8 or more, with a digit) too: request ids, timestamps, sizes.
_NUMBERS = re.compile(r"\b(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}\b|\d{4,}")
# Memory stays bounded however many rows failed: at most this many message shapes are counted per
# error kind (later new ones count as "other messages"), and the per-account table shows the accounts
# with the most rows (the rest as one "other accounts" row).
MAX_SHAPES = 1000
TOP_ACCOUNTS = 50
EXAMPLE_ROWS = 5
OUTCOME_ORDER = ("succeeded", "unchanged", "failed", "skipped", "pending")


@dataclass
class Interval:
    """One display interval of a timeline: counts, rates and latency percentiles."""

    start: float
    width_s: int
    bucket: Bucket

    @property
    def rows_per_s(self) -> float:
        """Rows finished per second (skipped ones are not work done)."""
        done = sum(n for kind, n in self.bucket.rows.items() if kind != "skipped")
        return done / self.width_s

    @property
    def requests_per_s(self) -> float:
        """Requests started per second."""
        return self.bucket.requests / self.width_s

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` latency percentile of the interval's requests, in milliseconds."""
        value = percentile(self.bucket.latency, q)
        return None if value is None else value * 1000


@dataclass
class TimelineView:
    """One kind of run's (``run`` or ``rollback``) activity over time."""

    width_s: int
    intervals: list[Interval | None]  # None: no run was active (a gap between runs)
    totals: Bucket  # every bucket merged: requests, retries, answers, outcomes over all runs
    pauses: list[tuple[float, float]]  # Retry-After pauses (start, end), to bucket precision
    runs: list[RunRecord]


@dataclass
class FailureGroup:
    """Failed rows of one error kind: how many, the commonest messages, a few examples."""

    kind: str
    count: int
    messages: list[tuple[str, int]] = field(default_factory=list)
    other_messages: int = 0  # rows whose message is not among ``messages`` (the less common shapes)
    examples: list[tuple[Any, ...]] = field(default_factory=list)  # (row, meeting, account, status, message)


@dataclass
class Outcomes:
    """Final outcomes (rows of a run job, or meetings of its rollbacks)."""

    counts: dict[str, int]  # succeeded, unchanged, failed, skipped, pending
    by_kind: list[tuple[str, int]]  # outcomes with failed split by error kind
    failures: list[FailureGroup]
    accounts: list[dict[str, Any]]  # {"account_id", "app_id", "total", "succeeded", ...}


@dataclass
class ReportData:
    """Everything the report shows."""

    state_path: str
    generated_at: float
    job: dict[str, Any]  # the job's identity: input, mode, base URL, app, account, --set (credentials ***)
    stats: dict[str, Any]  # requests, retries, elapsed_s over every run (run_stats)
    runs: list[RunRecord]
    outcomes: Outcomes
    timelines: dict[str, TimelineView]  # "run", "rollback": only kinds that have runs
    rollback: Outcomes | None = None
    rollback_stats: dict[str, Any] | None = None
    running_pids: set[int] = field(default_factory=set)
    verification: Verification | None = None  # the latest ``batcher verify`` pass (None: never verified)
    normalised: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # path -> rows, sent, held (state/normalised.py)


@dataclass
class Verification:
    """The latest verify pass: meetings per verdict, and the first meetings that are not as written."""

    counts: dict[str, int]
    is_complete: bool
    examples: list[dict[str, Any]]  # verify's output lines (at most VERIFY_EXAMPLES), not as_written


VERIFY_EXAMPLES = 50


def _verification(db: sqlite3.Connection, meta: dict[str, Any]) -> Verification | None:
    counts = verify_log.verdict_counts(db)
    if not counts:
        return None
    examples = []
    for line in verify_log.verdicts(db):
        if line["verdict"] != "as_written":
            examples.append(line)
            if len(examples) >= VERIFY_EXAMPLES:
                break
    return Verification(counts, bool((meta.get("verify") or {}).get("complete")), examples)


def run_status(run: RunRecord, running_pids: set[int]) -> str:
    """How a run ended, in words: exit code, "running", or "killed / unknown"."""
    if run.ended is not None:
        return f"exit {run.exit_code}"
    return "running" if run.pid in running_pids else "killed / unknown"


def nice_width(span_s: float, widest_s: int = 1) -> int:
    """The display interval: the narrowest nice width, at least ``widest_s`` (the widest bucket),
    giving at most ``MAX_POINTS`` intervals over ``span_s``."""
    for width in NICE_WIDTHS_S:
        if width >= widest_s and span_s / width <= MAX_POINTS:
            return width
    return int(-(-span_s // (MAX_POINTS * 86400)) * 86400)


Buckets = list[tuple[int, int, int, Bucket]]  # (run, start, width, bucket)


def build_timeline(runs: list[RunRecord], buckets: Buckets) -> TimelineView:
    """Merge a kind's buckets into display intervals; intervals when no run was active are gaps."""
    totals = Bucket()
    for *_, bucket in buckets:
        totals.add(bucket)
    if not buckets:
        return TimelineView(1, [], totals, [], runs)
    last_of_run: dict[int, float] = defaultdict(float)
    for run_id, start, width, _ in buckets:
        last_of_run[run_id] = max(last_of_run[run_id], start + width)
    spans = [(r.started, r.ended or last_of_run.get(r.id) or r.started) for r in runs]
    first = min(min(b[1] for b in buckets), min(s for s, _ in spans))
    last = max(max(b[1] + b[2] for b in buckets), max(e for _, e in spans))
    width = nice_width(last - first, max(b[2] for b in buckets))
    origin = int(first // width) * width
    merged: dict[int, Bucket] = {}
    for _, start, _, bucket in buckets:
        merged.setdefault(int((start - origin) // width), Bucket()).add(bucket)
    intervals: list[Interval | None] = []
    for i in range(int((last - origin) // width) + 1):
        at = origin + i * width
        active = any(s < at + width and at <= e for s, e in spans)
        if i in merged or active:
            intervals.append(Interval(at, width, merged.get(i) or Bucket()))
        else:
            intervals.append(None)
    return TimelineView(width, intervals, totals, _pauses(buckets, last), runs)


def _pauses(buckets: Buckets, until: float) -> list[tuple[float, float]]:
    """Retry-After pauses (start, end) from the buckets, cut at ``until`` (the end of what the runs
    recorded: a run killed or ended during a pause paused no longer).

    A bucket keeps each pause as (start, seconds) where it began (timeline.Bucket.spans); touching or
    overlapping ones are one pause. States written before that spread a pause's seconds over the
    buckets it covered (``paused_s`` only): those are read to a bucket's precision.
    """
    found: list[tuple[float, float]] = []
    legacy: list[tuple[float, float]] = []
    for _, start, width, bucket in sorted(buckets, key=lambda b: b[1]):
        if bucket.spans:
            found += [(s, s + n) for s, n in bucket.spans]
        elif bucket.paused_s <= 0:
            continue
        elif legacy and legacy[-1][1] >= start - 1e-6:  # it goes on from the previous bucket
            legacy[-1] = (legacy[-1][0], start + bucket.paused_s)
        elif bucket.paused_s >= width - 1e-6 or not bucket.pauses:
            legacy.append((start, start + bucket.paused_s))
        else:  # it began in this bucket and lasts to its end (or ends inside it)
            legacy.append((start + width - bucket.paused_s, start + width))
    out: list[tuple[float, float]] = []
    for begin, end in sorted(found + legacy):
        end = min(end, until)
        if end <= begin:
            continue
        if out and begin <= out[-1][1] + 1e-6:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


def _failure_groups(entries: Iterable[tuple[Any, ...]]) -> list[FailureGroup]:
    """Group ``(row, meeting, account, error, status, message)`` by error kind, largest first.

    ``entries`` is read once, as it comes (a cursor: nothing is held per row), and at most
    ``MAX_SHAPES`` message shapes are counted per kind.
    """
    groups: dict[str, FailureGroup] = {}
    messages: dict[str, Counter[str]] = defaultdict(Counter)
    for row, meeting, account, error, status, message in entries:
        kind = str(error)
        group = groups.setdefault(kind, FailureGroup(kind, 0))
        group.count += 1
        shape = _message_shape(message or "", meeting, account)
        shapes = messages[kind]
        if shape in shapes or len(shapes) < MAX_SHAPES:
            shapes[shape] += 1
        if len(group.examples) < EXAMPLE_ROWS:
            group.examples.append((row, meeting, account, status, message))
    for kind, group in groups.items():
        group.messages = messages[kind].most_common(TOP_MESSAGES)
        group.other_messages = group.count - sum(n for _, n in group.messages)
    return sorted(groups.values(), key=lambda g: (-g.count, g.kind))


def _message_shape(message: str, meeting: Any, account: Any) -> str:
    """The message with the row's meeting and account ids, and any other UUID, as placeholders."""
    for value, name in ((meeting, "<meeting>"), (account, "<account>")):
        if value and len(str(value)) >= 4:  # a short id would replace ordinary words
            message = message.replace(str(value), name)
    return _NUMBERS.sub("<n>", _UUID.sub("<id>", message))


def _by_kind(counts: dict[str, int], failures: list[FailureGroup]) -> list[tuple[str, int]]:
    out = []
    for outcome in OUTCOME_ORDER:
        if outcome == "failed":
            out += [(f"failed: {g.kind}", g.count) for g in failures]
        elif counts.get(outcome):
            out.append((outcome, counts[outcome]))
    return out


def _per_account(found: tuple[list[AccountOutcome], int], app_id: str | None) -> list[dict[str, Any]]:
    """Per-account rows from the state's ``(account, outcome, n)`` counts (``readers.accounts_by_outcome``):
    the ``TOP_ACCOUNTS`` accounts with the most rows, then one row for all the others (``account_id``
    None, ``other_accounts`` set).

    An outcome the report has no column for counts as ``pending`` (not done), never a KeyError.
    """
    entries, others = found
    accounts: dict[Any, dict[str, Any]] = {}
    for account, is_top, outcome, n in entries:
        key = ("account", account) if is_top else ("other",)
        entry = accounts.setdefault(
            key, {"account_id": account, "app_id": app_id, "total": 0, **dict.fromkeys(OUTCOME_ORDER, 0)}
        )
        entry[outcome if outcome in OUTCOME_ORDER else "pending"] += n
        entry["total"] += n
    if ("other",) in accounts:
        accounts[("other",)]["other_accounts"] = others
    return list(accounts.values())


def _job_outcomes(db: sqlite3.Connection, app_id: str | None) -> Outcomes:
    counts = dict.fromkeys(OUTCOME_ORDER, 0)
    for outcome, n in readers.outcome_counts(db).items():
        counts[outcome] = counts.get(outcome, 0) + n
    failures = _failure_groups(failure[:6] for failure in readers.failures(db))
    accounts = _per_account(readers.row_accounts(db, TOP_ACCOUNTS), app_id)
    return Outcomes(counts, _by_kind(counts, failures), failures, accounts)


def _rollback_outcomes(db: sqlite3.Connection, app_id: str | None) -> Outcomes:
    """Meetings judged by rollbacks, for the job's current writes (as rollback's own summary counts them)."""
    tally = rollback_log.tally(db)
    counts = dict.fromkeys(OUTCOME_ORDER, 0)
    for group in ("landed", "unknown", "earlier"):
        for key, n in tally[group].items():
            if key == "meetings":
                continue
            outcome = key if key in ("succeeded", "unchanged") else "pending" if key == "pending" else "failed"
            counts[outcome] += n
    failures = _failure_groups(failure[:6] for failure in rollback_log.failures(db))
    accounts = _per_account(rollback_log.accounts(db, TOP_ACCOUNTS), app_id)
    return Outcomes(counts, _by_kind(counts, failures), failures, accounts)


def _open_state(path: str) -> sqlite3.Connection:
    """The state, read-only; another program's SQLite file is said to be one (as ``run`` says it)."""
    try:
        return open_read_only(path)
    except UsageError:
        if tables := foreign_tables(path):
            raise UsageError(
                f"{path} is another program's SQLite database (tables {', '.join(tables[:5])}), "
                "not a batcher state file: check the path"
            ) from None
        raise


def _running_pids(path: str, runs: list[RunRecord]) -> set[int]:
    """The pid of the run under way: the latest run with no end, if a job holds the state's lock
    (never this process's own run: the lock is per open file, so our own Store would look like one)."""
    open_runs = [r for r in runs if r.ended is None and r.pid and r.pid != os.getpid()]
    if not open_runs or not is_locked(path):
        return set()
    latest = max(runs, key=lambda r: r.id)
    return {latest.pid} if latest in open_runs and latest.pid else set()


def read_report(path: str, now: float | None = None) -> ReportData:
    """Read everything the report shows from the state file at ``path`` (read-only)."""
    now = time.time() if now is None else now
    db = _open_state(path)
    try:
        meta = readers.read_meta(db)
        job = dict(meta.get("fingerprint") or {})
        job.pop("content", None)  # a digest of the input: nothing a reader can use
        runs = read_runs(db)
        kind_of = {r.id: r.kind for r in runs}
        buckets: dict[str, Buckets] = defaultdict(list)
        for run_id, start, width, bucket in read_timeline(db):
            buckets[kind_of.get(run_id, "run")].append((run_id, start, width, bucket))
        outcomes = _job_outcomes(db, job.get("app_id"))
        has_rollback = any(r.kind == "rollback" for r in runs) or rollback_log.has_outcomes(db)
        rollback = _rollback_outcomes(db, job.get("app_id")) if has_rollback else None
        verification = _verification(db, meta)
        found_normalised = normalised.read(db)
    finally:
        db.close()
    running = _running_pids(path, runs)
    timelines = {
        kind: build_timeline([r for r in runs if r.kind == kind], buckets.get(kind, []))
        for kind in ("run", "rollback")
        if any(r.kind == kind for r in runs)
    }
    return ReportData(
        state_path=path,
        generated_at=now,
        job=job,
        stats=meta.get("run_stats") or {"requests": 0, "retries": 0, "elapsed_s": 0.0},
        runs=runs,
        outcomes=outcomes,
        timelines=timelines,
        rollback=rollback,
        rollback_stats=meta.get("rollback_stats"),
        running_pids=running,
        verification=verification,
        normalised=found_normalised,
    )
