"""Each run of a job (``run`` or ``rollback``) as one row of the state: start, end, exit code, options.

A run is written when it starts (after the state was found to be this job's)
and again when it ends, with its exit code, in the same transaction as its last
timeline buckets: ``with recording(store, timeline, "run", options) as run:``
does both, and writes the end exactly once on every way out of its body (the
exit code the body set, or the one the escaping exception maps to). A run killed
with ``kill -9`` (or a power cut) never writes its end: the report shows it as
"killed / unknown" once its process is gone. The run's timeline buckets ride on
every commit of the store from its start (``Store.flush_extras``).

What a run was told is kept (rate, concurrency, retries...): never the token,
and a ``--set`` credential only as ``***``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from .._version import __version__
from ..core.config import JobConfig
from ..core.schema import masked_set_argument
from ..core.timings import Bucket, Timeline, load_buckets
from ..errors import BatcherError
from .readers import has_table
from .store import Store

_SAVE_BUCKET = "INSERT OR REPLACE INTO timeline (run, start, width, data) VALUES (?, ?, ?, ?)"


class RunRecord(NamedTuple):
    """One row of the ``runs`` table."""

    id: int
    kind: str
    started: float
    ended: float | None
    exit_code: int | None
    pid: int | None
    options: dict[str, Any]


def describe(config: JobConfig) -> dict[str, Any]:
    """What a run was told, fit for a report: no token, credentials given by ``--set`` as ``***``."""
    rate = config.rate
    shown_set = []
    for path, value in config.set_values:
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        shown_set.append(masked_set_argument(f"{path}={text}"))
    return {
        "version": __version__,
        "mode": config.mode,
        "base_url": config.base_url,
        "app_id": config.app_id,
        "account_id": config.account_id,
        "rate": str(rate) if rate is not None else "none",
        "rate_per_s": rate.max_requests / rate.window_s if rate is not None else None,
        "concurrency": config.concurrency,
        "max_attempts": config.max_attempts,
        "timeout_s": config.timeout_s,
        "max_failures": config.max_failures,
        "retry_failed": config.retry_failed,
        "force": config.force,
        "skip_invalid": config.skip_invalid,
        "allow_credential_reset": config.allow_credential_reset,
        "set": shown_set,
    }


def open_run(store: Store, timeline: Timeline, kind: str, options: dict[str, Any]) -> int:
    """Record the start of a run (committed at once), point ``timeline`` at it and have every commit of
    ``store`` carry its buckets from now on; returns the run's id."""
    db = store.db
    cur = db.execute(
        "INSERT INTO runs (kind, started, pid, options) VALUES (?, ?, ?, ?)",
        (kind, timeline.now(), os.getpid(), orjson.dumps(options).decode()),
    )
    run_id = cur.lastrowid
    assert run_id is not None  # set by every INSERT
    (first,) = db.execute("SELECT MIN(started) FROM runs WHERE kind = ?", (kind,)).fetchone()
    timeline.start(run_id, first)  # bucket widths follow the job's age, not this run's
    store.flush_extras.append(lambda: [(_SAVE_BUCKET, bucket) for bucket in timeline.changed()])
    return run_id


def close_run(store: Store, timeline: Timeline, exit_code: int) -> None:
    """Write the run's end and exit code, with its last buckets, in one commit (no-op for a run never opened)."""
    if timeline.run_id is not None:
        end = ("UPDATE runs SET ended = ?, exit_code = ? WHERE id = ?", (timeline.now(), exit_code, timeline.run_id))
        store.flush(end)  # with the timeline's last buckets (Store.flush_extras)


@dataclass(slots=True)
class Run:
    """The run ``recording`` opened: its id, and the exit code its end will record."""

    id: int
    exit_code: int = 0  # set by the body before it ends normally; an escaping exception decides instead


@contextlib.contextmanager
def recording(store: Store, timeline: Timeline, kind: str, options: dict[str, Any]) -> Iterator[Run]:
    """Record a run of ``kind`` (``open_run``) for the body of the ``with``, and its end once, on every path.

    A normal end records ``run.exit_code``; an exception (a halt, ``Interrupted``,
    a cancellation, ``KeyboardInterrupt``, a crash) records the code it maps to
    (``exit_code_of``) and goes on: a failure to write that end is not allowed to hide it.
    """
    run = Run(open_run(store, timeline, kind, options))
    try:
        yield run
    except BaseException as exc:
        if not store.is_closed:
            with contextlib.suppress(Exception):
                close_run(store, timeline, exit_code_of(exc))
        raise
    close_run(store, timeline, run.exit_code)


def exit_code_of(exc: BaseException) -> int:
    """The exit code a command ends with when ``exc`` escapes it (as cli.py maps it)."""
    if isinstance(exc, BatcherError):
        return exc.exit_code
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return 130
    return 2


def read_runs(db: sqlite3.Connection) -> list[RunRecord]:
    """Every run of the job, oldest first (empty for a state from before runs were kept)."""
    if not has_table(db, "runs"):
        return []
    return [
        RunRecord(id, kind, started, ended, code, pid, orjson.loads(options))
        for id, kind, started, ended, code, pid, options in db.execute(
            "SELECT id, kind, started, ended, exit_code, pid, options FROM runs ORDER BY id"
        )
    ]


def read_timeline(db: sqlite3.Connection) -> list[tuple[int, int, int, Bucket]]:
    """Every timeline bucket of the job as (run id, start, width, bucket), by start (empty for a
    state from before runs were kept)."""
    if not has_table(db, "timeline"):
        return []
    return list(load_buckets(db.execute("SELECT run, start, width, data FROM timeline ORDER BY start").fetchall()))


PAUSE_LOOKBACK_S = 86400.0  # a pause recorded that long ago has ended (Cloudflare's lockouts last 5 minutes)


def recent_activity(db: sqlite3.Connection, since: float, now: float) -> tuple[list[float], float]:
    """What the job's earlier runs (of any kind) did, for the rate promise across tokens: the requests
    they started after ``since``, each at its bucket's end (the latest it may have started, never
    after ``now``), and the end of the latest pause they recorded (0.0 when none)."""
    if not has_table(db, "timeline"):
        return [], 0.0
    starts: list[float] = []
    paused_until = 0.0
    rows = db.execute(
        "SELECT 0, start, width, data FROM timeline WHERE start + width > ? ORDER BY start",
        (min(since, now - PAUSE_LOOKBACK_S),),
    )
    for _, start, width, bucket in load_buckets(rows.fetchall()):
        if start + width > since:
            starts += [min(float(start + width), now)] * bucket.requests
        paused_until = max([paused_until, *(begin + seconds for begin, seconds in bucket.spans)])
    return starts, paused_until
