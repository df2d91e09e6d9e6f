"""The invariants every episode must keep, checked from its ``Record`` alone.

Each check is a function ``(record) -> list[Violation]`` named after the
invariant, so a failing episode says which promise broke; ``check_all`` runs
them all. They read the record (server state, request log, files, streams):
tampering with any of those after a good episode must make the right check
complain, and ``tests/soak/test_invariants_break.py`` shows that it does.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batcher.core.documents import deep_merge
from batcher.core.schema import DEFAULT_DOCUMENT
from batcher.state.snapshots import _unpack

from .episode import Record
from .plan import COLLEAGUE_FIELD, EDIT_MARKER, JobPlan

META = ("id", "account_id", "created_at", "updated_at")
COUNT_KEYS = ("total", "succeeded", "unchanged", "failed", "skipped")
GOOD_RC = {0, 1, 2, 3, 130}


@dataclass(frozen=True)
class Violation:
    """One broken promise: which invariant, and what was seen."""

    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.detail}"


def body(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored meeting without the fields only the server sets (status stays: a PUT must keep it),
    nor the colleague's field (``check_colleague`` judges it)."""
    return {k: v for k, v in doc.items() if k not in META and k != COLLEAGUE_FIELD}


def state_rows(path: Path) -> dict[int, dict[str, Any]]:
    """The state file's rows table (read-only)."""
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cols = ("row", "account_id", "meeting_id", "outcome", "error", "status", "message")
        return {r[0]: dict(zip(cols, r, strict=True)) for r in db.execute(f"SELECT {', '.join(cols)} FROM rows")}
    finally:
        db.close()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _job_procs(record: Record, job: JobPlan, kinds: tuple[str, ...]) -> list[Any]:
    return [p for p in record.procs if p.job == job.name and p.kind in kinds]


def _interrupts(record: Record, job: JobPlan) -> int:
    return sum(1 for p in _job_procs(record, job, ("run", "resume")) if p.signal_sent)


def _expected(job: JobPlan, initial: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    if job.mode == "replace":  # PUT replaces: the row over the defaults, unknown fields gone; status is kept
        return {**deep_merge(DEFAULT_DOCUMENT, patch), "status": initial.get("status", "ACTIVE")}
    return deep_merge(initial, patch)


def _key(account: str | None, meeting: str | None) -> str:
    return f"{account}/{meeting}"


def _run_log(record: Record) -> list[dict[str, Any]]:
    return [e for e in record.log if e["t"] < record.rollback_from]


def check_outcomes(record: Record) -> list[Violation]:
    """Every row has exactly one final outcome; summary, report, results and status agree with the state."""
    out: list[Violation] = []
    v = out.append
    for job in record.plan.jobs:
        files = record.files[job.name]
        rows = state_rows(files.state)
        numbers = {r.number for r in job.rows}
        if set(rows) != numbers:
            v(Violation("outcomes", f"{job.name}: state rows {len(rows)} != input rows {len(numbers)}"))
        counts = Counter(r["outcome"] for r in rows.values())
        for n, r in sorted(rows.items()):
            guarded = r["outcome"] == "failed" and r["error"] == "credential_guard" and job.mode == "merge"
            if r["outcome"] not in ("succeeded", "unchanged") and not guarded:
                v(Violation("outcomes", f"{job.name} row {n} ended {r['outcome']} ({r['error']}: {r['message']})"))
        want = {k: counts.get(k, 0) for k in COUNT_KEYS[1:]} | {"total": len(rows)}
        summary = orjson.loads(files.summary.read_bytes()) if files.summary.exists() else {}
        got = {k: summary.get(k) for k in COUNT_KEYS}
        if got != want:
            v(Violation("outcomes", f"{job.name}: --summary-json {got} != state {want}"))
        reported = Counter(e.get("row") for e in _jsonl(files.report))
        failed = {n for n, r in rows.items() if r["outcome"] == "failed"}
        if set(reported) != failed or any(c > 1 for c in reported.values()):
            v(Violation("outcomes", f"{job.name}: report rows {sorted(reported)} != failed rows {sorted(failed)}"))
        out.extend(_check_results(record, job, rows))
        status = record.status_json.get(job.name)
        if status is not None:
            got = {k: status.get(k) for k in COUNT_KEYS}
            if got != want:
                v(Violation("outcomes", f"{job.name}: status --json {got} != state {want}"))
    return out


def _check_results(record: Record, job: JobPlan, rows: dict[int, dict[str, Any]]) -> list[Violation]:
    lines = _jsonl(record.files[job.name].results)
    by_row: dict[int, list[str]] = {}
    for line in lines:
        by_row.setdefault(line.get("row"), []).append(line.get("outcome"))
    out = []
    for n, r in rows.items():
        seen = by_row.get(n, [])
        if not seen or seen[-1] != r["outcome"]:
            out.append(Violation("outcomes", f"{job.name}: --results for row {n}: {seen}, state says {r['outcome']}"))
    # a row is written to --results again only after a run that did not finish it (skipped, failed) or a kill
    repeats = sum(1 for seen in by_row.values() for before in seen[:-1] if before not in ("skipped", "failed"))
    allowed = 2 * job.concurrency * _interrupts(record, job)
    if repeats > allowed:
        out.append(Violation("outcomes", f"{job.name}: {repeats} rows repeated in --results (allowed {allowed})"))
    stray = set(by_row) - set(rows)
    if stray:
        out.append(Violation("outcomes", f"{job.name}: --results names rows not in the input: {sorted(stray)[:5]}"))
    return out


def check_server_state(record: Record) -> list[Violation]:
    """Done rows are exactly what the server holds, secrets and unknown fields included; others untouched."""
    out: list[Violation] = []
    named: set[str] = set()
    for job in record.plan.jobs:
        rows = state_rows(record.files[job.name].state)
        for row in job.rows:
            key = _key(row.account_id, row.meeting_id)
            named.add(key)
            before, now = body(record.initial[key]), body(record.after_run.get(key, {}))
            expected = _expected(job, before, row.patch)
            outcome = rows.get(row.number, {}).get("outcome")
            if outcome in ("succeeded", "unchanged") and now != expected:
                out.append(Violation("server_state", f"{job.name} row {row.number} {outcome}: {_diff(expected, now)}"))
            elif outcome not in ("succeeded", "unchanged") and now not in (before, expected):
                out.append(Violation("server_state", f"{job.name} row {row.number} {outcome}: server holds neither"))
    for key, doc in record.initial.items():
        if key not in named and body(record.after_run.get(key, {})) != body(doc):
            out.append(Violation("server_state", f"meeting {key} not in any input was changed"))
    written = {_key(e["account"], e["meeting"]) for e in _run_log(record) if e["applied"]} - named
    if written:
        out.append(Violation("server_state", f"writes to meetings not in any input: {sorted(written)[:3]}"))
    return out


def _diff(expected: dict[str, Any], now: dict[str, Any], prefix: str = "") -> str:
    for key in sorted({*expected, *now}):
        a, b = expected.get(key, "<absent>"), now.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return _diff(a, b, prefix + key + ".")
        elif a != b:
            return f"{prefix}{key}: expected {str(a)[:60]!s}, server {str(b)[:60]!s}"
    return "equal"


def check_double_writes(record: Record) -> list[Violation]:
    """Meetings written more than once: at most 2 x concurrency per interrupt (plus writes dropped after applying)."""
    out = []
    writes = Counter(_key(e["account"], e["meeting"]) for e in _run_log(record) if e["applied"])
    resent = record.chaos_drawn.get("apply_then_drop", 0)
    for job in record.plan.jobs:
        keys = {_key(r.account_id, r.meeting_id) for r in job.rows}
        twice = sum(n - 1 for k, n in writes.items() if k in keys and n > 1)
        allowed = 2 * job.concurrency * _interrupts(record, job) + resent
        if twice > allowed:
            out.append(Violation("double_writes", f"{job.name}: {twice} repeated writes, allowed {allowed}"))
    return out


def check_rate(record: Record) -> list[Violation]:
    """No window of T seconds holds more than N request arrivals at the server, across all processes."""
    n, t = record.plan.rate
    slack = max(0.1, 0.1 * t)  # arrival jitter: a request reaches the server a little (and variably) after it started
    times = sorted(e["t"] for e in record.log)
    worst, at, j = 0, 0.0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + t - slack:
            j += 1
        if j - i > worst:
            worst, at = j - i, start
    if worst > n:
        procs = [
            f"{p.job}:{p.kind}" for p in record.procs if p.started_t < at + t and p.ended_t > at and p.kind != "status"
        ]
        return [
            Violation(
                "rate",
                f"{worst} requests arrived within {t - slack:.2f}s; --rate {n}/{t:g}; processes then: {', '.join(procs)}",
            )
        ]
    return []


def check_counters(record: Record) -> list[Violation]:
    """The whole-job request counter is within the in-flight bound of what the server saw."""
    out = []
    log = _run_log(record)
    drops = sum(record.chaos_drawn.get(k, 0) for k in ("drop", "apply_then_drop"))
    for job in record.plan.jobs:
        summary_path = record.files[job.name].summary
        if not summary_path.exists():
            out.append(Violation("counters", f"{job.name}: no --summary-json written"))
            continue
        # case-insensitive: a client that changes an id's case still made the request (it 404s)
        keys = {_key(r.account_id, r.meeting_id).lower() for r in job.rows}
        seen = sum(1 for e in log if _key(e["account"], e["meeting"]).lower() in keys)
        counted = orjson.loads(summary_path.read_bytes()).get("requests", 0)
        runs = len(_job_procs(record, job, ("run", "resume", "final")))
        allowed = job.concurrency * runs + drops
        if abs(seen - counted) > allowed:
            out.append(
                Violation("counters", f"{job.name}: summary says {counted} requests, server saw {seen} (±{allowed})")
            )
    return out


def check_rollback(record: Record) -> list[Violation]:
    """Rollback restores every field of every changed meeting (merge); never claims a clean nothing otherwise."""
    out = []
    for job in record.plan.jobs:
        (proc,) = _job_procs(record, job, ("rollback",))
        edited = {e["meeting"] for e in record.colleague}
        refused = {
            _key(e.get("account_id"), e.get("meeting_id"))
            for e in _jsonl(record.files[job.name].rollback_report)
            # a meeting the colleague changed after the job is someone else's now: a conflict, kept
            if e.get("error") == "credential_guard"
            or (e.get("error") == "conflict" and _key(e.get("account_id"), e.get("meeting_id")) in edited)
        }
        wrong = [
            _key(r.account_id, r.meeting_id)
            for r in job.rows
            if body(record.after_rollback[_key(r.account_id, r.meeting_id)])
            != body(record.initial[_key(r.account_id, r.meeting_id)])
        ]
        if job.mode == "merge":
            if proc.rc not in (0, 1):
                out.append(Violation("rollback", f"{job.name}: rollback exit {proc.rc}: {proc.stderr[-300:]}"))
            bad = [k for k in wrong if k not in refused]
            if bad:
                key = bad[0]
                detail = _diff(body(record.initial[key]), body(record.after_rollback[key]))
                out.append(Violation("rollback", f"{job.name}: {len(bad)} meetings not restored, e.g. {key}: {detail}"))
        elif proc.rc == 0 and wrong:
            out.append(
                Violation("rollback", f"{job.name} ({job.mode}): rollback exit 0 but {len(wrong)} meetings differ")
            )
    return out


def check_colleague(record: Record) -> list[Violation]:
    """No write reverts a colleague's edit of a field no row names, but a write built from a read
    made just before the edit (the meeting's request before the write is that read: no wait, no
    failed attempt between them), which no API without conditional writes can avoid."""
    out = []
    last: dict[str, dict[str, Any]] = {}
    for edit in sorted(record.colleague, key=lambda e: e["t"]):
        last[edit["meeting"]] = edit
    by_meeting: dict[str, list[dict[str, Any]]] = {}
    for entry in sorted(record.log, key=lambda e: e["t"]):
        by_meeting.setdefault(_key(entry["account"], entry["meeting"]), []).append(entry)
    for key, edit in sorted(last.items()):
        now = record.after_rollback.get(key, {}).get(COLLEAGUE_FIELD)
        if now == edit["value"]:
            continue
        log = by_meeting.get(key, [])
        raced = any(
            read["method"] == "GET"
            and read["t"] < edit["t"]
            and write["method"] in ("PUT", "PATCH")
            and write["applied"]
            for read, write in itertools.pairwise(log)
        )
        if not raced:
            out.append(Violation("colleague", f"{key}: the colleague set {edit['value']!r}, the server holds {now!r}"))
    return out


def check_secrets(record: Record) -> list[Violation]:
    """No secret (token, storage secrets) in any file batcher wrote or any stream it printed."""
    secrets = [record.plan.token, *record.plan.secrets]
    inputs = {f.input for f in record.files.values()}
    out = []
    for path in sorted(record.workdir.rglob("*")):
        if not path.is_file() or path in inputs:
            continue
        texts = [path.read_bytes().decode("utf-8", "replace")]
        if path.name.endswith(".db"):
            texts.extend(_snapshot_texts(path))
        for text in texts:
            found = next((s for s in secrets if s in text), None)
            if found is not None:
                where = path.relative_to(record.workdir)
                out.append(Violation("secrets", f"a secret ({found[:6]}...) appears in {where}"))
                break
    return out


def _snapshot_texts(path: Path) -> list[str]:
    """The state's zlib'd snapshots, decoded (a raw scan cannot see into them)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT before, after FROM snapshots").fetchall()
    except sqlite3.DatabaseError:
        return []
    finally:
        db.close()
    return [orjson.dumps(_unpack(blob)).decode() for row in rows for blob in row]


def check_edits(record: Record) -> list[Violation]:
    """An input edited mid-job is refused on resume (exit 2), and the edited row never lands.

    The running process may legitimately write the edited row with its *original*
    content (it read the row before the edit), so what is checked is the value:
    no meeting may end holding the edit's marker title.
    """
    out = []
    for edit in record.edits:
        if edit.get("resume_rc") != 2:
            out.append(Violation("edits", f"{edit['job']}: resume over an edited input exited {edit.get('resume_rc')}"))
        if record.after_run.get(edit["meeting"], {}).get("title") == EDIT_MARKER:
            out.append(Violation("edits", f"{edit['job']}: the edited row {edit['row']} landed on the server"))
    return out


def check_processes(record: Record) -> list[Violation]:
    """No traceback, no unexpected exit code; interrupted runs exit 130; the clean last pass finishes."""
    out = []
    for p in record.procs:
        if "Traceback (most recent call last)" in p.stderr and "--verbose" not in p.argv:
            out.append(
                Violation("processes", f"{p.job} {p.kind}: traceback: {p.stderr.strip().splitlines()[-1][:200]}")
            )
        # 3: it halted on its own (401) meanwhile; 2: it found the input edited (a refusal that may race the signal)
        refused_edit = p.rc == 2 and "changed since the job's pre-flight" in p.stderr
        if p.signal_sent in ("INT", "TERM") and p.rc not in (0, 1, 3, 130) and not refused_edit:
            out.append(Violation("processes", f"{p.job} {p.kind}: SIG{p.signal_sent} gave exit {p.rc}"))
        elif p.signal_sent is None and p.rc not in GOOD_RC and p.kind != "status":
            out.append(Violation("processes", f"{p.job} {p.kind}: exit {p.rc}: {p.stderr.strip()[-200:]}"))
        if p.kind == "final" and p.rc not in (0, 1):
            out.append(Violation("processes", f"{p.job} final pass exit {p.rc}: {p.stderr.strip()[-200:]}"))
    return out


CHECKS = (
    check_outcomes,
    check_server_state,
    check_double_writes,
    check_rate,
    check_counters,
    check_rollback,
    check_colleague,
    check_secrets,
    check_edits,
    check_processes,
)


def check_all(record: Record) -> list[Violation]:
    """Every invariant, in order."""
    return [v for check in CHECKS for v in check(record)]
