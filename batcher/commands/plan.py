"""``batcher plan``: GET every meeting and show the change a run would make, never PUT.

One JSON line per row, in completion order (each carries its ``row``):
``{"row", "meeting_id", "account_id", "action", "changes": [{"path", "before", "after"}]}``
with ``action`` one of update / unchanged / invalid / error; secrets show as ``"***"``.
Error lines also carry ``error``, ``status`` (HTTP status or null) and ``message``.

The action is ``decide.decide``'s answer, asked exactly as ``run`` asks it
(with the meeting only in modes where ``run`` reads it first), so plan shows
what run would do by construction: in replace mode every valid row is an
``update``, because run PUTs it without looking. ``changes`` compare the
meeting as GET shows it now with what GET would show after the write.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import IO, Any

import orjson

from ..core.config import JobConfig
from ..core.decide import READS_FIRST, Options, Refuse, Unchanged, decide, expected_after
from ..core.documents import diff, project, redact
from ..core.redaction import scrub, secret_values
from ..core.rows import Row, RowError
from ..errors import AuthError
from ..http.client import CallResult, Client
from ..http.pacer import Pacer
from ..input.checks import iter_checked
from ..input.source import Source
from ..report.console import Console, Progress
from ..report.outputs import silence_stdout
from ..run.announce import count_rows, say_estimate
from ..run.pool import Control, pump, show_pause
from ..run.writes import reading_of
from ..state.keyset import scratch_keyset

PREVIEW_ROWS = 5


@dataclass
class PlanResult:
    """Exit code, counts by action, the summary text."""

    exit_code: int
    counts: Counter[str]
    message: str


class Planner:
    """Computes and writes one plan line per row."""

    client: Client  # set by plan_job's ``async with``, for the rows' GETs

    def __init__(self, config: JobConfig, out: IO[bytes], control: Control, progress: Progress) -> None:
        self.config = config
        self.out = out
        self.control = control
        self.progress = progress
        self.counts: Counter[str] = Counter()
        self.previews: list[str] = []

    def write(self, line: dict[str, Any]) -> None:
        """Emit one plan line and count it."""
        # counted by action, and errors by kind: not_found and credential_guard get their own lines
        key = (
            line["error"]
            if line["action"] == "error" and line.get("error") in ("credential_guard", "not_found")
            else line["action"]
        )
        self.counts[key] += 1
        if self.control.output_closed:
            return
        try:
            self.out.write(orjson.dumps(line) + b"\n")
        except BrokenPipeError:  # `plan ... | head`: stop, quietly
            silence_stdout()
            self.control.output_lost()
            return
        self.progress.advance("failed" if line["action"] in ("invalid", "error") else "succeeded")
        if line["action"] == "update" and len(self.previews) < PREVIEW_ROWS:
            changes = ", ".join(
                f"{c['path']}: {orjson.dumps(c['before']).decode()} -> {orjson.dumps(c['after']).decode()}"
                for c in line["changes"][:4]
            )
            self.previews.append(f"  row {line['row']} {line['meeting_id']}: {changes}")

    async def handle(self, item: Row | RowError) -> None:
        """Plan one row."""
        base = {"row": item.number, "meeting_id": item.meeting_id, "account_id": item.account_id}
        if isinstance(item, RowError):
            return self.write({**base, "action": "invalid", "changes": [], "message": item.message})
        url = self.config.meeting_url(item.account_id or "", item.meeting_id)
        got = await self.client.call("GET", url)
        reading = reading_of(item.meeting_id, got, self.control.clock())  # the meeting asked for, or an error
        if isinstance(reading, CallResult):
            message = scrub(got.message or "GET returned no meeting", secret_values(item.patch))
            self.write(
                {
                    **base,
                    "action": "error",
                    "changes": [],
                    "error": got.error or "api_error",
                    "status": got.status,
                    "message": message,
                }
            )
            if got.error == "auth":
                self.control.halt_with(AuthError(f"HTTP {got.status} on row {item.number}: {message}"))
            return
        mode = self.config.mode
        options = Options(allow_credential_reset=self.config.allow_credential_reset)
        current = reading.document
        decision = decide(mode, current if mode in READS_FIRST else None, item.patch, options)
        if isinstance(decision, Unchanged):
            return self.write({**base, "action": "unchanged", "changes": []})
        changes = diff(redact(project(current)), redact(expected_after(mode, current, item.patch)))
        line = {**base, "action": "update", "changes": changes}
        if isinstance(decision, Refuse):
            line.update(action="error", error=decision.error, status=None, message=decision.message)
        self.write(line)


async def plan_job(
    config: JobConfig,
    out_path: str = "-",
    *,
    control: Control | None = None,
    console: Console | None = None,
    stdin: IO[bytes] | None = None,
) -> PlanResult:
    """Plan every row of ``config.input``; write lines to ``out_path`` (``-``: stdout)."""
    control = control or Control()
    console = console or Console(quiet=True)
    progress = console.progress(label="rows planned")
    out: IO[bytes] = sys.stdout.buffer if out_path == "-" else open(out_path, "wb")  # noqa: SIM115
    planner = Planner(config, out, control, progress)
    try:
        with Source(config.input, config.input_format, stdin, config.set_values) as source:
            rows = iter_checked(
                source,
                config.account_id,
                scratch_keyset(),
                require_account=True,
                batch=1 if config.input == "-" else 4096,
                defer_required=config.mode == "merge",
                mode=config.mode,
            )
            say_estimate(console, config, count_rows(config), is_plan=True, progress=progress)
            pacer = Pacer(config.pacing.rate, control.clock, control.sleep)
            async with Client(config.http, pacer, control.sleep, on_retry=console.debug) as planner.client:
                await pump(
                    rows, planner.handle, config.concurrency, control, lambda: show_pause(progress, pacer, control)
                )
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        elif not control.output_closed:
            try:
                out.flush()
            except BrokenPipeError:
                silence_stdout()
                control.output_lost()
        progress.close()
    c = planner.counts
    text = (
        f"batcher plan: {sum(c.values())} rows - {c['update']} would change, {c['unchanged']} unchanged, "
        f"{c['invalid']} invalid, {c['not_found']} not found, {c['error']} other errors, "
        f"{c['credential_guard']} would trip the credential guard"
    )
    if planner.previews and console.is_tty:
        text += "\nfirst changes:\n" + "\n".join(planner.previews)
    if control.halt is not None:
        return PlanResult(control.halt.exit_code, c, f"{text}\n{control.halt}")
    if control.interrupted:
        return PlanResult(130, c, text)
    failed = c["invalid"] + c["error"] + c["not_found"] + c["credential_guard"]
    return PlanResult(1 if failed else 0, c, text)
