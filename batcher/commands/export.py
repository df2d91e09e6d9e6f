"""``batcher export``: list an app's meetings as JSONL, a ``run`` input, a seed and a backup at once.

The list endpoint's paging is undocumented and has been seen to misbehave, so
the walk over it trusts nothing it cannot check: every page and stop rule is in
``core.paging.PageWalk`` (page 1 first and its ``start_offset``, repeats, ``total_count``, a cap);
this module only fetches the pages it asks for and writes what they bring. It
says how many meetings it listed against ``total_count``.

Listed items have no ``ai_config``: ``--full`` GETs each meeting (concurrently,
paced by the same ``Pacer`` as every request). Output lines are
``{"account_id", "meeting_id", ...fields as the API nests them}`` without the
read-only ``id``, ``created_at``, ``updated_at``, ``status``. With ``--out FILE``
an interrupted export resumes: ids already in FILE are skipped (append-and-skip),
so a killed 7-hour ``--full`` export does not start over. Only the same export resumes: the
options that decide what a line holds (server, account, app, filters, ``--full``, ``--fields``)
are kept in ``FILE.options.json``, and a FILE made with other ones (or whose record is gone) is
refused, naming each difference, rather than topped up with different lines.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from yarl import URL

from ..core.config import JobConfig
from ..core.documents import unknown_paths
from ..core.paging import PageAnswer, PageRequest, PageWalk, Stop
from ..core.readings import Foreign, read
from ..core.rows import check_meeting_id
from ..core.schema import CARRIED_KEY
from ..core.times import list_time
from ..errors import AuthError, Interrupted, UsageError
from ..http.client import CallResult, Client
from ..http.pacer import Pacer
from ..report.console import Console, Progress
from ..run.pool import Control, pump, show_pause

READ_ONLY = ("id", "created_at", "updated_at", "status")
LIST_ONLY_MISSING = ("ai_config", "preferred_region")  # absent from listed items: needs --full
DEFAULT_PER_PAGE = 100


@dataclass(frozen=True)
class ExportOptions:
    """What to list and how to write it."""

    search: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    is_full: bool = False
    fields: tuple[str, ...] = ()
    per_page: int = DEFAULT_PER_PAGE
    out_path: str = "-"

    def __post_init__(self) -> None:
        # full UTC date-times: the schema refuses a bare date or a time without an offset
        for name, is_end in (("since", False), ("until", True)):
            if value := getattr(self, name):
                object.__setattr__(self, name, list_time(value, is_end=is_end))

    def identity(self, config: JobConfig) -> dict[str, Any]:
        """What makes an export this export: where it lists from and what each line holds.

        A resume appends to lines written by an earlier run, so both runs must mean the same
        lines (``per_page`` and the output path do not change what a line holds)."""
        return {
            "base_url": config.base_url.rstrip("/"),
            "account_id": config.account_id,
            "app_id": config.app_id,
            "search": self.search,
            "status": self.status,
            "since": self.since,
            "until": self.until,
            "full": self.is_full,
            "fields": list(self.fields),
        }

    def query(self) -> dict[str, str]:
        """The list endpoint's filters."""
        pairs = {"search": self.search, "status": self.status, "start_time": self.since, "end_time": self.until}
        return {k: v for k, v in pairs.items() if v}


@dataclass
class ExportResult:
    """How an export ended."""

    exit_code: int
    listed: int = 0
    total_count: int | None = None
    written: int = 0
    skipped: int = 0
    failed: int = 0
    pages: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """The summary for stderr."""
        claimed = f"of total_count {self.total_count}" if self.total_count is not None else "(no total_count given)"
        text = (
            f"batcher export: listed {self.listed} meetings {claimed} in {self.pages} page{'s' if self.pages != 1 else ''}; "
            f"wrote {self.written}, {self.skipped} already in the output, {self.failed} could not be read"
        )
        return "\n".join([text, *self.warnings])


def parse_fields(text: str | None, is_full: bool) -> tuple[str, ...]:
    """``--fields a,b.c`` as paths; fields that only a per-meeting GET shows need ``--full``."""
    if not text:
        return ()
    paths = tuple(p.strip() for p in text.split(",") if p.strip())
    for path in paths:
        if any(not part for part in path.split(".")):
            raise UsageError(f"--fields: {path!r} is not a dotted field path such as ai_config.transcription")
        if not is_full and path.split(".")[0] in LIST_ONLY_MISSING:
            raise UsageError(f"--fields {path}: listed meetings do not carry {path.split('.')[0]}; add --full")
    return paths


def export_line(account_id: str, doc: dict[str, Any], fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """One output line: ids first, read-only fields dropped, projected to ``fields`` when given.

    Fields the schema does not know (the API grew) are listed under ``_carried``, so that ``run``
    takes the line back as the backup it is: those fields carried as they are, not refused."""
    body = {k: v for k, v in doc.items() if k not in READ_ONLY}
    if fields:
        body = project_paths(body, fields)
    line = {"account_id": account_id, "meeting_id": doc["id"], **body}
    if carried := sorted(unknown_paths(body)):
        line[CARRIED_KEY] = carried
    return line


def project_paths(doc: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The parts of ``doc`` at the dotted ``paths``, nested as in ``doc``; absent paths are left out."""
    out: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = doc
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = node[leaf]
    return out


def options_path(out_path: str) -> str:
    """Where an export records the options it was made with, beside its output (``OUT.options.json``)."""
    return f"{out_path}.options.json"


class OutFile:
    """The output, opened for append-and-skip: ids already written are not written again.

    A line cut short by a kill is dropped (the file is truncated after the last
    complete line), so the meeting on it is simply exported again.
    """

    def __init__(self, path: str, identity: dict[str, Any] | None = None) -> None:
        self.path = path
        self.done: set[str] = set()
        self.is_closed = False  # the reader of stdout went away
        self._fh: IO[bytes]
        if path == "-":
            self._fh = sys.stdout.buffer
            return
        if os.path.exists(path):
            self._load(identity)
        if identity is not None:
            Path(options_path(path)).write_bytes(orjson.dumps(identity, option=orjson.OPT_INDENT_2) + b"\n")
        self._fh = open(path, "ab")  # noqa: SIM115 - closed by close()

    def _check_identity(self, identity: dict[str, Any] | None) -> None:
        """Resume only the same export: refuse one made with other options, naming each difference."""
        if identity is None:
            return
        try:
            recorded = orjson.loads(Path(options_path(self.path)).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            raise UsageError(
                f"--out {self.path} already holds meetings, but {options_path(self.path)} (the record of the options "
                "that export was made with) is missing or unreadable, so resuming could mix two different exports; "
                "choose another file, or delete it to start over (it was left as it is)"
            ) from None
        differs = [f"{k}: was {recorded.get(k)!r}, now {v!r}" for k, v in identity.items() if recorded.get(k) != v]
        if differs:
            raise UsageError(
                f"--out {self.path} holds a different export ({'; '.join(differs)}): resuming would mix the two. "
                "Run the same command as before to resume it, or choose another file (it was left as it is)"
            )

    def _load(self, identity: dict[str, Any] | None) -> None:
        """Resume from an earlier export: its complete lines are kept, a last line cut short by a kill
        is dropped. A file that is not an export (a state, an input CSV...) is refused, untouched."""
        with open(self.path, "r+b") as fh:
            good = 0
            for number, line in enumerate(fh, 1):
                if not line.endswith(b"\n") and line.startswith(b"{") and b"\0" not in line:
                    break  # the last line, cut short by a kill
                try:
                    self.done.add(orjson.loads(line)["meeting_id"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    raise UsageError(
                        f"--out {self.path}: line {number} is not a meeting exported by batcher, so this file is "
                        "not an export to resume; choose another file (it was left as it is)"
                    ) from None
                good += len(line)
            if self.done:  # an export to resume: only the same export (nothing is changed before this)
                self._check_identity(identity)
            fh.truncate(good)

    def write(self, line: dict[str, Any]) -> None:
        """Append one meeting."""
        self._fh.write(orjson.dumps(line) + b"\n")
        self.done.add(line["meeting_id"])

    def flush(self) -> None:
        """Make written lines durable enough for a resume (the OS has them)."""
        self._fh.flush()

    def close(self) -> None:
        """Flush; close unless it is stdout."""
        if self.is_closed:
            # Python would complain of the broken pipe once more at exit: point stdout at /dev/null
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
        self.flush()
        if self._fh is not sys.stdout.buffer:
            self._fh.close()


class Exporter:
    """Walks the list endpoint page by page; with ``--full`` GETs each new meeting."""

    def __init__(
        self,
        config: JobConfig,
        options: ExportOptions,
        client: Client,
        out: OutFile,
        control: Control,
        progress: Progress,
    ) -> None:
        self.config = config
        self.options = options
        self.client = client
        self.out = out
        self.control = control
        self.progress = progress
        self.result = ExportResult(0)
        self.account = config.account_id or ""
        self.list_url = URL(
            config.base_url.rstrip("/") + f"/accounts/{self.account}/realtime/kit/{config.app_id}/meetings"
        )

    async def fetch_page(self, request: PageRequest) -> CallResult:
        """One page of the list (retried and paced like every request)."""
        query = {**self.options.query(), "page_no": str(request.page_no), "per_page": str(request.per_page)}
        got = await self.client.call("GET", str(self.list_url.with_query(query)))
        if got.error == "auth":
            raise AuthError(f"HTTP {got.status} listing meetings: {got.message}. Check the token and its permission")
        return got

    async def walk(self) -> None:
        """List every page the ``PageWalk`` asks for, writing (or fetching) the meetings not yet in the output."""
        res, pages = self.result, PageWalk(self.options.per_page)
        request = pages.first()
        while not self.control.stopping:
            got = await self.fetch_page(request)
            step = pages.next(PageAnswer(got.status, got.is_ok, got.envelope, got.message))
            res.pages, res.listed = pages.pages, pages.listed
            if pages.total_count is not None:
                res.total_count = self.progress.total = pages.total_count
            if pages.new_items is not None:
                await self.take(pages.new_items)
                self.tick()
            if isinstance(step, Stop):
                if step.reason is not None:  # the list may be incomplete: exit 1
                    res.exit_code = 1
                    res.warnings.append(f"batcher export: {step.reason}")
                return
            request = step

    async def take(self, items: list[dict[str, Any]]) -> None:
        """Write one page's new meetings (GET each first with ``--full``); flush once per page."""
        todo = []
        for item in items:
            meeting_id = item.get("id") if isinstance(item, dict) else None
            if check_meeting_id(meeting_id):
                self.fail(f"listed item without a valid meeting id: {str(meeting_id)[:60]!r}")
                continue
            if meeting_id in self.out.done:
                self.result.skipped += 1
                continue
            todo.append(item)
        if self.options.is_full:
            await pump(iter(todo), self.fetch_one, self.config.concurrency, self.control, self.tick)
        else:
            for item in todo:
                self.write(item)
        self.out.flush()

    async def fetch_one(self, item: dict[str, Any]) -> None:
        """GET one meeting for its whole document."""
        meeting_id = item["id"]
        got = await self.client.call("GET", self.config.meeting_url(self.account, meeting_id))
        if got.error == "auth":
            self.control.halt_with(AuthError(f"HTTP {got.status} reading meeting {meeting_id}: {got.message}"))
            return
        if not got.is_ok or got.data is None:
            self.fail(f"meeting {meeting_id}: {got.error or 'api_error'}: {got.message or 'no meeting object'}")
            return
        reading = read(meeting_id, got.data, 0.0)  # another meeting's answer is never written as this one's
        if isinstance(reading, Foreign):
            self.fail(f"meeting {meeting_id}: api_error: {reading.message}")
            return
        self.write({**reading.document, "id": meeting_id})

    def write(self, doc: dict[str, Any]) -> None:
        """One meeting to the output."""
        self.out.write(export_line(self.account, doc, self.options.fields))
        self.result.written += 1
        self.progress.advance("succeeded")

    def fail(self, text: str) -> None:
        """A meeting that could not be read: counted, said, exit 1."""
        self.result.failed += 1
        self.result.exit_code = 1
        self.progress.advance("failed")
        self.progress.console.say("export_failed", f"batcher export: {text}")

    def tick(self) -> None:
        """Redraw progress (and the Retry-After pause)."""
        show_pause(self.progress, self.client.pacer, self.control)


async def export_meetings(
    config: JobConfig, options: ExportOptions, *, control: Control | None = None, console: Console | None = None
) -> ExportResult:
    """Export an app's meetings (the library entry point behind ``batcher export``)."""
    if not config.account_id or not config.app_id:
        raise UsageError("export needs --account-id and --app-id (the list endpoint is per app)")
    control = control or Control()
    console = console or Console(quiet=True)
    progress = console.progress(label="meetings")
    out = OutFile(options.out_path, options.identity(config))
    if out.done:
        console.say("export_resume", f"batcher export: {len(out.done)} meetings already in {out.path}: skipping them")
    pacer = Pacer(config.pacing.rate, control.clock, control.sleep)
    try:
        async with Client(config.http, pacer, control.sleep, on_retry=console.debug) as client:
            exporter = Exporter(config, options, client, out, control, progress)
            try:
                await exporter.walk()
            except Interrupted:
                pass
            except BrokenPipeError:  # `batcher export ... | head`: the reader has all it wants
                out.is_closed = True
                exporter.result.warnings.append("batcher export: the output was closed by its reader; stopped")
                exporter.result.exit_code = 1
    finally:
        out.close()
        progress.close()
    result = exporter.result
    if control.halt is not None:
        raise control.halt
    if control.interrupted:
        result.exit_code = 130
        result.warnings.append("batcher export: interrupted; run the same command again to resume (--out FILE)")
    elif not out.is_closed and result.total_count is not None and result.listed < result.total_count:
        result.exit_code = 1  # meetings the server counted but never listed could not be read
        result.warnings.append(
            f"batcher export: warning: listed {result.listed} of the {result.total_count} meetings the server counted"
        )
    return result
