"""The options shared by ``run``, ``plan`` and ``rollback`` (connection, pacing, state, reports).

Defaults that come from environment variables are taken from ``cli.environment`` when the
parser is built (each command's start), never read here directly.
"""

from __future__ import annotations

import argparse
import stat
from collections.abc import Mapping
from pathlib import Path

from ..core.config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RATE,
    DEFAULT_TIMEOUT_S,
    Secret,
)
from ..errors import UsageError
from .environment import Environment
from .preflight import finite_float


def add_job_options(p: argparse.ArgumentParser, *, with_input: bool = True) -> None:
    """Add the job options to ``p`` (``with_input``: INPUT and the options only run/plan take)."""
    env = Environment.read()
    if with_input:
        p.add_argument("input", metavar="INPUT", help="a .csv, .jsonl/.ndjson file, or - for JSONL on stdin")
        p.add_argument(
            "--format",
            dest="input_format",
            choices=("csv", "jsonl"),
            help="override the format implied by INPUT's name",
        )
        p.add_argument(
            "--mode",
            choices=("merge", "replace", "patch"),
            default="merge",
            help="merge (default): GET, deep-merge, PUT the whole document; replace: PUT the row as the whole document; patch: PATCH the row",
        )
        p.add_argument(
            "--skip-invalid",
            action="store_true",
            help="record invalid rows as failed and go on (default: exit 2 before sending anything)",
        )
        p.add_argument(
            "--retry-failed", action="store_true", help="on resume, send rows that failed in earlier runs again"
        )
        p.add_argument(
            "--force",
            action="store_true",
            help="reuse a state file made by a different input/options (done rows with the same patch are not resent)",
        )
        p.add_argument(
            "--report",
            dest="report_path",
            metavar="FILE",
            help="failure report (default INPUT.failures.jsonl; .csv gives CSV)",
        )
        p.add_argument(
            "--results", dest="results_path", metavar="FILE", help="one JSON line per finished row (- for stdout)"
        )
    p.add_argument(
        "--base-url",
        default=env.base_url or DEFAULT_BASE_URL,  # set but empty: the default
        help=f"API base URL (env BATCHER_BASE_URL; default {DEFAULT_BASE_URL})",
    )
    p.add_argument(
        "--app-id",
        default=env.app_id,
        help="use the /realtime/kit/{app_id}/ path (env BATCHER_APP_ID)",
    )
    p.add_argument(
        "--account-id",
        default=env.account_id,
        help="account for rows without account_id (env CLOUDFLARE_ACCOUNT_ID)",
    )
    p.add_argument(
        "--token-file", metavar="FILE", help="read the API token from FILE (default: env CLOUDFLARE_API_TOKEN)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight at most (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--rate",
        default=DEFAULT_RATE,
        help=f"N/SECONDS: at most N requests start in any SECONDS window (default {DEFAULT_RATE}); 'none'; 'auto[:N/S]'",
    )
    p.add_argument(
        "--budget-file",
        dest="budget_path",
        metavar="FILE",
        help="the rate budget shared by every batcher using this token (default: a per-token file in ~/.cache/batcher)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help=f"attempts per request (default {DEFAULT_MAX_ATTEMPTS})",
    )
    p.add_argument(
        "--timeout",
        dest="timeout_s",
        type=finite_float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per request (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--max-failures", type=int, help="stop (exit 3) once more than N rows have failed in this run")
    p.add_argument(
        "--allow-credential-reset", action="store_true", help="PUT even when it erases stored storage credentials"
    )
    p.add_argument(
        "--state",
        dest="state_path",
        metavar="FILE",
        help="SQLite state file (default INPUT.state.db; required with stdin)",
    )
    p.add_argument("--summary-json", dest="summary_path", metavar="FILE", help="write the summary as JSON")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (prints a warning)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument(
        "--verbose", "-v", action="store_true", help="log retries and failed rows as they happen; tracebacks on errors"
    )
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="stderr as sentences (default) or JSON lines"
    )


def read_token(token_file: str | None, environ: Mapping[str, str] | None = None) -> tuple[Secret, list[str]]:
    """The API token from ``--token-file`` or ``CLOUDFLARE_API_TOKEN``, plus warnings.

    ``environ``: the variables to read instead of the process's (``Environment.read``)."""
    warnings = []
    if token_file:
        path = Path(token_file)
        try:
            mode = path.stat().st_mode
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(f"warning: {token_file} is readable by other users; chmod 600 it")
        return Secret(value), warnings
    return Secret(Environment.read(environ).api_token), warnings
