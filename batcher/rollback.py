"""``batcher rollback --state FILE``: PUT back the before-state of every meeting a job changed.

Each meeting is read first. If it is already back at its before-state, nothing
is sent (``unchanged``). If it is still what the job made it, its whole
before-document is PUT (replace semantics). If it changed again since the job,
it is reported as ``conflict`` and left alone unless ``--force``. A before-state
that had storage credentials cannot be restored without them (GET never
returned them): ``credential_guard`` unless ``--allow-credential-reset``.
Progress is kept in the same state file, so a rollback resumes too.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .client import Client
from .config import JobConfig
from .errors import AuthError
from .limiter import Pacer
from .merge import project, storage_of
from .pool import Control, pump, show_pause
from .progress import Console, Progress
from .store import Store


@dataclass
class RollbackResult:
    """Exit code, counts by outcome, the summary text."""

    exit_code: int
    counts: Counter[str]
    message: str


@dataclass(slots=True)
class Snapshot:
    """One meeting's way back."""

    account_id: str
    meeting_id: str
    row: int
    before: dict[str, Any]
    after: dict[str, Any]


class Rollback:
    """Restores snapshots one meeting at a time."""

    def __init__(self, config: JobConfig, store: Store, control: Control, progress: Progress) -> None:
        self.config = config
        self.store = store
        self.control = control
        self.progress = progress
        self.counts: Counter[str] = Counter()

    def pending(self) -> Iterator[Snapshot]:
        """Snapshots not yet restored by an earlier rollback run."""
        for account, meeting, row, before, after in self.store.rollback_todo():
            yield Snapshot(account, meeting, row, before, after)

    def record(
        self,
        snap: Snapshot,
        outcome: str,
        error: str | None = None,
        status: int | None = None,
        message: str = "",
        attempts: int = 0,
    ) -> None:
        """Keep one meeting's rollback outcome."""
        self.store.record_rollback(snap.account_id, snap.meeting_id, outcome, error, status, message, attempts)
        self.counts[error or outcome] += 1
        self.progress.advance(outcome)

    async def handle(self, snap: Snapshot) -> None:
        """Restore one meeting, if it is safe to."""
        url = self.config.meeting_url(snap.account_id, snap.meeting_id)
        got = await self.client.call("GET", url)
        if not got.is_ok or got.data is None:
            self.record(snap, "failed", got.error or "api_error", got.status, got.message, got.attempts)
            if got.error == "auth":
                self.control.halt_with(AuthError(f"HTTP {got.status}: {got.message}"))
            return
        current = project(got.data)
        if current == snap.before:
            return self.record(snap, "unchanged", status=got.status, attempts=got.attempts)
        if current != snap.after and not self.config.force:
            message = "the meeting changed again after the job; not overwritten (use --force to restore anyway)"
            return self.record(snap, "failed", "conflict", got.status, message, got.attempts)
        if storage_of(snap.before) is not None and not self.config.allow_credential_reset:
            message = "the before-state had storage credentials, which GET never returns; restore them by hand or pass --allow-credential-reset"
            return self.record(snap, "failed", "credential_guard", None, message, got.attempts)
        put = await self.client.call("PUT", url, snap.before)
        attempts = got.attempts + put.attempts
        if put.is_ok:
            return self.record(snap, "succeeded", status=put.status, attempts=attempts)
        self.record(snap, "failed", put.error, put.status, put.message, attempts)
        if put.error == "auth":
            self.control.halt_with(AuthError(f"HTTP {put.status}: {put.message}"))


async def rollback_job(
    config: JobConfig, *, control: Control | None = None, console: Console | None = None
) -> RollbackResult:
    """Undo the job whose state is ``config.state_file``."""
    control = control or Control()
    console = console or Console(quiet=True)
    store = Store.open(config.state_file)
    started = time.monotonic()
    try:
        total = store.db.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0]
        progress = console.progress(total, label="meetings restored")
        rollback = Rollback(config, store, control, progress)
        pacer = Pacer(config.rate, control.clock, control.sleep)
        async with Client(config, pacer, control.sleep, on_retry=console.debug) as rollback.client:
            tick = lambda: show_pause(progress, pacer, control)  # noqa: E731
            await pump(rollback.pending(), rollback.handle, config.concurrency, control, tick)
        progress.close()
        report_path = config.report_path or f"{config.state_file}.rollback.failures.jsonl"
        failed = _write_report(store, report_path)
        c = rollback.counts
        totals = Counter(dict(store.db.execute("SELECT outcome, COUNT(*) FROM rollback GROUP BY outcome").fetchall()))
        text = (
            f"batcher rollback: {total} meetings changed by the job - {totals['succeeded']} restored, "
            f"{totals['unchanged']} already as before, {failed} failed; this run {sum(c.values())} handled in "
            f"{time.monotonic() - started:.1f} s, {rollback.client.stats.requests} requests\n  report: {report_path}"
        )
    finally:
        store.close()
    if control.halt is not None:
        return RollbackResult(control.halt.exit_code, c, f"{text}\n{control.halt}")
    if control.interrupted:
        return RollbackResult(130, c, text)
    return RollbackResult(1 if failed else 0, c, text)


def _write_report(store: Store, path: str) -> int:
    count = 0
    with open(path, "wb") as out:
        for account, meeting, error, status, message, attempts, row in store.db.execute(
            "SELECT r.account_id, r.meeting_id, r.error, r.status, r.message, r.attempts, s.row FROM rollback r"
            " JOIN snapshots s USING (account_id, meeting_id) WHERE r.outcome = 'failed' ORDER BY s.row"
        ):
            entry = {
                "row": row,
                "meeting_id": meeting,
                "account_id": account,
                "error": error,
                "status": status,
                "message": message,
                "attempts": attempts,
            }
            out.write(orjson.dumps(entry) + b"\n")
            count += 1
    return count
