"""``batcher rollback --state FILE``: PUT back the before-state of every meeting a job changed.

Which meetings a rollback touches
---------------------------------
The state file keeps, per meeting the job tried to write in merge mode, a
snapshot: ``before`` (the meeting as GET showed it before the job's first write;
replaced by a later write's only while no write of the job may have landed),
``after`` (what the job's *latest* write put, credentials stripped),
``write_state`` (did that latest write land: ``landed``, ``unknown``,
``pending`` = killed before its outcome was committed, or ``failed``),
``maybe_landed`` (sticky: some write of the job landed or may have),
``landed_after`` (the last write that landed or may have: it stays when a
newer write fails) and ``seq`` (which write of the job that is; every new
write bumps it).

- A snapshot none of whose writes may have landed (every one ``failed``) is not
  a change of the job: it is not counted, never read, never restored and never
  a conflict.
- Every other snapshot is judged by reading the meeting (GET) and comparing it
  with ``before``, ``after`` and ``landed_after`` (``decide.restore``):

  ===========================  =====================  ======================  ======================
  the server now holds         latest write landed    unknown / pending       failed, after an
                                                                              earlier write that may
                                                                              have landed
  ===========================  =====================  ======================  ======================
  ``before``                   unchanged              unchanged (it never     unchanged
                                                      landed, or was undone)
  ``after``/``landed_after``   restore                restore                 restore
  (a write of the job)
  anything else                conflict; ``--force``  conflict, *even with*   conflict, *even with*
                               restores               ``--force``             ``--force``
  ===========================  =====================  ======================  ======================

  With an unknown outcome and a meeting showing neither state, nothing shows that
  the job changed it at all: the difference may be a colleague's edit made on the
  before-state, and restoring would destroy it with no change of the job to undo.
  The last column is a meeting the job wrote (that write may have landed), then
  tried again (``run --force`` with a changed input, ``run --retry-failed``) and
  failed: a meeting showing the earlier write (``landed_after``) is restored; one
  showing something else may hold a colleague's edit: reported (``conflict``)
  for a person to decide, never overwritten.
- Restoring PUTs the whole before-document. A before-state with storage
  credentials cannot be restored (GET never returned them): ``credential_guard``
  unless ``--allow-credential-reset``.
- A rollback outcome counts for the ``seq`` it judged. A meeting restored (or
  found as before) is not judged again by a resumed or repeated rollback, until
  the job writes it again (``run --retry-failed`` after a failed write, or
  ``run --force`` with a changed input): its seq moves on and the next rollback
  judges it afresh. Conflicts and errors are judged again by every rollback.
  Before its PUT a restore is kept as ``restoring``: a rollback killed after the
  PUT landed finds, when resumed, the meeting as before and counts it restored;
  so does the next rollback after a restore that failed ``unknown_outcome``.
- Replace- and patch-mode jobs keep no before-state (nothing was read before
  writing): their rollback is refused (exit 2) with a sentence saying so, never
  reported as "0 meetings changed". Should those modes keep snapshots one day,
  rollback uses them like any other (the refusal is keyed on "no snapshots").
- Rollback goes to the base URL, app id and account recorded by the job. One
  given by flag or environment that differs is refused (exit 2, naming both)
  unless ``--force``; without flag or environment the recorded one is used.

Rollback reports like ``run``: ``--report`` (failures; ``.csv`` for CSV),
``--results FILE|-`` (one line per judged meeting, with ``error`` when it was
not restored; exactly once across kills for a file), ``--summary-json``,
``--max-failures N`` (exit 3). Progress is kept in the state file, so a
rollback resumes too.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..core.config import DEFAULT_BASE_URL, JobConfig
from ..core.decide import Options, Refuse, Send, Unchanged, restore
from ..core.documents import project, same
from ..core.readings import Reading
from ..core.timings import Timeline
from ..errors import AuthError, HaltError, UsageError
from ..http.client import CallResult, Client, wall_clock_from
from ..http.pacer import Pacer
from ..report.console import Console, Progress
from ..report.outputs import ResultsStream, write_report
from ..run.pool import Control, pump, show_pause
from ..run.writes import Pending, Redecide, after_of, reading_of, refresher
from ..state import rollback_log, runs, verify_log
from ..state.rollback_log import SnapshotRecord
from ..state.store import Store

# Snapshot classes a rollback judges (see rollback_log.tally): the job's latest write landed; its
# outcome is unknown (or was never recorded); it failed after an earlier write that may have landed.
GROUPS = ("landed", "unknown", "earlier")
TARGET_FIELDS = {"base_url": "base URL", "app_id": "app id", "account_id": "account"}


def resolve_target(
    recorded: dict[str, Any] | None, given: dict[str, str | None], *, force: bool
) -> tuple[dict[str, str | None], list[str]]:
    """Where the rollback goes: the job's recorded base URL, app id and account.

    ``given`` holds what a flag or the environment named (None: nothing given).
    Returns (target, differences); differences are sentences naming both
    values, and only when ``force`` (else ``UsageError`` is raised). An account
    given when the job recorded none is used as is: every snapshot carries its
    own account, so it never changes a URL. An app id given for a job that had
    none is a difference (it changes the path). With no recorded job (a state
    from before fingerprints), what is given is used.
    """
    recorded = recorded or {}
    target: dict[str, str | None] = {}
    differences = []
    for key, label in TARGET_FIELDS.items():
        old, new = recorded.get(key), given.get(key)
        if key == "base_url":
            old = old.rstrip("/") if old else None
            new = new.rstrip("/") if new else None
        # An app id changes the path even when the job had none; an account never does (snapshots carry theirs).
        if new is None or new == old or (old is None and key != "app_id") or not recorded:
            target[key] = old if new is None else new
            continue
        used = old if old is not None else "none (the /realtimekit/ path)"
        differences.append(f"{label}: the job used {used}, this rollback was given {new}")
        target[key] = new
    if differences and not force:
        raise UsageError(
            "rollback goes to the job's own server: "
            + "; ".join(differences)
            + ". Drop the flag or environment variable to use the job's, or pass --force to roll back against the one given"
        )
    target["base_url"] = target["base_url"] or DEFAULT_BASE_URL
    return target, differences


def no_way_back(fingerprint: dict[str, Any] | None, snapshots: int) -> str | None:
    """Why this job cannot be rolled back (replace/patch mode with no snapshots), or None."""
    mode = (fingerprint or {}).get("mode", "merge")
    if mode == "merge" or snapshots:
        return None
    return (
        f"this job ran in {mode} mode, which writes without reading the meeting first, so it kept no "
        "before-state and there is nothing to roll back to. Restore the meetings from a backup, or with a "
        "new job that sets the old values; a job in --mode merge (the default) keeps a way back"
    )


@dataclass
class RollbackResult:
    """Exit code, this run's counts by outcome, the summary document and text."""

    exit_code: int
    counts: Counter[str]
    message: str
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)


class Rollback:
    """Judges and restores snapshots one meeting at a time."""

    def __init__(
        self,
        config: JobConfig,
        store: Store,
        control: Control,
        progress: Progress,
        client: Client,
        results: ResultsStream,
        timeline: Timeline | None = None,
    ) -> None:
        self.config = config
        # timings and outcomes in buckets, for the HTML report
        self.timeline = timeline or Timeline(wall_clock_from(control.clock))
        self.store = store
        self.control = control
        self.progress = progress
        self.client = client
        self.results = results
        self.counts: Counter[str] = Counter()
        self.failures_this_run = 0
        self._counted = (0, 0, time.monotonic())  # requests, retries, clock at the last commit of counters

    def record(
        self,
        snap: SnapshotRecord,
        outcome: str,
        error: str | None = None,
        status: int | None = None,
        message: str = "",
        attempts: int = 0,
    ) -> None:
        """Keep one meeting's outcome and the requests so far (committed at once), then stream and count it."""
        requests, retries, then = self._counted
        stats, now = self.client.stats, time.monotonic()
        self._counted = (stats.requests, stats.retries, now)
        # the counters ride on the outcome's commit: a killed rollback's requests are not forgotten
        rollback_log.record(
            self.store,
            snap,
            outcome,
            error,
            status,
            message,
            attempts,
            (stats.requests - requests, stats.retries - retries, now - then),
        )
        self.timeline.row(outcome, error)
        self.store.flush()  # the timeline's buckets (Store.flush_extras), right after the outcome's commit
        self.results.emit(snap.row, snap.meeting_id, snap.account_id, outcome, status, attempts, error)
        self.results.flush()  # after the commit: a line never names an outcome a kill could undo
        self.counts[error or outcome] += 1
        self.progress.advance(outcome)
        if outcome != "failed" or error == "auth":
            return
        self.failures_this_run += 1
        limit = self.config.max_failures
        if limit is not None and self.failures_this_run > limit:
            self.control.halt_with(
                HaltError(f"stopped: more than {limit} meetings could not be restored (--max-failures); see the report")
            )

    def uncounted(self) -> tuple[int, int, float]:
        """Requests, retries and seconds since the last committed outcome (the run's tail)."""
        requests, retries, then = self._counted
        self._counted = (self.client.stats.requests, self.client.stats.retries, time.monotonic())
        return self.client.stats.requests - requests, self.client.stats.retries - retries, time.monotonic() - then

    async def handle(self, snap: SnapshotRecord) -> None:
        """Judge one meeting and restore it if that is safe."""
        url = self.config.meeting_url(snap.account_id, snap.meeting_id)
        got = await self.client.call("GET", url)
        reading = reading_of(snap.meeting_id, got, self.control.clock())  # the meeting asked for, or fail
        if isinstance(reading, CallResult):
            self.record(snap, "failed", got.error or "api_error", got.status, got.message, got.attempts)
            if got.error == "auth":
                self.control.halt_with(AuthError(f"HTTP {got.status}: {got.message}"))
            return
        options = Options(force=self.config.force, allow_credential_reset=self.config.allow_credential_reset)
        decision = restore(snap.write_state, snap.before, snap.after, reading.document, options, snap.landed_after)
        if isinstance(decision, Unchanged):  # as before: what the rollback leaves there, for verify
            left = (project(reading.document), reading.updated_at)
            verify_log.record_restored(self.store, snap.account_id, snap.meeting_id, snap.row, snap.seq, *left)
            if snap.restoring:
                # This rollback's own PUT, sent by a run stopped before its outcome was kept, landed:
                # the meeting was restored, not found as before.
                return self.record(snap, "succeeded", status=got.status, attempts=got.attempts)
            return self.record(snap, "unchanged", status=got.status, attempts=got.attempts)
        if isinstance(decision, Refuse):
            status = got.status if decision.error == "conflict" else None
            return self.record(snap, "failed", decision.error, status, decision.message, got.attempts)
        # Kept before the PUT: a rollback killed after it landed knows, when resumed, that it restored the meeting.
        rollback_log.record(self.store, snap, "restoring", None, None, "", 0)
        # after any wait, read again and judge again: a colleague's edit made meanwhile is not overwritten
        pending = Pending(snap.meeting_id, reading.document, decision.body, decision.confirm)
        refresh = refresher(self.client, url, pending, self._redecider(snap, options), self.control.clock)
        put = await self.client.call(decision.method, url, decision.body, None, refresh)
        attempts = got.attempts + put.attempts
        if put.is_ok:
            after, stamp = after_of(pending, put, self.control.clock())  # the restore's answer, for verify
            verify_log.record_restored(self.store, snap.account_id, snap.meeting_id, snap.row, snap.seq, after, stamp)
            return self.record(snap, "succeeded", status=put.status, attempts=attempts)
        failed_read = pending.failed_read
        if failed_read is not None and failed_read.error == "auth":
            put.status, put.error, put.message = failed_read.status, "auth", failed_read.message
        # a restore that may have landed stays "restoring" for the next rollback (see rollback_log.todo)
        error = "unknown_outcome" if put.is_unknown else put.error
        message = put.message
        if pending.refused is not None and put.error != "auth":
            refused = pending.refused  # judged again after a wait: a conflict, a foreign or failed read
            error = "unknown_outcome" if put.is_unknown and refused.error != "conflict" else refused.error
            message = f"outcome unknown: {refused.message}" if error == "unknown_outcome" else refused.message
        self.record(snap, "failed", error, put.status, message, attempts)
        if put.error == "auth":
            self.control.halt_with(AuthError(f"HTTP {put.status}: {put.message}"))

    def _redecider(self, snap: SnapshotRecord, options: Options) -> Redecide:
        """After a wait: judge the meeting again on what it shows now (``restore``, as the first time)."""

        async def redecide(fresh: Reading, pending: Pending) -> Unchanged | Refuse | Send | None:
            again = restore(snap.write_state, snap.before, snap.after, fresh.document, options, snap.landed_after)
            if isinstance(again, Send) and same(again.body, pending.body):
                return None  # still as the job left it: the same restore goes again
            return again

        return redecide


async def rollback_job(
    config: JobConfig,
    *,
    control: Control | None = None,
    console: Console | None = None,
    given: dict[str, str | None] | None = None,
) -> RollbackResult:
    """Undo the job whose state is ``config.state_file``.

    ``given``: the base URL, app id and account named by flags or environment
    (None values: not given, use the job's). Without it, ``config``'s own
    values count as given.
    """
    control = control or Control()
    console = console or Console(quiet=True)
    if given is None:
        given = {key: getattr(config, key) for key in TARGET_FIELDS}
    store = Store.open(config.state_file)
    started = time.monotonic()
    results: ResultsStream | None = None
    try:
        results = ResultsStream(config.results_path)
        fingerprint = store.get_meta("fingerprint")
        target, differences = resolve_target(fingerprint, given, force=config.force)
        for difference in differences:
            console.say("warning", f"batcher: warning: --force: {difference}")
        # ignore: a real hole, left for rollback's owner: target's base_url is None when neither the job nor
        # the flags named one (JobConfig.base_url is a str)
        config = dataclasses.replace(config, **target)  # type: ignore[arg-type]
        tally = rollback_log.tally(store.db)
        if why := no_way_back(fingerprint, sum(t["meetings"] for t in tally.values())):
            raise UsageError(why)
        results.catch_up(lambda written: rollback_log.finished(store.db, written))
        progress = console.progress(sum(tally[g]["meetings"] for g in GROUPS), label="meetings")
        judged = sum(tally[g]["succeeded"] + tally[g]["unchanged"] for g in GROUPS)
        progress.done = progress.initial = judged
        pacer = Pacer(config.pacing.rate, control.clock, control.sleep)
        timeline = Timeline(wall_clock_from(control.clock))
        now = timeline.now()  # the job's earlier starts count, whatever token this rollback has
        pacer.inherit(*runs.recent_activity(store.db, now - pacer.lookback_s, now), now)
        with runs.recording(store, timeline, "rollback", runs.describe(config)) as run:
            async with Client(config.http, pacer, control.sleep, on_retry=console.debug, timeline=timeline) as client:
                rollback = Rollback(config, store, control, progress, client, results, timeline)
                tick = lambda: show_pause(progress, pacer, control)  # noqa: E731
                await pump(rollback_log.todo(store.db), rollback.handle, config.concurrency, control, tick)
            progress.close()
            report_path = config.report_path or f"{config.state_file}.rollback.failures.jsonl"
            failed = write_report(rollback_log.failures(store.db), report_path)
            doc = _summary(store, *rollback.uncounted())
            if config.summary_path:
                Path(config.summary_path).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
            this_run = f"this run: {sum(rollback.counts.values())} meetings judged, {client.stats.requests} requests in {time.monotonic() - started:.1f} s"
            text = f"{human_summary(doc)}\n  {this_run}\n  report: {report_path}   state: {store.path}"
            exit_code = control.halt.exit_code if control.halt else 130 if control.interrupted else 1 if failed else 0
            run.exit_code = exit_code
    finally:
        if results is not None:
            results.close()
        store.close()
    if control.halt is not None:
        text = f"{text}\n{control.halt}"
    return RollbackResult(exit_code, rollback.counts, text, doc)


def _summary(store: Store, requests: int, retries: int, elapsed_s: float) -> dict[str, Any]:
    """The ``--summary-json`` document: run's keys (meetings instead of rows) plus the split by write outcome."""
    rollback_log.add_stats(store, (requests, retries, elapsed_s))
    stats = rollback_log.stats(store.db)
    tally = rollback_log.tally(store.db)
    by_write: dict[str, dict[str, Any]] = {}
    for group in GROUPS:
        t = tally[group]
        judged = {k: n for k, n in t.items() if k not in ("meetings", "succeeded", "unchanged", "pending")}
        by_write[group] = {
            "meetings": t["meetings"],
            "restored": t["succeeded"],
            "unchanged": t["unchanged"],
            "failed": dict(sorted(judged.items())),
            "pending": t["pending"],
        }
    return {
        "total": sum(g["meetings"] for g in by_write.values()),
        "succeeded": sum(g["restored"] for g in by_write.values()),
        "unchanged": sum(g["unchanged"] for g in by_write.values()),
        "failed": sum(sum(g["failed"].values()) for g in by_write.values()),
        "skipped": sum(g["pending"] for g in by_write.values()),
        **stats,
        **by_write,
        "failed_writes_not_counted": tally["failed"]["meetings"],
    }


def human_summary(doc: dict[str, Any]) -> str:
    """The rollback summary on stderr: how many writes landed or are unknown, and what became of each."""
    lines = [
        f"batcher rollback: {doc['total']} meetings changed by the job - {doc['succeeded']} restored, "
        f"{doc['unchanged']} already as before, {doc['failed']} failed, {doc['skipped']} not judged yet",
    ]
    for name, group, as_before in (
        ("written", doc["landed"], "already as before"),
        ("write outcome unknown", doc["unknown"], "not changed (the write never landed or was undone)"),
        ("latest write failed, an earlier one may have landed", doc["earlier"], "as before"),
    ):
        if not group["meetings"]:
            continue
        failed = ", ".join(f"{n} {kind}" for kind, n in group["failed"].items()) or "0 failed"
        pending = f", {group['pending']} not judged yet" if group["pending"] else ""
        lines.append(
            f"  {name}: {group['meetings']} - {group['restored']} restored, {group['unchanged']} {as_before}, {failed}{pending}"
        )
    if doc["failed_writes_not_counted"]:
        lines.append(
            f"  {doc['failed_writes_not_counted']} meetings whose write failed are not changes of the job: left alone"
        )
    lines.append(
        f"  {doc['requests']} requests ({doc['retries']} retries) over every rollback of this job, {doc['elapsed_s']:.1f} s"
    )
    return "\n".join(lines)
