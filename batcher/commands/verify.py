"""``batcher verify --state FILE``: is every meeting the job changed still as the job left it?

What the job left is the server's answer to its last landed write there (``state/verify_log.py``:
a merge job's snapshots, a replace or patch job's ``left_records``, and after a rollback what the
rollback left). Each meeting gets one verdict:

- ``as_written``: the meeting holds what was left (read-only fields and credentials aside);
- ``drifted``: it holds something else: ``changes`` lists each path, ``written`` vs ``now``;
- ``missing``: the meeting is gone (404);
- ``unknown``: it could not be read (the message says why).

The cheap path (``--app-id``, the ``realtime/kit/{app}`` path, which has a list endpoint): each
account's meetings are read a page at a time (``run/listing.py``); a meeting whose listed
``updated_at`` is still the one the job's write answered is ``as_written`` with no request of its
own, and only the others get a GET, to show what changed. The list is swept only while that costs
fewer requests than a GET for each meeting still to judge (judged from ``total_count`` after each
page). Without the app path: one GET a meeting.

Read-only towards the server, paced by the token's shared budget like every command, and
resumable: verdicts are kept in the state file (table ``verify``), so a stopped verify, run again,
judges only the meetings it had not; a verify that finished is started afresh by the next one.
``--out`` (default stdout) gets one JSON line a meeting once the pass ends (resumed or not, the
whole pass); the human summary goes to stderr, and with ``--summary-json`` ``{"total", "as_written",
"drifted", "missing", "unknown", "requests", "elapsed_s"}`` (``requests``: this run's). Exit 0 when every meeting is ``as_written``, 1 when
any is not, 2 for usage errors, 3 when the token is refused, 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..core.config import JobConfig
from ..core.documents import diff, project, redact, strip_secrets
from ..errors import AuthError, Interrupted, UsageError
from ..http.client import CallResult, Client
from ..http.pacer import Pacer
from ..report.console import Console, Progress
from ..run.listing import ListReader
from ..run.pool import Control, pump, show_pause
from ..run.writes import reading_of
from ..state import verify_log
from ..state.store import Store
from ..state.verify_log import Target
from .rollback import TARGET_FIELDS, resolve_target

VERDICTS = ("as_written", "drifted", "missing", "unknown")
Verdict = tuple[Target, str, list[dict[str, Any]], str | None]


@dataclass
class VerifyResult:
    """How a verify ended: exit code, meetings per verdict, requests, the summary text."""

    exit_code: int
    counts: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    message: str = ""


def compare(written: dict[str, Any], now: dict[str, Any]) -> list[dict[str, Any]]:
    """Each path where the meeting now differs from what was written: ``{"path", "written", "now"}``.
    Read-only fields and write-only credentials are never compared (no read shows a credential)."""
    left, shown = strip_secrets(project(written)), strip_secrets(project(now))
    return [
        {"path": c["path"], "written": redact(c["before"]), "now": redact(c["after"])}
        for c in sorted(diff(left, shown), key=lambda c: str(c["path"]))
    ]


class Verifier:
    """Judges the job's meetings: a list sweep per account on the app path, else a GET each."""

    def __init__(self, config: JobConfig, store: Store, client: Client, control: Control, progress: Progress) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.control = control
        self.progress = progress
        self.counts: Counter[str] = Counter()
        self.notes: list[str] = []
        self._batch: list[Verdict] = []

    async def run(self, todo: dict[str, dict[str, Target]]) -> None:
        """Judge every target (``todo``: account -> lower-case meeting id -> target)."""
        for account, targets in todo.items():
            if self.control.stopping:
                return
            if self.config.app_id:
                await self.sweep(account, targets)
            if targets:  # not settled by the list: a GET each
                await self.get_each(list(targets.values()))
            self.commit()

    async def sweep(self, account: str, targets: dict[str, Target]) -> None:
        """Read the account's list a page at a time; settle (or GET) each page's meetings of the job.
        Settled targets leave ``targets``; what is left after the sweep needs a GET."""
        reader = ListReader(self.client, self.config.base_url, account, self.config.app_id or "")
        async for items in reader.pages():
            to_get: list[Target] = []
            for item in items:
                target = targets.pop(str(item.get("id", "")).lower(), None)
                if target is None:
                    continue
                if target.updated_at is not None and item.get("updated_at") == target.updated_at:
                    self.settle(target, "as_written", [], None)  # unmoved since the job's write: no request
                else:
                    to_get.append(target)
            await self.get_each(to_get)
            self.commit()
            left = reader.pages_left()
            if self.control.stopping or not targets:
                return
            if left is not None and left > len(targets):
                self.notes.append(
                    f"account {account}: {left} more list pages cost more than a GET for each of the "
                    f"{len(targets)} meetings left: read one by one"
                )
                return
        if reader.stop_reason:
            self.notes.append(f"account {account}: {reader.stop_reason}; the rest read one by one")

    async def get_each(self, targets: list[Target]) -> None:
        """One GET a meeting (concurrently, paced)."""
        if targets:
            tick = lambda: show_pause(self.progress, self.client.pacer, self.control)  # noqa: E731
            await pump(iter(targets), self.judge, self.config.concurrency, self.control, tick)

    async def judge(self, target: Target) -> None:
        """GET one meeting and compare it with what the job left there."""
        url = self.config.meeting_url(target.account_id, target.meeting_id)
        got = await self.client.call("GET", url)
        reading = reading_of(target.meeting_id, got, self.control.clock())
        if isinstance(reading, CallResult):
            if reading.error == "auth":
                self.control.halt_with(AuthError(f"HTTP {reading.status} reading meeting {target.meeting_id}"))
                return
            if reading.error == "not_found":
                return self.settle(target, "missing", [], None)
            status = f" (HTTP {reading.status})" if reading.status else ""
            return self.settle(target, "unknown", [], f"{reading.error}{status}: {reading.message}")
        changes = compare(verify_log.document_of(self.store.db, target), reading.document)
        self.settle(target, "drifted" if changes else "as_written", changes, None)

    def settle(self, target: Target, verdict: str, changes: list[dict[str, Any]], message: str | None) -> None:
        """Count one verdict; it is kept with the next commit (a page's, or every 100)."""
        self._batch.append((target, verdict, changes, message))
        self.counts[verdict] += 1
        self.progress.advance("succeeded" if verdict == "as_written" else "failed")
        if len(self._batch) >= 100:
            self.commit()

    def commit(self) -> None:
        """Make the verdicts so far durable (a resumed verify skips them)."""
        batch, self._batch = self._batch, []
        verify_log.record_verdicts(self.store, batch)


def _todo(store: Store, done: set[tuple[str, str]]) -> dict[str, dict[str, Target]]:
    """The meetings still to judge, by account (a resumed pass leaves out what it judged)."""
    todo: dict[str, dict[str, Target]] = {}
    for target in verify_log.targets(store.db):
        if (target.account_id, target.meeting_id) not in done:
            todo.setdefault(target.account_id, {})[target.meeting_id.lower()] = target
    return todo


def write_out(store: Store, out_path: str) -> int:
    """The pass's verdicts, one JSON line a meeting, to ``out_path`` (``-``: stdout), streamed."""
    count = 0
    out = sys.stdout.buffer if out_path == "-" else open(out_path, "wb")  # noqa: SIM115 - closed below
    try:
        for line in verify_log.verdicts(store.db):
            out.write(orjson.dumps(line) + b"\n")
            count += 1
        out.flush()
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return count


def summary_text(store: Store, requests: int, elapsed_s: float, notes: list[str]) -> str:
    """The human summary: meetings per verdict, the drifted ones' paths, what it cost."""
    counts = verify_log.verdict_counts(store.db)
    total = sum(counts.values())
    per = f"{requests / total:.3f}" if total else "0"
    lines = [
        f"batcher verify: {total} meetings the job changed - {counts.get('as_written', 0)} as written, "
        f"{counts.get('drifted', 0)} drifted, {counts.get('missing', 0)} missing, {counts.get('unknown', 0)} unknown",
        f"  {requests} requests this run ({per} a meeting) in {elapsed_s:.1f} s",
    ]
    shown = 0
    for line in verify_log.verdicts(store.db):
        if line["verdict"] == "as_written" or shown >= 10:
            continue
        shown += 1
        paths = ", ".join(c["path"] for c in line["changes"]) or line.get("message", "")
        lines.append(
            f"  {line['verdict']}: meeting {line['meeting_id']} (row {line['row']}){': ' if paths else ''}{paths}"
        )
    if not total:
        notes = [
            *notes,
            "the state records no meeting the job changed (no write of it landed; a replace or patch job "
            "run by a batcher older than verify kept no record of its writes)",
        ]
    lines.extend(f"  note: {note}" for note in notes)
    return "\n".join(lines)


async def verify_job(
    config: JobConfig,
    out_path: str = "-",
    *,
    control: Control | None = None,
    console: Console | None = None,
    given: dict[str, str | None] | None = None,
) -> VerifyResult:
    """Verify the job whose state is ``config.state_file`` (the library entry point behind ``batcher verify``).

    ``given``: the base URL, app id and account named by flags or environment (None: not given,
    use the job's); one that differs from the job's is refused unless ``--force``, as for rollback.
    """
    control = control or Control()
    console = console or Console(quiet=True)
    if given is None:
        given = {key: getattr(config, key) for key in TARGET_FIELDS}
    started = time.monotonic()
    store = Store.open(config.state_file)
    try:
        fingerprint = store.get_meta("fingerprint")
        if fingerprint is None:
            raise UsageError(f"{config.state_file} holds no job to verify (no run has recorded one)")
        target, differences = resolve_target(fingerprint, given, force=config.force)
        for difference in differences:
            console.say("warning", f"batcher: warning: --force: {difference}")
        config = dataclasses.replace(
            config,
            base_url=target["base_url"] or config.base_url,
            app_id=target["app_id"],
            account_id=target["account_id"],
        )
        number, is_resumed = verify_log.start_pass(store)
        done = verify_log.judged(store.db) if is_resumed else set()
        todo = _todo(store, done)
        if is_resumed and done:
            console.say("verify_resume", f"batcher verify: resuming: {len(done)} meetings already judged")
        progress = console.progress(sum(len(t) for t in todo.values()), label="meetings")
        pacer = Pacer(config.pacing.rate, control.clock, control.sleep)
        async with Client(config.http, pacer, control.sleep, on_retry=console.debug) as client:
            verifier = Verifier(config, store, client, control, progress)
            try:
                await verifier.run(todo)
            except Interrupted:
                pass
            finally:
                verifier.commit()
                progress.close()
            requests = client.stats.requests
        is_complete = not control.stopping
        if is_complete:
            verify_log.end_pass(store, number)
        written = write_out(store, out_path)
        counts = Counter(verify_log.verdict_counts(store.db))
        elapsed_s = time.monotonic() - started
        text = summary_text(store, requests, elapsed_s, verifier.notes)
        if config.summary_path:
            doc: dict[str, Any] = {"total": sum(counts.values()), **{v: counts[v] for v in VERDICTS}}
            doc.update(requests=requests, elapsed_s=round(elapsed_s, 3))
            Path(config.summary_path).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    finally:
        store.close()
    if control.halt is not None:
        return VerifyResult(control.halt.exit_code, counts, requests, f"{text}\n{control.halt}")
    if not is_complete:
        return VerifyResult(
            130, counts, requests, f"{text}\n  interrupted after {written} meetings; run the same command to go on"
        )
    is_clean = counts["as_written"] == sum(counts.values())
    return VerifyResult(0 if is_clean else 1, counts, requests, text)
