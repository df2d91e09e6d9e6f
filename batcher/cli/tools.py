"""The migration commands' command line: ``export``, ``status`` and the ``--set`` option.

Kept apart from ``cli.py`` (which dispatches to ``cmd_export`` / ``cmd_status``)
so the core commands' parser stays as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

import orjson

from ..core.config import DEFAULT_BASE_URL, DEFAULT_CONCURRENCY, DEFAULT_MAX_ATTEMPTS, DEFAULT_RATE, DEFAULT_TIMEOUT_S
from ..core.rows import MASK, validate_body
from ..core.schema import FIELDS, STORAGE_PATH, closest_path, is_secret_path
from ..core.times import list_time
from ..input.source import _cell, unflatten
from .environment import Environment

EXPORT_EXAMPLES = """examples:
  batcher export --account-id ACCOUNT --app-id APP --out meetings.jsonl
  batcher export --account-id ACCOUNT --app-id APP --search Paris --status ACTIVE \\
      --since 2026-01-01 --until 2026-07-01T00:00:00Z --fields title
  batcher export --account-id ACCOUNT --app-id APP --full --out backup.jsonl   # re-run to resume
  batcher export ... --fields title | jq -c 'select(.title | test("Paris")) | {meeting_id, account_id}' \\
      | batcher run - --state paris.db --set ai_config.transcription.language=fr
  batcher fake-api --seed backup.jsonl      # rehearse against a copy of the real meetings"""

STATUS_EXAMPLES = """examples:
  batcher status --state job.state.db          # from another terminal while the job runs, or after
  batcher status --state job.state.db --json   # {"total", "succeeded", ..., "resume"}
  watch -n 10 batcher status --state job.state.db"""

SET_HELP = (
    "PATH=VALUE: set this field in every row's patch, typed like a CSV cell "
    "(true/false, numbers, null, JSON arrays); repeatable; ids-only input then suffices"
)


def parse_set(text: str) -> tuple[str, Any]:
    """``--set PATH=VALUE``: a known field path and a value typed and validated like a CSV cell."""
    path, sep, cell = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not PATH=VALUE, e.g. ai_config.transcription.language=fr")
    if path == "status":  # settable by PATCH only; JobConfig checks the mode
        if cell not in ("ACTIVE", "INACTIVE"):
            raise argparse.ArgumentTypeError(f"status must be ACTIVE or INACTIVE, not {cell!r}")
        return path, cell
    spec = FIELDS.get(path)
    if spec is None:
        hint = closest_path(path, FIELDS)
        raise argparse.ArgumentTypeError(f"unknown field {path!r}" + (f"; did you mean '{hint}'?" if hint else ""))
    if cell == "":
        raise argparse.ArgumentTypeError(f"{path}: empty value; write {path}=null to set null")
    try:
        value = _cell(spec.kind, cell if spec.kind == "str" else cell.strip())  # as CsvDecoder types a cell
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{path}: {exc}") from None
    if is_secret_path(path) and value == MASK:
        raise argparse.ArgumentTypeError(
            f"{path}: '***' is how batcher shows a credential it never prints (in resume lines and status): "
            "give the real value"
        )
    if isinstance(value, dict) and _holds_credential(path, value):
        raise argparse.ArgumentTypeError(
            f"{path}: give each credential as its own --set (e.g. --set {'.'.join(STORAGE_PATH)}.secret=VALUE): "
            "only then is it masked in resume lines, status and reports, and digested in the state"
        )
    # required-if rules (storage_config.type, ...) belong to the whole patch: the rows are checked with it
    problems = validate_body(unflatten({path: value}, []), defer_required=True)
    if problems:
        raise argparse.ArgumentTypeError("; ".join(str(p) for p in problems))
    return path, value


def _holds_credential(path: str, value: Any) -> bool:
    """Whether an object given to ``--set PATH`` carries a write-only credential anywhere inside."""
    if isinstance(value, dict):
        return any(_holds_credential(f"{path}.{key}", inner) for key, inner in value.items())
    return is_secret_path(path)


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set PATH=VALUE`` (repeatable) on run, plan and validate."""
    parser.add_argument(
        "--set", dest="set_values", metavar="PATH=VALUE", type=parse_set, action="append", default=None, help=SET_HELP
    )


def _list_time(text: str, *, is_end: bool = False) -> str:
    try:
        return list_time(text, is_end=is_end)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time such as 2026-01-31T12:00:00Z") from None


def _since(text: str) -> str:
    return _list_time(text)


def _until(text: str) -> str:
    return _list_time(text, is_end=True)


def add_export_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """The ``export`` sub-command."""
    env = Environment.read()
    p = sub.add_parser(
        "export",
        help="list an app's meetings as JSONL (a run input, a fake-api seed and a backup)",
        epilog=EXPORT_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("--account-id", default=env.account_id, help="env CLOUDFLARE_ACCOUNT_ID")
    p.add_argument("--app-id", default=env.app_id, help="env BATCHER_APP_ID")
    p.add_argument("--search", help="meetings whose id or title contains this")
    p.add_argument("--status", choices=("ACTIVE", "INACTIVE"), help="only meetings with this status")
    p.add_argument(
        "--since",
        type=_since,
        metavar="ISO",
        help="created at or after (start_time; UTC unless the time has an offset; a bare date is its first second)",
    )
    p.add_argument(
        "--until",
        type=_until,
        metavar="ISO",
        help="created at or before (end_time; UTC unless the time has an offset; a bare date is its last second)",
    )
    p.add_argument("--full", action="store_true", help="GET each meeting for its whole document (ai_config, ...)")
    p.add_argument("--fields", metavar="a,b.c", help="only these field paths (plus account_id, meeting_id)")
    p.add_argument(
        "--out", default="-", metavar="FILE", help="JSONL output (default stdout); an existing FILE is resumed"
    )
    p.add_argument("--per-page", type=int, default=100, help="meetings asked for per list page (default 100)")
    p.add_argument("--base-url", default=env.base_url or DEFAULT_BASE_URL, help="env BATCHER_BASE_URL")
    p.add_argument(
        "--token-file", metavar="FILE", help="read the API token from FILE (default: env CLOUDFLARE_API_TOKEN)"
    )
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="GETs in flight with --full")
    p.add_argument("--rate", default=DEFAULT_RATE, help=f"N/SECONDS, 'auto' or 'none' (default {DEFAULT_RATE})")
    p.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"attempts per request (default {DEFAULT_MAX_ATTEMPTS})",
    )
    p.add_argument(
        "--timeout",
        dest="timeout_s",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per request (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--verbose", "-v", action="store_true", help="more detail on stderr; tracebacks on errors")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="stderr as sentences (default) or JSON lines"
    )


def add_status_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """The ``status`` sub-command."""
    p = sub.add_parser(
        "status",
        help="how a job is doing (read-only; works while it runs)",
        epilog=STATUS_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("--state", dest="state_path", metavar="FILE", required=True, help="the job's state file")
    p.add_argument("--json", dest="is_json", action="store_true", help="one JSON object on stdout")


def cmd_export(args: argparse.Namespace) -> int:
    """``batcher export``: 0, or 1 if some meetings could not be read; 130 interrupted (resumable)."""
    from ..commands.export import ExportOptions, export_meetings, parse_fields
    from ..core.config import JobConfig, parse_rate
    from ..errors import UsageError
    from ..report.console import Console
    from ..run.pool import Control
    from .options import read_token

    console = Console(log_format=args.log_format, quiet=args.quiet, verbose=args.verbose)
    token, warnings = read_token(args.token_file)
    for warning in warnings:
        console.say("warning", f"batcher: {warning}")
    if not token:
        raise UsageError("no API token: set CLOUDFLARE_API_TOKEN or pass --token-file FILE")
    if args.per_page < 1:
        raise UsageError("--per-page must be at least 1")
    from .preflight import check_outputs

    check_outputs(None, [("--out", args.out)], [("--token-file", args.token_file)])
    config = JobConfig(
        input="",
        token=token,
        base_url=args.base_url,
        app_id=args.app_id,
        account_id=args.account_id,
        concurrency=args.concurrency,
        rate=parse_rate(args.rate),
        max_attempts=args.max_attempts,
        timeout_s=args.timeout_s,
        insecure=args.insecure,
        budget_path=Environment.read().budget_path(None, token.reveal()),
    )
    options = ExportOptions(
        search=args.search,
        status=args.status,
        since=args.since,
        until=args.until,
        is_full=args.full,
        fields=parse_fields(args.fields, args.full),
        per_page=args.per_page,
        out_path=args.out,
    )

    async def go() -> int:
        control = Control()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, control.interrupt)
        result = await export_meetings(config, options, control=control, console=console)
        console.say(
            "summary",
            result.message,
            listed=result.listed,
            total_count=result.total_count,
            written=result.written,
            failed=result.failed,
        )
        return result.exit_code

    return asyncio.run(go())


def cmd_status(args: argparse.Namespace) -> int:
    """``batcher status``: 0 (the job's own outcome is in the output, not the exit code)."""
    from ..commands.status import read_status, status_text

    doc = read_status(args.state_path)
    if args.is_json:
        sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    else:
        sys.stdout.write(status_text(doc, args.state_path) + "\n")
    return 0


REPORT_EXAMPLES = """examples:
  batcher report --state job.state.db --html job.html    # any time: while the job runs, or years later
  batcher run rows.csv --account-id ACCOUNT --html job.html   # written when the run ends (or is stopped)
  batcher rollback --state job.state.db --html job.html       # the same report, with the rollback's part"""

HTML_HELP = "write the job's self-contained HTML report to FILE when this run ends (also when it is stopped)"


def add_html_option(parser: argparse.ArgumentParser) -> None:
    """``--html FILE`` on run and rollback."""
    parser.add_argument("--html", dest="html_path", metavar="FILE", help=HTML_HELP)


def add_report_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """The ``report`` sub-command."""
    p = sub.add_parser(
        "report",
        help="write a job's self-contained HTML report (read-only; works while it runs)",
        epilog=REPORT_EXAMPLES,
        formatter_class=fmt,
    )
    p.add_argument("--state", dest="state_path", metavar="FILE", required=True, help="the job's state file")
    p.add_argument(
        "--html", dest="html_path", metavar="FILE", required=True, help="the HTML file to write (- for stdout)"
    )


def cmd_report(args: argparse.Namespace) -> int:
    """``batcher report``: 0 once the file is written (the job's own outcome is inside it)."""
    from ..report.html import write_html_report
    from .preflight import check_outputs, recorded_input

    job_input = recorded_input(args.state_path)
    check_outputs(None, [("--html", args.html_path)], [("--state", args.state_path), ("the job's input", job_input)])
    write_html_report(args.state_path, args.html_path)
    if args.html_path != "-":
        sys.stderr.write(f"batcher: report written to {args.html_path}\n")
    return 0


def write_run_report(state_path: str, html_path: str | None, say: Any) -> None:
    """After ``run`` or ``rollback``: write ``--html`` if asked. A failure to write it is said, never
    raised: the job's own exit code stands (``batcher report`` writes it again from the state)."""
    if not html_path or not os.path.exists(state_path):
        return
    from ..report.html import write_html_report

    try:
        write_html_report(state_path, html_path)
    except Exception as exc:  # the job is done and saved; only its picture is missing
        from ..errors import describe_exception

        say("error", f"batcher: error: the HTML report was not written: {describe_exception(exc)}")
        return
    say("report", f"batcher: HTML report: {html_path}", path=html_path)
