"""The engine: the only module that wires the stages together.

    Intake (pre-flight, rows to send) --> bounded queue --> N workers
        worker: Pacer -> Client (GET) -> decide() -> snapshot -> Client (PUT/PATCH) -> Store, results, progress

The queue holds at most ``concurrency`` rows, so memory is flat whatever the
input size, and the reader only runs ahead of the workers by that much. Every
``concurrency`` finished rows are committed as a group, so a ``kill -9`` can
lose at most that many outcomes plus those in flight: 2 x concurrency rows
sent again, at most. The request counters (``requests``, ``retries``,
``elapsed_s``) are committed with the same group commits, so a killed run's
requests still count in the job's summary.

Choices made here (the README repeats them):

- What to send is ``decide.decide``'s answer; the engine only carries it out,
  keeping the I/O order: the way back (snapshot) is durable before the PUT
  (the snapshots of rows ready together share one commit: run/snapshot_commits.py).
- A write whose outcome stays unknown (no 2xx, and no GET could show that it
  landed: its body sets a write-only credential, or the confirming GETs
  failed) ends ``failed`` with error ``unknown_outcome``; its message says it
  may have been applied. The snapshot's ``write_state`` says ``unknown``.
- Early stop on an operator mistake (``earlystop.py``): when the first rows
  sent all fail ``not_found``, or all fail with network errors, the job halts
  (exit 3) naming the likely mistake.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from ..core.config import JobConfig
from ..core.decide import READS_FIRST, Options, Refuse, Send, Unchanged, decide
from ..core.documents import carried_unknown, mask_secrets, project, shows
from ..core.earlystop import EarlyStop
from ..core.readings import Reading, read
from ..core.redaction import redacted_patch_json, scrub, secret_values
from ..core.rows import Row, RowError
from ..core.timings import Timeline
from ..errors import AuthError, HaltError, Interrupted
from ..http.client import CallResult, Client, wall_clock_from
from ..http.pacer import Pacer
from ..input.source import Source
from ..report.console import Console, Progress
from ..report.outputs import ResultsStream, human_summary, summary, write_failure_report
from ..state import normalised as normalised_tally
from ..state import runs, verify_log
from ..state.store import Store
from . import canary
from .announce import say_estimate
from .intake import Intake, Prepared
from .live import publish_live
from .pool import Control, pump, show_pause
from .snapshot_commits import SnapshotCommitter
from .writes import Pending, Redecide, after_of, merge_redecider, reading_of, refresher


@dataclass
class JobResult:
    """What a finished (or stopped) job reports."""

    exit_code: int
    summary: dict[str, Any]
    message: str = ""


class Job:
    """One ``batcher run``: prepare the state, send the rows, write the reports.

    Its collaborators are passed in (``run_job`` builds them); ``run`` keeps
    the order of I/O and the bookkeeping.
    """

    def __init__(
        self,
        config: JobConfig,
        store: Store,
        client: Client,
        pacer: Pacer,
        control: Control,
        *,
        console: Console,
        progress: Progress,
        results: ResultsStream,
        on_invalid: Callable[[RowError], None] | None = None,
        stdin: IO[bytes] | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        self.config = config
        # timings and outcomes in buckets, for the HTML report
        self.timeline = timeline or Timeline(wall_clock_from(control.clock))
        self.store = store
        self.client = client
        self.pacer = pacer
        self.control = control
        self.console = console
        self.progress = progress
        self.results = results
        self.stdin = stdin
        self.options = Options(allow_credential_reset=config.allow_credential_reset, force=config.force)
        self.snapshots = SnapshotCommitter(store)  # merge mode: snapshots of rows sent together, one commit
        self.intake = Intake(config, store, on_invalid or (lambda err: None), lambda: control.stopping)
        self.failures_this_run = 0
        self.early_stop = EarlyStop(config)
        self._counted = (0, 0, time.monotonic())  # requests, retries, clock at the last count
        self.is_prepared = False  # the state is this job's and pre-flight is done
        self.watch: canary.Watch | None = None  # run --canary: its rows' reads and outcomes (run/canary.py)
        self.is_canary_only = False  # --canary-only stopped the job after a clean canary
        self.left = verify_log.LeftRecords(store)  # replace/patch writes' answers, for batcher verify
        self.normalised = normalised_tally.Tally(store)  # rows whose write's answer holds other values (by path)

    # -- sending ----------------------------------------------------------------

    async def handle(self, item: Row | RowError) -> None:
        """One row from start to outcome: carry out what ``decide`` says."""
        if isinstance(item, RowError):
            self.finish(item, "failed", error="invalid", message=item.message, patch=item.patch)
            return
        cfg, row = self.config, item
        url = cfg.meeting_url(row.account_id or "", row.meeting_id)
        current, attempts, status = None, 0, None
        if cfg.mode in READS_FIRST:
            got = await self.client.call("GET", url)
            reading = reading_of(row.meeting_id, got, self.control.clock())  # the meeting asked for, or fail
            if isinstance(reading, CallResult):
                return self.finish_call(row, reading)
            current, attempts, status = reading.document, got.attempts, got.status
            if self.watch is not None:
                self.watch.read(row.number, current)
        decision = decide(cfg.mode, current, row.patch, self.options)
        if isinstance(decision, Unchanged):
            if current is not None:  # a resumed run may see the job's own pending/unknown write: it landed
                self.store.confirm_write(row.account_id or "", row.meeting_id, project(current))
            return self.finish(row, "unchanged", status=status, attempts=attempts)
        if isinstance(decision, Refuse):
            return self.finish(
                row, "failed", error=decision.error, message=decision.message, attempts=attempts, patch=row.patch
            )
        await self.send(row, url, decision, current, attempts)

    async def send(self, row: Row, url: str, send: Send, current: dict[str, Any] | None, attempts: int) -> None:
        """Carry out a ``Send``: the way back first (merge mode), then the write (run/writes.py)."""
        account = row.account_id or ""
        refresh = verify = None
        pending = Pending(row.meeting_id, current or {}, send.body, send.confirm)
        if current is not None:  # durable before the change is made (a group commit: counters go too)
            self.count_requests()
            await self.snapshots.save(account, row.meeting_id, row.number, project(current), mask_secrets(send.body))
            refresh = refresher(self.client, url, pending, self.redecider(row), self.control.clock)
        elif send.confirm is not None:
            verify = self.confirmer(url, send.confirm)
        result = await self.client.call(send.method, url, send.body, verify, refresh)
        result.attempts += attempts
        if self.watch is not None and current is not None:
            self.watch.built(row.number, pending.built_from)  # decided again after a wait: from this read
        is_unknown = not result.is_ok and result.is_unknown  # the client judged it (see client.call)
        if current is not None:
            if result.is_ok:
                after, stamp = after_of(pending, result, self.control.clock())
                self.store.mark_write(account, row.meeting_id, "landed", after, stamp)
            else:
                self.store.mark_write(account, row.meeting_id, "unknown" if is_unknown else "failed")
        elif result.is_ok:  # replace/patch: no snapshot; what the write left is kept for verify
            after, stamp = after_of(pending, result, self.control.clock())
            self.left.add(account, row.meeting_id, row.number, after, stamp)
        if pending.failed_read is not None and pending.failed_read.error == "auth" and not result.is_ok:
            result.status, result.error, result.message = (
                pending.failed_read.status,
                "auth",
                pending.failed_read.message,
            )  # the token was refused while reading again: halt (finish_call), the write stays unknown
        if pending.refused is not None and not result.is_ok and result.error != "auth":
            refused = pending.refused  # a fresh read stopped it: a conflict, a foreign or failed read
            error = "unknown_outcome" if is_unknown and refused.error != "conflict" else refused.error
            message = f"outcome unknown: {refused.message}" if error == "unknown_outcome" else refused.message
            return self.finish(row, "failed", error=error, message=message, attempts=result.attempts, patch=row.patch)
        if is_unknown and result.error != "auth":  # a bad token still halts the job (finish_call)
            result.error = "unknown_outcome"
            result.message = f"outcome unknown: {result.message}"
        elif result.status == 400 and current is not None:
            result.message += _carried_note(pending.body, row.patch, result.message)
        self.finish_call(row, result, self.normalised_paths(row, result))

    def normalised_paths(self, row: Row, result: CallResult) -> list[str]:
        """A 2xx whose answer (the meeting's) holds another value than the row sent at a path it set:
        still ``succeeded``; counted by path in the job's tally, named on the row's results line."""
        if not result.is_ok or result.data is None:
            return []
        answer = read(row.meeting_id, result.data, self.control.clock())
        return self.normalised.add(row.patch, answer.document) if isinstance(answer, Reading) else []

    def redecider(self, row: Row) -> Redecide:
        """After a wait: decide the row again on what the server holds now (``writes.merge_redecider``)."""
        return merge_redecider(row, self.config.mode, self.options, self.snapshots.save)

    def confirmer(self, url: str, expected: dict[str, Any]) -> Callable[[], Awaitable[bool | None]]:
        """For a write whose outcome is unknown: does GET show every value it sets? None: GET failed."""

        async def check() -> bool | None:
            got = await self.client.call("GET", url)
            if not got.is_ok or got.data is None:
                return None
            return shows(got.data, expected)  # whole: a PATCH may set ``status``, which project() drops

        return check

    def finish_call(self, row: Row, result: CallResult, normalised: list[str] | None = None) -> None:
        """Record a row whose outcome is the result of its last request (``normalised``: the paths
        its write's answer holds otherwise than sent)."""
        if result.is_ok:
            self.finish(row, "succeeded", status=result.status, attempts=result.attempts, normalised=normalised)
            return
        message = scrub(result.message, secret_values(row.patch))
        self.finish(
            row,
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
                    f"HTTP {result.status} on row {row.number} (meeting {row.meeting_id}): {message}. "
                    "Check the token and its Realtime permission; the job is resumable"
                )
            )

    def finish(
        self,
        row: Row | RowError,
        outcome: str,
        *,
        error: str | None = None,
        status: int | None = None,
        message: str | None = None,
        attempts: int = 0,
        patch: dict[str, Any] | None = None,
        normalised: list[str] | None = None,
    ) -> None:
        """Record one row's outcome (group-committed), stream it, count it."""
        self.timeline.row(outcome, error)
        if self.watch is not None:
            self.watch.finished(row.number, outcome, error)
        waiting = self.store.record(
            row.number,
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
            self.results.emit(
                row.number, row.meeting_id, row.account_id, outcome, status, attempts, normalised=normalised or None
            )
        self.progress.advance(outcome)
        if isinstance(row, Row) and (halt := self.early_stop.watch(outcome, error, self.progress.total)):
            self.control.halt_with(halt)
        if outcome != "failed":
            return
        self.console.debug(
            "row_failed", f"row {row.number}: {error}: {message}", row=row.number, error=error, status=status
        )
        if error != "auth":  # a bad token halts on its own; it is not the row's failure
            self.failures_this_run += 1
            limit = self.config.max_failures
            if limit is not None and self.failures_this_run > limit:
                self.control.halt_with(
                    HaltError(
                        f"stopped: more than {limit} rows failed (--max-failures); "
                        "see the report, fix the cause and re-run to resume"
                    )
                )

    def count_requests(self) -> None:
        """Hand the request counters since the last count to the store (committed with the next flush)."""
        stats, (requests, retries, then) = self.client.stats, self._counted
        now = time.monotonic()
        self.store.count_requests(stats.requests - requests, stats.retries - retries, now - then)
        self._counted = (stats.requests, stats.retries, now)

    def flush(self) -> None:
        """Group commit: outcomes and counters become durable, results reach their file."""
        self.count_requests()
        self.store.flush()
        self.results.flush()

    def heartbeat(self) -> None:
        """Commit stragglers and redraw progress (a few times a second)."""
        self.flush()
        show_pause(self.progress, self.pacer, self.control)
        publish_live(self.store, self.config, self.client.stats, self.pacer)  # for batcher status

    # -- the whole job ------------------------------------------------------------

    async def prepare(self) -> Prepared:
        """The start of the job, once (``Intake.prepare``): the state is this job's, a file is
        pre-flighted into it (in a thread: the loop stays free), the counts are known."""
        prepared = await self.intake.prepare(self._in_thread)
        self.is_prepared = True
        return prepared

    async def _in_thread(self, work: Callable[..., Any], **kwargs: Any) -> Any:
        """Run blocking ``work`` in a thread. A cancellation asks it to stop and waits for it:
        the Store's connection is never used by two threads at once."""
        task = asyncio.ensure_future(asyncio.to_thread(work, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self.control.stop.set()  # pre-flight checks it every STOP_CHECK_ROWS rows
            with contextlib.suppress(Exception):
                await task
            raise

    async def run(self) -> JobResult:
        """Prepare, send, report. Raises BatcherError for usage errors and halts.

        Cancelling it is a stop: workers are cancelled, unfinished rows become
        ``skipped``, state and counters are saved, then the cancellation goes on.
        """
        # The run is recorded once the state is known to be this job's (after prepare), and its end
        # is written after the wrap-up, once, however ``_run`` ends (runs.recording).
        with contextlib.ExitStack() as recorded:
            return await self._run(recorded)

    async def _run(self, recorded: contextlib.ExitStack) -> JobResult:
        cfg = self.config
        started = time.monotonic()
        try:
            prepared = await self.prepare()
            run = recorded.enter_context(runs.recording(self.store, self.timeline, "run", runs.describe(cfg)))
            now = self.timeline.now()  # the job's earlier starts count, whatever token this run has
            self.pacer.inherit(*runs.recent_activity(self.store.db, now - self.pacer.lookback_s, now), now)
            # results of rows committed by an earlier (killed) run, before anything is sent
            self.results.catch_up(lambda written: self.store.finished_rows(cfg.retry_failed, written))
            with Source(cfg.input, cfg.input_format, self.stdin, cfg.set_values, is_threaded=True) as source:
                if prepared.counts is not None and prepared.to_send is not None:  # a file: counted
                    self.progress.resume(prepared.counts, prepared.to_send)
                    say_estimate(self.console, cfg, prepared.to_send, progress=self.progress)
                rows = prepared.rows(source)
                if await self.canary_first(prepared, source, rows):
                    await pump(
                        rows, self.handle, cfg.concurrency, self.control, on_tick=self.heartbeat, ready=source.ready
                    )
        except BaseException as exc:
            # Cancelled, an edited input (exit 2), a crash: the job stops here, and its rows,
            # failure report and summary are still written before the error goes on.
            self.control.interrupted = self.control.interrupted or isinstance(exc, asyncio.CancelledError)
            self.control.stop.set()
            if self.is_prepared and not self.store.is_closed:
                with contextlib.suppress(Exception):
                    self.wrap_up(started)
            raise
        finally:
            if not self.store.is_closed:
                self.count_requests()
        result = self.wrap_up(started)
        run.exit_code = result.exit_code
        return result

    async def canary_first(self, prepared: Prepared, source: Source, rows: Iterator[Any]) -> bool:
        """``--canary N`` (run/canary.py): write and judge the canary's rows; True when the rest may go."""
        return await canary.first(self, prepared, source, rows, self._in_thread)

    def wrap_up(self, started: float) -> JobResult:
        """Mark what was not reached, write the report and summary, choose the exit code."""
        paths, store = self.config.paths, self.store
        elapsed = time.monotonic() - started
        if self.control.stopping or self.is_canary_only:
            self.timeline.row("skipped", count=store.mark_unfinished_skipped())
        self.count_requests()
        totals = store.end_run()
        write_failure_report(store, paths.report_file)
        doc = summary(store, totals)
        if paths.summary_path:
            Path(paths.summary_path).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        this_run = f"this run: {self.client.stats.requests} requests in {elapsed:.1f} s"
        text = human_summary(doc, store, paths.report_file, this_run)
        if self.control.halt is not None:
            return JobResult(self.control.halt.exit_code, doc, f"{text}\n{self.control.halt}")
        if self.control.interrupted:
            return JobResult(Interrupted.exit_code, doc, text)
        if self.is_canary_only:  # stopped on purpose after a clean canary, so that a person can look
            text += "\n  --canary-only: stopped after a clean canary; run the same command without it to go on"
            return JobResult(0 if doc["failed"] == 0 else 1, doc, text)
        is_complete = doc["succeeded"] + doc["unchanged"] == doc["total"]
        return JobResult(0 if is_complete else 1, doc, text)


def _carried_note(body: dict[str, Any], patch: dict[str, Any], message: str) -> str:
    """Name the fields of a rejected PUT that the row did not set but GET showed (carried)."""
    named = [path for path in carried_unknown(body, patch) if path.rsplit(".", 1)[-1] in message]
    if not named:
        return ""
    return f" ({', '.join(named)}: not in the row; carried from the meeting as GET showed it)"


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
    control = control or Control()
    console = console or Console(quiet=True)
    progress = progress or Progress(console=console)
    paths = config.paths  # the store and the outputs get their files, not the job
    store = Store.open(paths.state_file)
    results: ResultsStream | None = None
    try:
        results = ResultsStream(paths.results_path, on_broken=control.output_lost)
        pacer = Pacer(config.pacing.rate, control.clock, control.sleep)
        timeline = Timeline(wall_clock_from(control.clock))
        async with Client(config.http, pacer, control.sleep, on_retry=console.debug, timeline=timeline) as client:
            job = Job(
                config,
                store,
                client,
                pacer,
                control,
                console=console,
                progress=progress,
                results=results,
                on_invalid=on_invalid,
                stdin=stdin,
                timeline=timeline,
            )
            control.flushers.append(job.flush)
            return await job.run()
    finally:
        if results is not None:
            results.close()
        progress.close()
        store.close()
