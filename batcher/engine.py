"""The engine: the only module that wires the stages together.

    Source --(row numbers to do, from the Store)--> bounded queue --> N workers
        worker: Pacer -> Client (GET / merge / guard / snapshot / PUT) -> Store, results, progress

The queue holds at most ``concurrency`` rows, so memory is flat whatever the
input size, and the reader only runs ahead of the workers by that much. Every
``concurrency`` finished rows are committed as a group, so a ``kill -9`` can
lose at most that many outcomes plus those in flight: 2 x concurrency rows
sent again, at most.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from .checks import KeyLog, duplicate_errors, iter_checked
from .client import CallResult, Client
from .config import JobConfig
from .errors import AuthError, HaltError, Interrupted, ValidationFailed
from .limiter import Pacer
from .merge import deep_merge, missing_credentials, project, strip_secrets
from .model import DEFAULT_DOCUMENT, Row, RowError, trusted_row
from .pool import TICK, Control, pump, show_pause
from .progress import Console, Progress
from .report import (
    ResultsStream,
    human_summary,
    redacted_patch_json,
    scrub,
    secret_values,
    summary,
    write_failure_report,
)
from .source import STDIN, Source
from .store import Store, file_digest, patch_hash


@dataclass
class JobResult:
    """What a finished (or stopped) job reports."""

    exit_code: int
    summary: dict[str, Any]
    message: str = ""


class Job:
    """One ``batcher run``: prepare the state, send the rows, write the reports."""

    def __init__(
        self,
        config: JobConfig,
        control: Control,
        progress: Progress | None = None,
        on_invalid: Callable[[RowError], None] | None = None,
        stdin: IO[bytes] | None = None,
        console: Console | None = None,
    ) -> None:
        self.config = config
        self.control = control
        self.console = console or Console(quiet=True)
        self.progress = progress or Progress(console=self.console)
        self.on_invalid = on_invalid or (lambda err: None)
        self.stdin = stdin
        self.failures_this_run = 0
        self.is_stdin = config.input == STDIN

    # -- preparing the state ---------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        """What makes this job this job: the input and the options that change meaning."""
        cfg = self.config
        fp: dict[str, Any] = {
            "input": "-" if self.is_stdin else str(Path(cfg.input).resolve()),
            "mode": cfg.mode,
            "base_url": cfg.base_url.rstrip("/"),
            "app_id": cfg.app_id,
            "account_id": cfg.account_id,
            "format": cfg.input_format,
        }
        if not self.is_stdin:
            try:
                fp["size"] = os.path.getsize(cfg.input)
                fp["content"] = file_digest(cfg.input)
            except OSError:
                pass  # Source raises the clear error
        return fp

    def load_rows(self, store: Store, *, rebuild: bool) -> None:
        """First pass over a file: validate every row into the state (nothing sent yet)."""
        try:
            with Source(self.config.input, self.config.input_format) as source:
                self.preflight(store, source, rebuild=rebuild)
        except ValidationFailed:
            if store.is_new:
                store.close()
                _remove_state(self.config.state_file)
            raise

    def preflight(self, store: Store, source: Source, *, rebuild: bool = False) -> int:
        """Validate every row into the state (one transaction); returns the invalid count.

        Without ``--skip-invalid`` an invalid row aborts with nothing stored.
        ``rebuild`` (``--force`` on an existing state) sets the old rows aside
        in the same transaction, so an aborted rebuild leaves them as they were.
        """
        cfg = self.config
        invalid = 0
        batch: list[tuple[Any, ...]] = []
        keys = KeyLog()
        store.begin()
        try:
            if rebuild:
                store.archive_rows()
            for result in iter_checked(source, cfg.account_id, keys, require_account=True):
                if isinstance(result, RowError):
                    invalid += 1
                    self.on_invalid(result)
                    batch.append(self._invalid_tuple(result))
                else:
                    digest = patch_hash(result.patch)
                    batch.append(
                        (result.number, result.account_id, result.meeting_id, digest, "pending", None, None, None)
                    )
                if len(batch) >= 10000:
                    store.add_rows(batch)
                    batch.clear()
            for duplicate in duplicate_errors(cfg.input, cfg.input_format, cfg.account_id, keys.duplicates()):
                invalid += 1
                self.on_invalid(duplicate)
                batch.append(self._invalid_tuple(duplicate))
            store.add_rows(batch)
            if invalid and not cfg.skip_invalid:
                raise ValidationFailed(f"{invalid} invalid row(s); nothing was sent. Fix them, or pass --skip-invalid")
            store.carry_over()
        except BaseException:
            store.rollback_tx()
            raise
        store.commit()
        return invalid

    @staticmethod
    def _invalid_tuple(err: RowError) -> tuple[Any, ...]:
        return (
            err.number,
            err.account_id,
            err.meeting_id,
            None,
            "failed",
            "invalid",
            err.message,
            redacted_patch_json(err.patch),
        )

    def rows_to_send(self, store: Store, source: Source) -> Iterator[Any]:
        """File input: the rows the state says are not done, decoded on demand (merge join)."""
        todo = store.todo_rows(retry_failed=self.config.retry_failed)
        next_row = next(todo, None)
        skipped = 0
        for number, raw in source.records():
            if next_row is None:
                return
            if number < next_row:
                skipped += 1
                if skipped % 4096 == 0:
                    yield TICK
                continue
            next_row = next(todo, None)
            # The fingerprint proved these are the bytes the pre-flight pass
            # validated, and invalid rows are never in the to-do list.
            yield trusted_row(number, source.decode(raw)[0], self.config.account_id)

    def rows_from_stdin(self, store: Store, source: Source) -> Iterator[Any]:
        """Stdin: check and record rows as they stream; skip what an earlier run finished."""
        for result in iter_checked(source, self.config.account_id, store.keys, require_account=True, batch=1):
            known = store.row_state(result.number)
            if isinstance(result, Row):
                digest = patch_hash(result.patch)
                if (
                    known
                    and known[1] == digest
                    and (
                        known[0] in ("succeeded", "unchanged")
                        or (known[0] == "failed" and not self.config.retry_failed and known[2] != "auth")
                    )
                ):
                    continue
                store.add_rows(
                    [(result.number, result.account_id, result.meeting_id, digest, "pending", None, None, None)]
                )
            else:
                store.add_rows([self._invalid_tuple(result)])
            yield result

    # -- sending ----------------------------------------------------------------

    async def handle(self, item: Row | RowError) -> None:
        """One row from start to outcome."""
        if isinstance(item, RowError):
            self.finish(
                item.number,
                item.meeting_id,
                item.account_id,
                "failed",
                error="invalid",
                message=item.message,
                patch=item.patch,
            )
            return
        cfg, row = self.config, item
        url = cfg.meeting_url(row.account_id or "", row.meeting_id)
        if cfg.mode == "replace":  # done when the meeting is the row over the defaults
            verify = self.already(url, lambda now: now == strip_secrets(deep_merge(DEFAULT_DOCUMENT, row.patch)))
            return self.finish_call(row, await self.client.call("PUT", url, row.patch, verify))
        if cfg.mode == "patch":  # done when merging the (visible part of the) patch changes nothing
            verify = self.already(url, lambda now: deep_merge(now, strip_secrets(row.patch)) == now)
            return self.finish_call(row, await self.client.call("PATCH", url, row.patch, verify))
        got = await self.client.call("GET", url)
        if not got.is_ok or got.data is None:
            if got.is_ok:
                got.error, got.message = "api_error", "GET returned no meeting object"
            return self.finish_call(row, got)
        current = project(got.data)
        merged = deep_merge(current, row.patch)
        if merged == current:
            return self.finish(
                row.number, row.meeting_id, row.account_id, "unchanged", status=got.status, attempts=got.attempts
            )
        missing = missing_credentials(merged, row.patch)
        if missing and not cfg.allow_credential_reset:
            message = (
                f"PUT would erase the stored storage credentials ({', '.join(missing)}; GET never returns them): "
                "add them to the row, or pass --allow-credential-reset"
            )
            return self.finish(
                row.number,
                row.meeting_id,
                row.account_id,
                "failed",
                error="credential_guard",
                message=message,
                attempts=got.attempts,
                patch=row.patch,
            )
        # The way back is durable before the change is made.
        after = strip_secrets(merged)
        self.store.save_snapshot(row.account_id or "", row.meeting_id, row.number, current, after)
        put = await self.client.call("PUT", url, merged, self.already(url, lambda now: now == after))
        put.attempts += got.attempts
        state = "landed" if put.is_ok else "unknown" if put.is_unknown else "failed"
        self.store.mark_write(row.account_id or "", row.meeting_id, state)
        self.finish_call(row, put)

    def already(self, url: str, is_done: Callable[[dict[str, Any]], bool]) -> Callable[[], Awaitable[bool]]:
        """A check for a write whose outcome is unknown: GET the meeting, does it already look done?"""

        async def check() -> bool:
            got = await self.client.call("GET", url)
            return got.is_ok and got.data is not None and is_done(project(got.data))

        return check

    def finish_call(self, row: Row, result: CallResult) -> None:
        """Record a row whose outcome is the result of its last request."""
        if result.is_ok:
            self.finish(
                row.number, row.meeting_id, row.account_id, "succeeded", status=result.status, attempts=result.attempts
            )
            return
        message = scrub(result.message, secret_values(row.patch))
        self.finish(
            row.number,
            row.meeting_id,
            row.account_id,
            "failed",
            error=result.error,
            status=result.status,
            message=message,
            attempts=result.attempts,
            patch=row.patch,
        )
        if result.error == "auth":
            self.control.halt_with(
                AuthError(
                    f"HTTP {result.status} on row {row.number} (meeting {row.meeting_id}): {message}. Check the token and its Realtime permission; the job is resumable"
                )
            )

    def finish(
        self,
        number: int,
        meeting_id: str | None,
        account_id: str | None,
        outcome: str,
        *,
        error: str | None = None,
        status: int | None = None,
        message: str | None = None,
        attempts: int = 0,
        patch: dict[str, Any] | None = None,
    ) -> None:
        """Record one row's outcome (group-committed), stream it, count it."""
        waiting = self.store.record(
            number,
            outcome,
            error=error,
            status=status,
            message=message,
            attempts=attempts,
            patch=redacted_patch_json(patch) if outcome == "failed" else None,
        )
        if waiting >= self.config.concurrency:
            self.flush()
        if self.results.is_on:
            self.results.emit(number, meeting_id, account_id, outcome, status, attempts)
        self.progress.advance(outcome)
        if outcome != "failed":
            return
        self.console.debug("row_failed", f"row {number}: {error}: {message}", row=number, error=error, status=status)
        if error != "auth":  # a bad token halts on its own; it is not the row's failure
            self.failures_this_run += 1
            limit = self.config.max_failures
            if limit is not None and self.failures_this_run > limit:
                self.control.halt_with(
                    HaltError(
                        f"stopped: more than {limit} rows failed (--max-failures); see the report, fix the cause and re-run to resume"
                    )
                )

    def output_closed(self) -> None:
        """``--results -`` lost its reader (``| head``): stop as on a first interrupt, resumable.

        Not ``control.interrupt``: a Ctrl-C that also ended the reader would count twice and exit at once."""
        self.control.interrupted = True
        self.control.stop.set()

    def flush(self) -> None:
        """Group commit: outcomes become durable, results reach their file."""
        self.store.flush()
        self.results.flush()

    def heartbeat(self) -> None:
        """Commit stragglers and redraw progress (a few times a second)."""
        self.flush()
        show_pause(self.progress, self.pacer, self.control)

    # -- the whole job ------------------------------------------------------------

    async def run(self) -> JobResult:
        """Prepare, send, report. Raises BatcherError for usage errors and halts."""
        cfg = self.config
        started = time.monotonic()
        self.store = store = Store.open(cfg.state_file)
        self.results = ResultsStream(cfg.results_path, on_broken=self.output_closed)
        try:
            fingerprint = self.fingerprint()
            if store.check_identity(fingerprint, force=cfg.force):
                # stdin rows are matched one by one as they stream (row, patch hash): no rebuild
                if not self.is_stdin:
                    self.load_rows(store, rebuild=not store.is_new)
                store.set_meta("fingerprint", fingerprint)
            with Source(cfg.input, cfg.input_format, self.stdin) as source:
                if self.is_stdin:
                    rows = self.rows_from_stdin(store, source)
                else:
                    self.progress.total = store.count_todo(cfg.retry_failed)
                    rows = self.rows_to_send(store, source)
                self.pacer = Pacer(cfg.rate, self.control.clock, self.control.sleep)
                async with Client(cfg, self.pacer, self.control.sleep, on_retry=self.console.debug) as self.client:
                    await pump(rows, self.handle, cfg.concurrency, self.control, on_tick=self.heartbeat)
            return self.wrap_up(started)
        finally:
            self.results.close()
            self.progress.close()
            store.close()

    def wrap_up(self, started: float) -> JobResult:
        """Mark what was not reached, write the report and summary, choose the exit code."""
        cfg, store = self.config, self.store
        elapsed = time.monotonic() - started
        if self.control.stopping:
            store.mark_unfinished_skipped()
        stats = self.client.stats
        totals = store.add_run_stats(stats.requests, stats.retries, elapsed)
        write_failure_report(store, cfg.report_file)
        doc = summary(store, totals)
        if cfg.summary_path:
            Path(cfg.summary_path).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        text = human_summary(doc, store, cfg.report_file, f"this run: {stats.requests} requests in {elapsed:.1f} s")
        if self.control.halt is not None:
            return JobResult(self.control.halt.exit_code, doc, f"{text}\n{self.control.halt}")
        if self.control.interrupted:
            return JobResult(Interrupted.exit_code, doc, text)
        is_complete = doc["succeeded"] + doc["unchanged"] == doc["total"]
        return JobResult(0 if is_complete else 1, doc, text)


def _remove_state(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


async def run_job(
    config: JobConfig,
    *,
    control: Control | None = None,
    progress: Progress | None = None,
    on_invalid: Callable[[RowError], None] | None = None,
    stdin: IO[bytes] | None = None,
    console: Console | None = None,
) -> JobResult:
    """Run one migration job (the library entry point behind ``batcher run``)."""
    job = Job(config, control or Control(), progress, on_invalid, stdin, console)
    return await job.run()
