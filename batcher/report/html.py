"""``batcher report --state FILE --html OUT``: the job as one self-contained HTML file.

One file, nothing outside it: inline CSS, charts as inline SVG (charts.py), no
script, no font, image or link to fetch; a Content-Security-Policy that forbids
every fetch says so to the browser too. It opens from a mail attachment years
later. Everything shown comes from the state file (report/data.py): the job,
its runs, throughput, retries and pauses, latency, outcomes, failures and
accounts; rollback runs of the job get the same sections. Every text is
HTML-escaped; no token, patch or credential is in the state to show.
"""

from __future__ import annotations

import html
import json
import os
import sys
import tempfile
import time
from typing import Any

from .._version import __version__
from ..core.estimate import duration_text
from ..core.schema import masked_set_argument
from . import charts
from .data import Outcomes, ReportData, TimelineView, Verification, read_report, run_status

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; }
main { max-width: 940px; margin: 0 auto; padding: 20px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 4px 0 2px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.sub { color: #666; margin: 0 0 12px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
td:last-child { white-space: normal; overflow-wrap: anywhere; min-width: 240px; }
th { background: #f0f2f5; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.kv th { width: 170px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 5px 10px; min-width: 76px; }
.card b { display: block; font-size: 20px; } .card span { color: #666; font-size: 12px; }
.ok b { color: #2a7d2a; } .bad b { color: #c62828; } .warn b { color: #b26a00; }
figure { margin: 10px 0 18px; } figure svg { max-width: 100%; height: auto; }
.note { color: #666; font-size: 12px; } code { font-size: 12px; }
.killed { color: #c62828; font-weight: 600; }
.opt { display: inline-block; margin-right: 10px; overflow-wrap: anywhere; }
"""


class Raw(str):
    """Markup made here from escaped parts: ``_table`` puts it in as it is."""


def _e(value: Any) -> str:
    if isinstance(value, Raw):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _table(header: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(spec: dict[str, Any], caption: str) -> str:
    svg = charts.render(spec)
    return f'<figure aria-label="{_e(caption)}">{svg}</figure>'


def _job_section(data: ReportData) -> str:
    job = data.job
    rows = [
        ["input", job.get("input") or "-"],
        ["mode", job.get("mode", "merge")],
        ["base URL", job.get("base_url") or "-"],
        ["app id", job.get("app_id") or "(none: the /realtimekit/ path)"],
        ["account", job.get("account_id") or "(each row's own)"],
        # a credential's value is kept only as a digest: shown as *** all the same
        ["--set", ", ".join(masked_set_argument(f"{p}={v}") for p, v in job.get("set") or []) or "-"],
        ["state file", data.state_path],
    ]
    kv = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    stats = data.stats
    out = [f'<h2>The job</h2><table class="kv">{kv}</table>']
    c = data.outcomes.counts
    total = sum(c.values())
    cards = [
        ("rows", total, ""),
        ("succeeded", c["succeeded"], "ok"),
        ("unchanged", c["unchanged"], "ok"),
        ("failed", c["failed"], "bad" if c["failed"] else ""),
        ("skipped", c["skipped"], "warn" if c["skipped"] else ""),
        # not done yet (a running job) or in flight when it was killed: status --json's "pending"
        ("pending", c["pending"], "warn" if c["pending"] else ""),
        ("requests", stats.get("requests", 0), ""),
        ("retries", stats.get("retries", 0), "warn" if stats.get("retries") else ""),
        ("sending time", duration_text(stats.get("elapsed_s", 0.0)), ""),
    ]
    out.append(
        '<div class="cards">'
        + "".join(
            f'<div class="card {cls}"><b>{_e(f"{v:,}" if isinstance(v, int) else v)}</b><span>{_e(k)}</span></div>'
            for k, v, cls in cards
        )
        + "</div>"
    )
    out.append("<h3>Runs</h3>")
    if not data.runs:
        out.append('<p class="note">This state was made before runs were recorded: no per-run timeline.</p>')
        return "".join(out)
    header = ["#", "kind", "start", "end", "exit", "rate", "concurrency", "options"]
    body = []
    for run in data.runs:
        o = run.options
        flags = [f for f in ("retry_failed", "force", "skip_invalid", "allow_credential_reset") if o.get(f)]
        extra = [*(f"--{f.replace('_', '-')}" for f in flags), *(f"--set {s}" for s in o.get("set") or [])]
        if o.get("max_failures") is not None:
            extra.append(f"--max-failures {o['max_failures']}")
        if o.get("max_attempts") is not None:
            extra.append(f"--max-attempts {o['max_attempts']}, --timeout {o.get('timeout_s')} s")
        status = run_status(run, data.running_pids)
        body.append(
            [
                run.id,
                run.kind,
                _when(run.started),
                _when(run.ended),
                status,
                o.get("rate"),
                o.get("concurrency"),
                Raw(" ".join(f'<span class="opt">{_e(x)}</span>' for x in extra)),
            ]
        )
    table = _table(header, body, {0, 6})
    out.append(table.replace("<td>killed / unknown</td>", '<td class="killed">killed / unknown</td>'))
    if any(run_status(r, data.running_pids) == "killed / unknown" for r in data.runs):
        out.append(
            '<p class="note">A run with no end was stopped without a chance to say so (kill -9, a power cut): '
            "its exit code is unknown; its rows that were in flight show as pending or were resent by the next run.</p>"
        )
    return "".join(out)


def _timeline_section(timeline: TimelineView, noun: str) -> str:
    if not any(timeline.intervals):
        return '<p class="note">No requests were recorded.</p>'
    t = timeline.totals
    pauses = sum(e - s for s, e in timeline.pauses)
    out = [
        f'<p class="sub">Each point is {timeline.width_s} s. {t.requests:,} requests ({t.retries:,} retries, '
        f"{t.answers.get('429', 0):,} answered 429), {len(timeline.pauses)} Retry-After pause(s) "
        f"totalling {pauses:.0f} s (shaded).</p>",
        _figure(charts.throughput(timeline, f"Throughput: {noun}/s and requests/s"), "throughput"),
        _figure(charts.retries(timeline, "Retries and 429 answers"), "retries"),
        _figure(charts.latency(timeline, "Request latency p50 / p95 / p99"), "latency"),
    ]
    if timeline.pauses:
        rows = [[_when(s), f"{e - s:.0f} s"] for s, e in timeline.pauses[:20]]
        more = f" (the first 20 of {len(timeline.pauses)})" if len(timeline.pauses) > 20 else ""
        out.append(
            f"<h3>Retry-After pauses{more}</h3><p class=note>Each pause from its start, cut where its run ended.</p>"
            + _table(["from", "length"], rows, {1})
        )
    return "".join(out)


def _outcomes_section(outcomes: Outcomes, noun: str) -> str:
    out = []
    if outcomes.by_kind:
        out.append(_figure(charts.outcomes(outcomes, f"Outcomes by kind ({noun})"), "outcomes"))
    if outcomes.failures:
        out.append("<h3>Failures by error kind</h3>")
        for group in outcomes.failures:
            out.append(f"<p><b>{_e(group.kind)}</b>: {group.count:,} {noun}</p>")
            shown = [[m, n] for m, n in group.messages]
            if group.other_messages:
                shown.append([Raw("<i>other messages</i>"), group.other_messages])
            out.append(_table(["top messages", "count"], shown, {1}))
            out.append(
                _table(["row", "meeting", "account", "status", "message"], [list(x) for x in group.examples], {0})
            )
    else:
        out.append(f'<p class="note">No {noun} failed.</p>')
    header = ["account", "app", "total", "succeeded", "unchanged", "failed", "skipped", "pending"]
    rows = [
        [
            a["account_id"] if "other_accounts" not in a else Raw(f"<i>{a['other_accounts']:,} other accounts</i>"),
            a["app_id"] or "-",
            a["total"],
            a["succeeded"],
            a["unchanged"],
            a["failed"],
            a["skipped"],
            a["pending"],
        ]
        for a in outcomes.accounts
    ]
    out.append("<h3>Per account</h3>" + _table(header, rows, {2, 3, 4, 5, 6, 7}))
    return "".join(out)


def render_report(data: ReportData) -> str:
    """The whole HTML document."""
    source = data.job.get("input")
    name = os.path.basename(source if source and source != "-" else data.state_path)
    parts = [
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>batcher report: {_e(name)}</title><style>{STYLE}</style></head><body><main>",
        f"<h1>batcher report: {_e(name)}</h1>",
        f'<p class="sub">Generated {_when(data.generated_at)} by batcher {__version__} from {_e(data.state_path)}. '
        "All times UTC.</p>",
        _job_section(data),
    ]
    if "run" in data.timelines:
        parts += ["<h2>Timeline</h2>", _timeline_section(data.timelines["run"], "rows")]
    parts += ["<h2>Outcomes</h2>", _outcomes_section(data.outcomes, "rows")]
    if data.normalised:
        rows = [[path, e["rows"], _json(e["sent"]), _json(e["held"])] for path, e in sorted(data.normalised.items())]
        parts.append(
            "<h3>Normalised values</h3><p class=sub>Rows that succeeded, whose write's answer held another value "
            "than the one sent at a path the row set (one example a path).</p>"
            + _table(["path", "rows", "sent (example)", "held"], rows, {1})
        )
    if data.rollback is not None:
        stats = data.rollback_stats or {}
        parts.append(
            f"<h2>Rollback</h2><p class=sub>{stats.get('requests', 0):,} requests "
            f"({stats.get('retries', 0):,} retries) over every rollback of this job.</p>"
        )
        if "rollback" in data.timelines:
            parts.append(_timeline_section(data.timelines["rollback"], "meetings"))
        parts.append(_outcomes_section(data.rollback, "meetings"))
    if data.verification is not None:
        parts.append(_verification_section(data.verification))
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _verification_section(found: Verification) -> str:
    """``batcher verify``'s latest pass: verdicts, and the meetings not as written with their paths."""
    total = sum(found.counts.values())
    state = "" if found.is_complete else " (stopped before its end: run batcher verify again to finish it)"
    counts = ", ".join(f"{found.counts.get(v, 0):,} {v}" for v in ("as_written", "drifted", "missing", "unknown"))
    out = [f"<h2>Verification</h2><p class=sub>The latest batcher verify: {total:,} meetings{state}: {counts}.</p>"]
    if not found.examples:
        out.append('<p class="note">Every meeting the job changed is as the job left it.</p>')
        return "".join(out)
    rows = [
        [
            line["row"],
            line["meeting_id"],
            line["account_id"],
            line["verdict"],
            "; ".join(f"{c['path']}: {_json(c['written'])} -> {_json(c['now'])}" for c in line["changes"])
            or line.get("message", ""),
        ]
        for line in found.examples
    ]
    out.append(_table(["row", "meeting", "account", "verdict", "what changed (written -> now)"], rows, {0}))
    return "".join(out)


def write_html_report(state_path: str, out_path: str, now: float | None = None) -> ReportData:
    """Read the state and write the report to ``out_path`` (``-``: stdout).

    A file is written whole or not at all (a temporary file beside it, renamed);
    a device or pipe (``/dev/stdout``) is written directly, never replaced.
    """
    data = read_report(state_path, now)
    text = render_report(data)
    if out_path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return data
    if os.path.exists(out_path) and not os.path.isfile(out_path):
        with open(out_path, "w", encoding="utf-8") as out:
            out.write(text)
        return data
    folder = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(prefix=".batcher-report-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, _mode_for(out_path))
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return data


def _mode_for(path: str) -> int:
    """An existing file keeps its mode; a new one gets what the umask allows (mkstemp's is 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
