"""The command line: a thin layer over the library. ``main(argv) -> exit code``.

Exit codes: 0 all rows succeeded/unchanged · 1 some rows failed · 2 usage,
configuration or invalid input (nothing sent), or an unexpected error (one
sentence; ``-v`` for the traceback) · 3 stopped early (401/403,
--max-failures) · 130 interrupted, resumable (also when the reader of stdout
goes away, e.g. ``| head``: the job stops as on a first Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from .._version import __version__
from ..core.config import DEFAULT_BASE_URL, JobConfig, parse_rate
from ..core.rows import Row, RowError, missing_required
from ..core.schema import masked_set_argument
from ..errors import BatcherError, UsageError, describe_exception
from ..report.console import Console
from . import tools
from .environment import Environment
from .fake import add_fake_api_parser, cmd_fake_api
from .options import add_job_options, read_token
from .preflight import check_job_outputs, check_outputs, check_state, recorded_input
from .signals import install_signals, run_async
from .tools import add_export_parser, add_set_option, add_status_parser, cmd_export, cmd_status

EXAMPLES = {
    "run": """examples:
  batcher validate inputs/french-transcription.csv
  batcher plan inputs/french-transcription.csv --out plan.jsonl
  CLOUDFLARE_API_TOKEN=... batcher run inputs/french-transcription.csv --account-id ACCOUNT
  cat rows.jsonl | batcher run - --state job.state.db --account-id ACCOUNT
  batcher rollback --state inputs/french-transcription.csv.state.db""",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="batcher", description="Safe, resumable mass updates of Cloudflare RealtimeKit meetings."
    )
    parser.add_argument("--version", action="version", version=f"batcher {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    run = sub.add_parser("run", help="apply every row of INPUT", epilog=EXAMPLES["run"], formatter_class=fmt)
    add_job_options(run)
    add_set_option(run)
    tools.add_html_option(run)
    run.add_argument(
        "--canary",
        type=int,
        default=0,
        metavar="N",
        help="write the first N rows (and one of each other account) first, read each back and stop (exit 3) "
        "on any field that is not as sent (default 0: no canary)",
    )
    run.add_argument(
        "--canary-only",
        action="store_true",
        help="stop after a clean canary (exit 0); the same command without it goes on",
    )

    plan = sub.add_parser(
        "plan", help="show what run would change, without any PUT", epilog=EXAMPLES["run"], formatter_class=fmt
    )
    add_job_options(plan)
    add_set_option(plan)
    plan.add_argument("--out", default="-", metavar="FILE", help="one JSON line per row (default stdout)")

    validate = sub.add_parser(
        "validate", help="check INPUT offline: no token, no network", epilog=EXAMPLES["run"], formatter_class=fmt
    )
    validate.add_argument("input", metavar="INPUT", help="a .csv, .jsonl/.ndjson file, or - for JSONL on stdin")
    validate.add_argument(
        "--format", dest="input_format", choices=("csv", "jsonl"), help="override the format implied by INPUT's name"
    )
    validate.add_argument(
        "--account-id",
        default=Environment.read().account_id,
        help="account for rows without account_id (env CLOUDFLARE_ACCOUNT_ID); not needed to validate",
    )
    validate.add_argument("--verbose", "-v", action="store_true", help="tracebacks on errors")
    validate.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="stderr as sentences (default) or JSON lines"
    )
    validate.add_argument(
        "--mode",
        choices=("merge", "replace", "patch"),
        default="merge",
        help="the mode the rows will be run in (a row may set status only in patch mode)",
    )
    add_set_option(validate)

    rollback = sub.add_parser(
        "rollback",
        help="PUT back the before-state of every meeting a job changed",
        epilog=EXAMPLES["run"],
        formatter_class=fmt,
    )
    add_job_options(rollback, with_input=False)
    rollback.add_argument("--force", action="store_true", help="overwrite meetings that changed again after the job")
    rollback.add_argument("--report", dest="report_path", metavar="FILE", help="default STATE.rollback.failures.jsonl")
    rollback.add_argument(
        "--results", dest="results_path", metavar="FILE", help="one JSON line per judged meeting (- for stdout)"
    )
    # None = not given: rollback then uses the job's recorded server (an explicit one must match it)
    rollback.set_defaults(base_url=None, app_id=None, account_id=None)
    tools.add_html_option(rollback)

    verify = sub.add_parser(
        "verify",
        help="compare every meeting a job changed with what the job left there (read-only)",
        epilog=EXAMPLES["run"],
        formatter_class=fmt,
    )
    add_job_options(verify, with_input=False)
    verify.add_argument(
        "--out", default="-", metavar="FILE", help="one JSON line a meeting with its verdict (default stdout)"
    )
    verify.add_argument("--force", action="store_true", help="verify against a server other than the job's")
    verify.set_defaults(base_url=None, app_id=None, account_id=None)  # None: the job's recorded server
    verify.add_argument(
        "--html", dest="html_path", metavar="FILE", help="write the job's HTML report, verdicts included"
    )

    add_fake_api_parser(sub, fmt)
    add_export_parser(sub, fmt)
    add_status_parser(sub, fmt)
    tools.add_report_parser(sub, fmt)
    # no abbreviations: `--se PATH=SECRET` would be --set, unmasked in the printed resume line
    for each in (parser, *sub.choices.values()):
        each.allow_abbrev = False
    return parser


def _console(args: argparse.Namespace) -> Console:
    return Console(
        log_format=getattr(args, "log_format", "text"),
        quiet=getattr(args, "quiet", False),
        verbose=getattr(args, "verbose", False),
    )


def _config(args: argparse.Namespace, console: Console, *, needs_token: bool) -> JobConfig:
    token, warnings = read_token(args.token_file)
    for warning in warnings:
        console.say("warning", f"batcher: {warning}")
    if needs_token and not token:
        raise UsageError("no API token: set CLOUDFLARE_API_TOKEN or pass --token-file FILE")
    if args.insecure:
        console.say("warning", "batcher: warning: --insecure: TLS certificates are NOT verified")
    fields = {k: v for k, v in vars(args).items() if k in JobConfig.__dataclass_fields__}
    fields["rate"] = parse_rate(args.rate)
    fields.setdefault("input", getattr(args, "input", None) or args.state_path or "")
    fields["budget_path"] = Environment.read().budget_path(getattr(args, "budget_path", None), token.reveal())
    return JobConfig(token=token, **fields)


def _row_error_printer(console: Console) -> Callable[[RowError], None]:
    def show(err: RowError) -> None:
        for problem in err.errors:
            text = f"row {err.number}: {problem.field}: {problem.reason}"
            console.say("invalid_row", text, row=err.number, field=problem.field, reason=problem.reason)

    return show


DRAINING = (
    "batcher: interrupted: starting nothing new; waiting for the requests in flight to finish "
    "(at most --timeout). Press Ctrl-C again to stop at once (the state is saved either way)."
)


def _say_resume(console: Console, argv: Sequence[str], why: str | None = None) -> None:
    shown = [masked_set_argument(a) if i and argv[i - 1] == "--set" else a for i, a in enumerate(argv)]
    shown = [f"--set={masked_set_argument(a[6:])}" if a.startswith("--set=") else a for a in shown]
    command = shlex.join(["batcher", *shown])
    if shown != list(argv):
        why = (f"{why}\n" if why else "") + "(credentials given with --set show as ***: give them again)"
    console.say("resume", (f"{why}\n" if why else "") + f"resume with: {command}", command=command)


def cmd_validate(args: argparse.Namespace) -> int:
    """``batcher validate``: offline, exit 0 clean, 2 otherwise."""
    from ..commands.validate import validate_input

    console = _console(args)
    show = _row_error_printer(console)
    good = bad = 0
    pairs = JobConfig(input=args.input, mode=args.mode, set_values=args.set_values, state_path="-").set_values
    is_merge = args.mode == "merge"  # run judges required-if fields on the merged document: so does validate
    for result in validate_input(args.input, args.input_format, args.account_id, None, args.mode, pairs, is_merge):
        if isinstance(result, Row):
            good += 1
            for problem in missing_required(result.patch) if is_merge else ():
                text = (
                    f"row {result.number}: note: {problem.field} is not in the row: valid if the meeting has one "
                    "(checked when run reads the meeting; a meeting without one fails as invalid)"
                )
                console.say("note", text, row=result.number, field=problem.field)
        else:
            good -= result.is_duplicate  # a file's duplicates come last, after their Row
            bad += 1
            show(result)
    text = f"batcher: {good + bad} rows: {good} valid, {bad} invalid"
    console.say("summary", text, rows=good + bad, valid=good, invalid=bad)
    return 0 if bad == 0 else 2


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``batcher run``."""
    from ..run.engine import run_job
    from ..run.pool import Control

    console = _console(args)
    config = _config(args, console, needs_token=True)
    _require_account(config)
    extra = [(flag, getattr(args, dest, None)) for flag, dest in _EXTRA_OUTPUTS]
    check_job_outputs(config, extra, [("--token-file", args.token_file)])
    _check_input_opens(config)

    async def go() -> int:
        control = Control()

        def second() -> None:
            control.flush_now()
            _say_resume(console, argv, "batcher: interrupted again: stopped at once; state saved.")
            os._exit(130)

        progress = console.progress()
        install_signals(control, second, lambda: progress.note(DRAINING))
        result = await run_job(
            config,
            control=control,
            progress=progress,
            on_invalid=_row_error_printer(console),
            console=console,
        )
        console.say("summary", result.message, **result.summary)
        tools.write_run_report(config.state_file, args.html_path, console.say)
        if result.exit_code == 130:
            why = "stdout was closed by its reader" if control.output_closed else "interrupted"
            _say_resume(console, argv, f"batcher: {why}; state saved.")
        elif result.exit_code == 3:
            _say_resume(console, argv)
        return result.exit_code

    return run_async(go())


def _check_input_opens(config: JobConfig) -> None:
    """A file input that cannot be read (missing, UTF-16, a bad CSV header) is refused before
    the state file is created, so a usage error leaves no half-made state behind."""
    from ..input.source import Source

    if config.input != "-":
        with Source(config.input, config.input_format):
            pass


# Output options other helpers' commands may add (flag, argparse dest): checked like the rest when present.
_EXTRA_OUTPUTS = (("--budget-file", "budget_path"), ("--html", "html_path"))


def _require_account(config: JobConfig) -> None:
    """``run`` and ``plan`` need an account for every row: a CSV with no way to get one is a usage error."""
    import csv

    from ..input.source import detect_format

    if (
        config.account_id is not None
        or config.input == "-"
        or detect_format(config.input, config.input_format) != "csv"
    ):
        return  # JSONL rows may each carry their own; they are checked row by row
    try:
        with open(config.input, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return  # the Source reports it properly
    if "account_id" not in [h.strip() for h in header]:
        raise UsageError("no account: pass --account-id, set CLOUDFLARE_ACCOUNT_ID, or add an account_id column")


# run's options that plan accepts (the same command line works) but has no use for
_RUN_ONLY = (
    ("--state", "state_path"),
    ("--report", "report_path"),
    ("--results", "results_path"),
    ("--summary-json", "summary_path"),
    ("--max-failures", "max_failures"),
    ("--retry-failed", "retry_failed"),
    ("--skip-invalid", "skip_invalid"),
    ("--force", "force"),
)


def cmd_plan(args: argparse.Namespace) -> int:
    """``batcher plan``."""
    from ..commands.plan import plan_job
    from ..run.pool import Control

    console = _console(args)
    config = _config(args, console, needs_token=True)
    _require_account(config)
    check_outputs(config.input, [("--out", args.out)], [("--token-file", args.token_file)])
    if unused := [flag for flag, dest in _RUN_ONLY if getattr(args, dest, None)]:
        # accepted, so that a run's command line plans as it is; said, so that nobody counts on them
        console.say("warning", f"batcher: plan writes only --out; {', '.join(unused)} have no effect here")

    async def go() -> int:
        control = Control()
        install_signals(control, lambda: os._exit(130))
        result = await plan_job(config, args.out, control=control, console=console)
        console.say("summary", result.message, **result.counts)
        if control.output_closed:
            console.say("error", "batcher: stopped: stdout was closed by its reader", kind="BrokenPipeError")
        return result.exit_code

    return run_async(go())


# the shared job options verify accepts (one command line for every command) but has no use for
_NOT_FOR_VERIFY = (("--max-failures", "max_failures"), ("--allow-credential-reset", "allow_credential_reset"))


def cmd_verify(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``batcher verify --state FILE``: 0 every meeting as written, 1 some not, 2 usage, 3 bad token."""
    from ..commands.verify import verify_job
    from ..run.pool import Control

    if not args.state_path:
        raise UsageError("verify needs --state FILE (the state file of the job to verify)")
    if not os.path.exists(args.state_path):
        raise UsageError(f"no state file at {args.state_path}")
    outputs = [("--state", args.state_path), ("--out", None if args.out == "-" else args.out)]
    outputs += [("--html", args.html_path), ("--budget-file", getattr(args, "budget_path", None))]
    outputs += [("--summary-json", args.summary_path)]
    check_outputs(
        None, outputs, [("--token-file", args.token_file), ("the job's input", recorded_input(args.state_path))]
    )
    check_state(args.state_path, must_exist=True)
    console = _console(args)
    unused = [flag for flag, dest in _NOT_FOR_VERIFY if getattr(args, dest, None)]
    if unused:  # accepted with the shared options; said, so that nobody counts on them
        console.say("warning", f"batcher: verify writes nothing; {', '.join(unused)} have no effect here")
    env = Environment.read()
    given = {
        "base_url": args.base_url or env.base_url,
        "app_id": args.app_id or env.app_id,
        "account_id": args.account_id or env.account_id,
    }
    args.base_url, args.app_id, args.account_id = (
        given["base_url"] or DEFAULT_BASE_URL,
        given["app_id"],
        given["account_id"],
    )
    config = _config(args, console, needs_token=True)

    async def go() -> int:
        control = Control()
        install_signals(control, lambda: os._exit(130), lambda: console.say("interrupt", DRAINING))
        result = await verify_job(config, args.out, control=control, console=console, given=given)
        console.say("summary", result.message, verdicts=dict(result.counts), requests=result.requests)
        tools.write_run_report(config.state_file, args.html_path, console.say)
        if result.exit_code in (3, 130):
            _say_resume(console, argv)
        return result.exit_code

    return run_async(go())


def cmd_rollback(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """``batcher rollback --state FILE``."""
    from ..commands.rollback import rollback_job
    from ..run.pool import Control

    if not args.state_path:
        raise UsageError("rollback needs --state FILE (the state file of the job to undo)")
    if not os.path.exists(args.state_path):
        raise UsageError(f"no state file at {args.state_path}")
    report = args.report_path or f"{args.state_path}.rollback.failures.jsonl"
    extra = (
        ("--results", "results_path"),
        ("--summary-json", "summary_path"),
        ("--html", "html_path"),
        ("--budget-file", "budget_path"),
    )
    outputs = [("--state", args.state_path), ("--report", report)] + [(f, getattr(args, d, None)) for f, d in extra]
    check_outputs(
        None, outputs, [("--token-file", args.token_file), ("the job's input", recorded_input(args.state_path))]
    )
    check_state(args.state_path, must_exist=True)
    console = _console(args)
    env = Environment.read()
    given = {
        "base_url": args.base_url or env.base_url,
        "app_id": args.app_id or env.app_id,
        "account_id": args.account_id or env.account_id,
    }
    args.base_url, args.app_id, args.account_id = (
        given["base_url"] or DEFAULT_BASE_URL,
        given["app_id"],
        given["account_id"],
    )
    config = _config(args, console, needs_token=True)

    async def go() -> int:
        control = Control()
        install_signals(control, lambda: os._exit(130), lambda: console.say("interrupt", DRAINING))
        result = await rollback_job(config, control=control, console=console, given=given)
        console.say("summary", result.message, **result.summary)
        tools.write_run_report(config.state_file, args.html_path, console.say)
        if result.exit_code == 130:
            _say_resume(console, argv, "batcher: interrupted; state saved.")
        elif result.exit_code == 3:
            _say_resume(console, argv)
        return result.exit_code

    return run_async(go())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, map errors to exit codes."""
    if argv is not None and threading.current_thread() is threading.main_thread():
        # called as a library (tests): give the caller its signal handlers back afterwards
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return _main(list(argv))
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
    return _main(list(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "plan":
            return cmd_plan(args)
        if args.command == "rollback":
            return cmd_rollback(args, argv)
        if args.command == "verify":
            return cmd_verify(args, argv)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "report":
            return tools.cmd_report(args)
        return cmd_fake_api(args)
    except BatcherError as exc:
        if getattr(args, "verbose", False):
            traceback.print_exc()
        _console(args).say("error", f"batcher: error: {exc}", kind=type(exc).__name__, exit_code=exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout's reader went away (| head): not an error of the job; the interpreter's
        # final flush must not fail again, so stdout now goes nowhere
        from ..report.outputs import silence_stdout

        silence_stdout()
        _console(args).say("error", "batcher: stopped: stdout was closed by its reader", kind="BrokenPipeError")
        return 130
    except Exception as exc:  # the one place foreign errors become a sentence (OSError, sqlite3.Error, ...)
        if getattr(args, "verbose", False):
            traceback.print_exc()
        hint = "" if getattr(args, "verbose", False) else " (-v shows the traceback)"
        text = f"batcher: error: {describe_exception(exc)}{hint}"
        _console(args).say("error", text, kind=type(exc).__name__, exit_code=2)
        return 2
