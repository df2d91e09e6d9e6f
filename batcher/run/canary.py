"""``run --canary N``: a few rows written first, each read back and judged on every field.

An API can answer 200 and not do what was asked (a field the account does not support keeps its
old value, a write resets a neighbour). The canary is the first N rows still to send, and the first
such row of every other account among the input's rows (an account may behave differently): they
go through the engine's own ``handle`` (the same read, decision, snapshot and write as every row),
then each meeting is read back with a GET and compared with what it must hold
(``core.canary.expected_after``/``judge``): merge jobs with the document their write was decided
from (the engine's read; the canary's own GET before the write where the engine made none), patch
jobs with a GET made just before the write, replace jobs with the row over the spec's defaults.
Any difference halts the job (exit 3) before another row is written, naming the meeting and each
path with what was sent and what the server holds.

A file job knows its rows at pre-flight (the state): the canary's row numbers are chosen there and
read from the file in a pass of their own (re-validated like every row sent). A stdin job cannot
look ahead: its canary is the first N valid rows read, whatever their accounts.

A clean canary is kept in the state (meta ``canary``, with the job's identity), so a resumed job
does not judge it again; its rows are done like any other (``succeeded``/``unchanged``) and are not
sent again. A ``--force`` run with another input or options judges a new one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.canary import Verdict, expected_after, judge
from ..core.config import JobConfig
from ..core.rows import Row, RowError
from ..errors import HaltError
from ..http.client import CallResult, Client
from ..input.source import Source
from ..report.console import Console
from ..state.store import Store
from .intake import Intake, InThread, Prepared
from .pool import TICK, Control, pump
from .writes import reading_of

META_KEY = "canary"


class CanaryHalt(HaltError):
    """The canary found a meeting that does not hold what its write asked for (exit 3)."""


@dataclass
class Watch:
    """What the engine tells the canary about its rows (``Job.watch``): the read each write was
    decided from, and each row's outcome."""

    rows: set[int]
    reads: dict[int, dict[str, Any]] = field(default_factory=dict)
    outcomes: dict[int, tuple[str, str | None]] = field(default_factory=dict)

    def read(self, number: int, document: dict[str, Any]) -> None:
        """The engine read the meeting of row ``number`` (merge mode) before deciding its write."""
        if number in self.rows:
            self.reads.setdefault(number, document)

    def built(self, number: int, document: dict[str, Any]) -> None:
        """Row ``number``'s write was (finally) built from ``document``: a read made after a wait,
        with a colleague's change merged in, replaces the first read as what the write must keep."""
        if number in self.rows:
            self.reads[number] = document

    def finished(self, number: int, outcome: str, error: str | None) -> None:
        """Row ``number`` ended as ``outcome``."""
        if number in self.rows:
            self.outcomes[number] = (outcome, error)


class Engine(Protocol):
    """The parts of the engine's ``Job`` the canary uses."""

    config: JobConfig
    store: Store
    client: Client
    control: Control
    console: Console
    intake: Intake
    watch: Watch | None
    is_canary_only: bool

    async def handle(self, item: Row | RowError) -> None: ...

    def finish_call(self, row: Row, result: CallResult) -> None: ...

    def heartbeat(self) -> None: ...

    def flush(self) -> None: ...


async def first(job: Engine, prepared: Prepared, source: Source, rows: Iterator[Any], in_thread: InThread) -> bool:
    """The canary of ``job`` before its other rows (``Job.canary_first``): True when the rest may go
    (no canary, one judged clean before, or clean now without ``--canary-only``)."""
    cfg = job.config
    if not cfg.canary or is_done(job.store):
        return True
    if prepared.counts is None:  # stdin: the first N rows read
        picked = await take_first(rows, cfg.canary, source.ready, job.control.stop)
    else:  # a file: chosen from the state, read in a pass of their own (off the loop)
        numbers = set(job.store.canary_rows(cfg.canary, cfg.retry_failed))
        picked = await in_thread(_from_file, job=job, numbers=numbers) if numbers else []
    if not await Canary(job).run(picked):
        return False
    job.is_canary_only = cfg.canary_only
    return not cfg.canary_only


def _from_file(job: Engine, numbers: set[int]) -> list[Row]:
    cfg = job.config
    with Source(cfg.input, cfg.input_format, None, cfg.set_values) as source:
        return pick_from_file(job.intake.rows_to_send(source), numbers)


def is_done(store: Store) -> bool:
    """Whether this job's canary was already judged clean (a resumed job goes straight on). A job
    whose identity changed since (``--force`` with another input or options) judges a new one."""
    found = store.get_meta(META_KEY)
    if not isinstance(found, dict) or not found.get("clean"):
        return False
    return bool(found.get("job") == store.get_meta("fingerprint"))


async def take_first(
    rows: Iterator[Any], n: int, ready: Callable[[asyncio.Event], Awaitable[bool]] | None, stop: asyncio.Event
) -> list[Any]:
    """A stream's canary: items read until ``n`` valid rows are among them (invalid rows read
    meanwhile come along, to be recorded as they would be); the rest stays in ``rows``."""
    taken: list[Any] = []
    valid = 0
    while valid < n and not stop.is_set():
        if ready is not None and not await ready(stop):
            break
        item = next(rows, None)
        if item is None:
            break
        if item is TICK:
            await asyncio.sleep(0)
            continue
        taken.append(item)
        valid += isinstance(item, Row)
    return taken


def pick_from_file(rows: Iterator[Any], numbers: set[int]) -> list[Row]:
    """A file's canary: the rows numbered ``numbers`` from a send pass of their own (blocking: run
    it in a thread), stopping once every one is found."""
    found: list[Row] = []
    for item in rows:
        if item is TICK or not isinstance(item, Row) or item.number not in numbers:
            continue
        found.append(item)
        if len(found) == len(numbers):
            break
    return found


class Canary:
    """Writes the canary's rows through the engine, reads each back, judges it."""

    def __init__(self, job: Engine) -> None:
        self.job = job
        self.verdicts: list[tuple[Row, Verdict]] = []

    async def run(self, items: list[Any]) -> bool:
        """Send ``items`` (rows, and invalid rows read among them); True when every judged meeting
        holds what was asked (the job may go on), False when the job halted."""
        job = self.job
        numbers = {item.number for item in items if isinstance(item, Row)}
        job.watch = Watch(numbers)
        try:
            await pump(iter(items), self.one, job.config.concurrency, job.control, on_tick=job.heartbeat)
        finally:
            job.watch = None
        job.flush()
        if job.control.stopping:
            return False
        judged = len(self.verdicts)
        if numbers and not judged:  # nothing was written and read back: nothing is proven yet
            job.control.halt_with(
                CanaryHalt(
                    f"stopped by the canary: none of its {len(numbers)} rows could be written and read back "
                    "(see the failure report); nothing more was written. Fix the cause and re-run the same command"
                )
            )
            return False
        unjudged = sorted({path for _row, verdict in self.verdicts for path in verdict.unjudged})
        accounts = len({row.account_id for row, _verdict in self.verdicts})
        text = (
            f"canary: {judged} of {len(numbers)} rows written and read back ({accounts} account(s)): "
            "every field as sent"
        )
        if unjudged:
            text += f"; not judged (a replace job does not know them): {', '.join(unjudged)}"
        job.console.say("canary", text, judged=judged, rows=len(numbers), unjudged=unjudged)
        job.store.set_meta(
            META_KEY,
            {"clean": True, "rows": sorted(numbers), "judged": judged, "job": job.store.get_meta("fingerprint")},
        )
        return True

    async def one(self, item: Row | RowError) -> None:
        """One canary row: read (merge and patch), write through the engine, read back, judge."""
        job = self.job
        if not isinstance(item, Row):
            return await job.handle(item)
        cfg, row = job.config, item
        url = cfg.meeting_url(row.account_id or "", row.meeting_id)
        before: dict[str, Any] | None = None
        if cfg.mode != "replace":  # what must stay: PATCH reads nothing first, and a merge may be decided
            # from a listed item (no GET the canary can watch); the engine's own read wins where it made one
            got = await job.client.call("GET", url)
            reading = reading_of(row.meeting_id, got, job.control.clock())
            if isinstance(reading, CallResult):
                return job.finish_call(row, reading)
            before = reading.document
        await job.handle(row)
        watch = job.watch
        outcome, _error = watch.outcomes.get(row.number, ("failed", None)) if watch else ("failed", None)
        if outcome not in ("succeeded", "unchanged"):
            return  # a failed row is reported as any failed row; there is nothing to judge
        if watch is not None:
            before = watch.reads.get(row.number, before)
        got = await job.client.call("GET", url)
        back = reading_of(row.meeting_id, got, job.control.clock())
        if isinstance(back, CallResult):
            return job.control.halt_with(
                CanaryHalt(
                    f"canary: meeting {row.meeting_id} (row {row.number}) was written but could not be read back "
                    f"({back.message}); nothing more was written. Re-run the same command to judge the canary again"
                )
            )
        verdict = judge(cfg.mode, expected_after(cfg.mode, before, row.patch), back.document)
        self.verdicts.append((row, verdict))
        if verdict.is_clean:
            return None
        paths = "; ".join(d.text() for d in verdict.differences)
        job.console.say(
            "canary_difference",
            f"canary: meeting {row.meeting_id} (row {row.number}) does not hold what was written: {paths}",
            row=row.number,
            meeting_id=row.meeting_id,
            paths=[d.path for d in verdict.differences],
        )
        job.control.halt_with(
            CanaryHalt(
                f"stopped by the canary: meeting {row.meeting_id} (row {row.number}, account {row.account_id}) "
                f"answered 2xx but does not hold what was written: {paths}. Nothing more was written; "
                "the canary's rows are in the state (rollback undoes them)"
            )
        )
