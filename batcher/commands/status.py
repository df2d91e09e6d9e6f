"""``batcher status --state FILE``: how a job is doing, from another terminal, while it runs or after.

It opens the state read-only (an SQLite ``mode=ro`` URI, no file lock): in WAL
mode a reader never blocks the writer, so looking in never slows the job. What
only the running process knows (that it runs, a Retry-After pause, the rate it
keeps and the rate it gets) it writes into the state's meta table a few times a
second (``publish_live``, called from the engine's heartbeat); the request
counters are committed by the job with each group commit (``run_stats``), the
rows are in the rows table, and the resume command is rebuilt from the job's
fingerprint.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import orjson

from ..core.config import DEFAULT_BASE_URL
from ..core.estimate import REQUESTS_PER_ROW, duration_text
from ..core.schema import masked_set_argument
from ..run.live import LIVE_KEY
from ..state import readers
from ..state.readonly import is_alive, is_locked, open_read_only

TOP_MESSAGES = 3


def iso(epoch: float | None) -> str | None:
    """Wall-clock seconds as an ISO 8601 UTC time (None stays None)."""
    return None if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def resume_command(fingerprint: dict[str, Any], state_path: str, rate: str | None = None) -> str:
    """The ``batcher run`` command that resumes the job (built from its fingerprint)."""
    argv = ["batcher", "run", fingerprint.get("input") or "-", "--state", state_path]
    if fingerprint.get("mode", "merge") != "merge":
        argv += ["--mode", fingerprint["mode"]]
    for flag, key in (("--format", "format"), ("--app-id", "app_id"), ("--account-id", "account_id")):
        if fingerprint.get(key):
            argv += [flag, fingerprint[key]]
    if fingerprint.get("base_url") and fingerprint["base_url"] != DEFAULT_BASE_URL:
        argv += ["--base-url", fingerprint["base_url"]]
    for path, value in fingerprint.get("set") or ():  # a credential shows as *** (give it again)
        argv += [
            "--set",
            masked_set_argument(f"{path}={value if isinstance(value, str) else orjson.dumps(value).decode()}"),
        ]
    if rate and rate != "1200/300":
        argv += ["--rate", rate]
    return shlex.join(argv)


def read_status(path: str, now: float | None = None) -> dict[str, Any]:
    """The job's status: the contract's keys (``--json``) plus what the human text shows."""
    now = time.time() if now is None else now
    db = open_read_only(path)
    try:
        meta = readers.read_meta(db)
        counts = readers.outcome_counts(db)
        by_error = readers.failure_counts(db)
        top: dict[str, list[list[Any]]] = {}
        for error, message, n in readers.failure_messages(db):
            if len(top.setdefault(str(error), [])) < TOP_MESSAGES:
                top[str(error)].append([message, n])
    finally:
        db.close()
    fingerprint = meta.get("fingerprint") or {}
    stats = meta.get("run_stats") or {"requests": 0, "retries": 0, "elapsed_s": 0.0, "runs": 0}
    live: dict[str, Any] | None = meta.get(LIVE_KEY)
    # a live record of a run that has not ended: the job runs, or was killed before its summary
    is_unfolded = live is not None and live.get("runs_before") == stats.get("runs", 0)
    # and its process holds the state's lock: a pid alone may have been reused since a kill -9
    running = live if live is not None and is_unfolded and is_alive(live["pid"]) and is_locked(path) else None
    is_running = running is not None
    # run_stats already holds the running job's counters: the engine commits them with each group commit
    requests, retries, elapsed = stats["requests"], stats["retries"], stats["elapsed_s"]
    paused = running.get("paused_until") if running is not None else None
    doc: dict[str, Any] = {
        "total": sum(counts.values()),
        "succeeded": counts.get("succeeded", 0),
        "unchanged": counts.get("unchanged", 0),
        "failed": counts.get("failed", 0),
        "skipped": counts.get("skipped", 0),
        "pending": counts.get("pending", 0),
        "requests": requests,
        "retries": retries,
        "elapsed_s": round(elapsed, 3),
        "paused_until": iso(paused) if paused and paused > now else None,
        "failures_by_error": {str(k): v for k, v in by_error.items()},
        "resume": resume_command(fingerprint, path, live.get("rate") if live else None),
        "running": is_running,
        "pid": running["pid"] if running is not None else None,
        "mode": fingerprint.get("mode", "merge"),
        "rate": live.get("rate") if live else None,
        "rate_per_s": live.get("rate_per_s") if live else None,
        "current_rate_per_s": running.get("current_rate_per_s") if running is not None else None,
        "top_messages": top,
    }
    pause_left = paused - now if paused and paused > now else 0.0
    if (eta := eta_s(doc)) is not None:
        doc["eta_s"] = round(eta + pause_left, 1)  # nothing is sent until a Retry-After pause ends
    else:
        doc["eta_s"] = None
    return doc


def eta_s(doc: dict[str, Any]) -> float | None:
    """Seconds of sending left: the rows to do times requests a row so far, at the rate that limits.

    When the job keeps up with its rate promise (current rate at least 90% of
    it) the promise is what limits, and it is the steadier figure; otherwise
    the measured rate is.
    """
    todo = doc["pending"] + doc["skipped"]
    if todo == 0:
        return 0.0
    done = doc["succeeded"] + doc["unchanged"] + doc["failed"]
    per_row = doc["requests"] / done if done and doc["requests"] else REQUESTS_PER_ROW.get(doc["mode"], 2)
    promise, current = doc["rate_per_s"], doc["current_rate_per_s"]
    rate = promise if promise and (not current or current >= 0.9 * promise) else current
    return round(todo * per_row / rate, 1) if rate else None


def status_text(doc: dict[str, Any], path: str) -> str:
    """The human form of ``read_status``."""
    state = f"running (pid {doc['pid']})" if doc["running"] else "not running"
    lines = [
        f"batcher status: {path}: {state}, {doc['mode']} mode",
        f"rows: {doc['total']:,} total: {doc['succeeded']:,} succeeded, {doc['unchanged']:,} unchanged, "
        f"{doc['failed']:,} failed, {doc['skipped']:,} skipped, {doc['pending']:,} pending",
    ]
    rate = f"rate promise {doc['rate']} ({doc['rate_per_s']:.2f}/s)" if doc["rate"] else "no rate promise"
    current = f", current {doc['current_rate_per_s']:.2f}/s" if doc["current_rate_per_s"] is not None else ""
    lines.append(
        f"requests: {doc['requests']:,} ({doc['retries']:,} retries) in {duration_text(doc['elapsed_s'])}; {rate}{current}"
    )
    if doc["eta_s"] is not None and (doc["pending"] or doc["skipped"]):
        lines.append(f"ETA: {duration_text(doc['eta_s'])}" + ("" if doc["running"] else " once resumed"))
    if doc["paused_until"]:
        lines.append(f"paused for Retry-After until {doc['paused_until']}")
    if doc["failures_by_error"]:
        lines.append("failures by kind:")
        for kind, n in doc["failures_by_error"].items():
            lines.append(f"  {kind}: {n:,}")
            for message, count in doc["top_messages"].get(kind, []):
                lines.append(f"    {count:,} x {message}")
    if not doc["running"] and (doc["pending"] or doc["skipped"] or doc["failed"]):
        extra = " (add --retry-failed to send failed rows again)" if doc["failed"] else ""
        lines.append(f"resume with: {doc['resume']}{extra}")
    return "\n".join(lines)


CONTRACT_KEYS = (
    "total",
    "succeeded",
    "unchanged",
    "failed",
    "skipped",
    "pending",
    "requests",
    "retries",
    "elapsed_s",
    "paused_until",
    "failures_by_error",
    "resume",
)
