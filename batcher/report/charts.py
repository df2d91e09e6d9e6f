"""The report's charts: Vega-Lite specifications rendered offline to inline SVG by vl-convert.

Specs are plain dicts (Vega-Lite's JSON grammar), built from ``report.data``
values; ``render`` turns one into an ``<svg>`` string. vl-convert carries the
Vega-Lite compiler and renderer (in Rust, with an embedded JavaScript engine),
so no browser, network or font download is needed, and it is imported only
here, when a report is written: ``run`` without ``--html`` never loads it.
``allowed_base_urls=[]`` forbids any data fetch, so a chart is made only of
the values given.

Times on the x axis are UTC.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .data import Interval, Outcomes, TimelineView

WIDTH = 820
HEIGHT = 190
COLORS = {
    "rows/s": "#1f77b4",
    "requests/s": "#9467bd",
    "rate promise": "#2ca02c",
    "ceiling (auto)": "#8c8c8c",
    "retries": "#ff7f0e",
    "429 answers": "#d62728",
    "p50": "#1f77b4",
    "p95": "#ff7f0e",
    "p99": "#d62728",
}
PAUSE_COLOR = "#f5c26b"
CONFIG = {
    "font": "sans-serif",
    # vl-convert measures text with its own fonts; a browser's may be wider: room so no label is cut
    "padding": {"left": 40, "right": 20, "top": 6, "bottom": 6},
    "view": {"stroke": "#ddd"},
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal"},
    "legend": {"orient": "top", "labelFontSize": 12, "title": None},
    "title": {"fontSize": 14, "anchor": "start"},
}


def iso(epoch: float) -> str:
    """Unix seconds as an ISO 8601 UTC string (what the charts' time axis reads)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def render(spec: dict[str, Any]) -> str:
    """One chart as an SVG document string (no network: data must be inline)."""
    import vl_convert  # lazily: only a report pays for it

    return vl_convert.vegalite_to_svg({"config": CONFIG, **spec}, allowed_base_urls=[])


def _x(timeline: TimelineView) -> dict[str, Any]:
    # utcFormat, not the axis' format: a format alone follows the renderer's local time zone
    time_format = _time_format(timeline)
    axis: dict[str, Any] = {
        "labelExpr": f"utcFormat(datum.value, '{time_format}')",
        "labelOverlap": "greedy",
        "labelSeparation": 14,
    }
    shown = [i for i in timeline.intervals if i is not None]
    if shown and shown[-1].start + timeline.width_s - shown[0].start <= 10:
        # a job of a few seconds: sub-second ticks would repeat one label over another; whole seconds only
        first, last = int(shown[0].start), int(shown[-1].start + timeline.width_s)
        axis["values"] = [second * 1000 for second in range(first, last + 1)]
    return {"field": "t", "type": "temporal", "scale": {"type": "utc"}, "title": "time (UTC)", "axis": axis}


def _time_format(timeline: TimelineView) -> str:
    """Clock time for a job within a day, the date too for a longer one."""
    shown = [i for i in timeline.intervals if i is not None]
    span = shown[-1].start - shown[0].start if shown else 0
    return "%H:%M:%S" if span < 3600 else "%H:%M" if span < 86400 else "%b %d %H:%M"


def _color(names: list[str]) -> dict[str, Any]:
    return {"field": "series", "type": "nominal", "scale": {"domain": names, "range": [COLORS[n] for n in names]}}


def _pause_layer(timeline: TimelineView) -> list[dict[str, Any]]:
    if not timeline.pauses:
        return []
    values = [{"t": iso(s), "t2": iso(e)} for s, e in timeline.pauses]
    return [
        {
            "data": {"values": values},
            "mark": {"type": "rect", "color": PAUSE_COLOR, "opacity": 0.45},
            "encoding": {"x": _x(timeline), "x2": {"field": "t2"}},
        }
    ]


def _points(timeline: TimelineView, value: Any, series: str, steps: bool = False) -> list[dict[str, Any]]:
    """One series over the intervals; a gap between runs breaks the line (a null value).

    ``steps`` (a step-after line): each stretch of intervals ends with its last value again at the
    end of its last interval, so a job of a single interval (under a second) still draws its line.
    """
    out = []
    for i, interval in enumerate(timeline.intervals):
        if interval is None:
            continue
        out.append({"t": iso(interval.start), "series": series, "v": value(interval)})
        if i + 1 == len(timeline.intervals) or timeline.intervals[i + 1] is None:
            end = interval.start + timeline.width_s
            if steps:
                out.append({"t": iso(end), "series": series, "v": value(interval)})
            if i + 1 < len(timeline.intervals):
                out.append({"t": iso(end), "series": series, "v": None})
    return out


def throughput(timeline: TimelineView, title: str) -> dict[str, Any]:
    """Rows/s and requests/s per interval, each run's rate promise, Retry-After pauses and 429s."""
    x = _x(timeline)
    values = _points(timeline, lambda i: round(i.rows_per_s, 3), "rows/s", steps=True)
    values += _points(timeline, lambda i: round(i.requests_per_s, 3), "requests/s", steps=True)
    names = ["rows/s", "requests/s"]
    for run in timeline.runs:
        per_s = run.options.get("rate_per_s")
        end = run.ended or max((i.start + i.width_s for i in timeline.intervals if i), default=run.started)
        # --rate auto promises nothing: its N/T is only the ceiling it never goes above
        series = "ceiling (auto)" if str(run.options.get("rate", "")).startswith("auto") else "rate promise"
        if per_s:
            values += [
                {"t": iso(run.started), "series": series, "v": per_s},
                {"t": iso(end), "series": series, "v": per_s},
                {"t": iso(end + 0.001), "series": series, "v": None},
            ]
    names += [n for n in ("rate promise", "ceiling (auto)") if any(v["series"] == n for v in values)]
    note = _burst_note(timeline)
    throttled = [
        {"t": iso(i.start + i.width_s / 2), "v": round(i.requests_per_s, 3), "n": i.bucket.answers.get("429", 0)}
        for i in timeline.intervals
        if i is not None and i.bucket.answers.get("429")
    ]
    layers = _pause_layer(timeline)
    layers.append(
        {
            "data": {"values": values},
            "mark": {"type": "line", "interpolate": "step-after", "strokeWidth": 1.8},
            "encoding": {
                "x": x,
                "y": {"field": "v", "type": "quantitative", "title": "per second"},
                "color": _color(names),
                "strokeDash": {
                    "field": "series",
                    "type": "nominal",
                    "scale": {"domain": names, "range": [[1, 0] if n.endswith("/s") else [6, 4] for n in names]},
                },
            },
        }
    )
    if throttled:
        layers.append(
            {
                "data": {"values": throttled},
                "mark": {"type": "point", "shape": "triangle-down", "filled": True, "color": COLORS["429 answers"]},
                "encoding": {"x": x, "y": {"field": "v", "type": "quantitative"}, "size": {"value": 70}},
            }
        )
    layers += _run_rules(timeline)
    heading: Any = {"text": title, "subtitle": note} if note else title
    return {"title": heading, "width": WIDTH, "height": HEIGHT, "layer": layers}


def _burst_note(timeline: TimelineView) -> str:
    """A rate is N per T seconds: an interval shorter than T may legally show a burst above N/T."""
    windows = set()
    for run in timeline.runs:
        rate = str(run.options.get("rate", ""))
        match = re.search(r"(\d+)/([\d.]+)", rate)
        if match and run.options.get("rate_per_s") and float(match[2]) > timeline.width_s:
            windows.add(f"{int(match[1]):,} per {float(match[2]):g} s")
    if not windows:
        return ""
    return (
        f"The rate promised is {' / '.join(sorted(windows))}, not per second: a burst within it "
        f"may plot above that rate on a {timeline.width_s} s point."
    )


def _run_rules(timeline: TimelineView) -> list[dict[str, Any]]:
    """A thin vertical line where each run starts, labelled with its number."""
    x = _x(timeline)
    if len(timeline.runs) < 2:
        return []
    values = [{"t": iso(r.started), "label": f"{timeline.runs[0].kind} #{r.id}"} for r in timeline.runs]
    return [
        {
            "data": {"values": values},
            "mark": {"type": "rule", "color": "#555", "strokeDash": [2, 2]},
            "encoding": {"x": x},
        },
        {
            "data": {"values": values},
            "mark": {"type": "text", "align": "left", "dx": 3, "dy": -4, "fontSize": 10, "color": "#555"},
            "encoding": {"x": x, "y": {"value": 0}, "text": {"field": "label"}},
        },
    ]


def retries(timeline: TimelineView, title: str) -> dict[str, Any]:
    """Retries and 429 answers per interval, with the Retry-After pauses shaded."""
    x = _x(timeline)
    values = _points(timeline, lambda i: i.bucket.retries, "retries", steps=True)
    values += _points(timeline, lambda i: i.bucket.answers.get("429", 0), "429 answers", steps=True)
    layers = _pause_layer(timeline)
    layers.append(
        {
            "data": {"values": values},
            "mark": {"type": "line", "interpolate": "step-after", "strokeWidth": 1.8},
            "encoding": {
                "x": x,
                "y": {"field": "v", "type": "quantitative", "title": f"per {timeline.width_s} s"},
                "color": _color(["retries", "429 answers"]),
            },
        }
    )
    return {"title": title, "width": WIDTH, "height": 140, "layer": layers}


def latency(timeline: TimelineView, title: str) -> dict[str, Any]:
    """p50, p95 and p99 request latency per interval (log scale)."""
    x = _x(timeline)
    values: list[dict[str, Any]] = []
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):

        def value(i: Interval, q: float = q) -> float | None:
            ms = i.latency_ms(q)
            return None if ms is None else round(ms, 2)

        values += _points(timeline, value, name)
    return {
        "title": title,
        "width": WIDTH,
        "height": HEIGHT,
        "data": {"values": values},
        "mark": {"type": "line", "point": {"size": 12}, "strokeWidth": 1.5},
        "encoding": {
            "x": x,
            "y": {"field": "v", "type": "quantitative", "title": "milliseconds", "scale": {"type": "log"}},
            "color": _color(["p50", "p95", "p99"]),
        },
    }


def outcomes(data: Outcomes, title: str) -> dict[str, Any]:
    """Final outcomes by kind (failed split by error kind) as labelled horizontal bars."""
    values = [{"kind": kind, "n": n, "group": kind.split(":")[0]} for kind, n in data.by_kind]
    colors = {"succeeded": "#2ca02c", "unchanged": "#98df8a", "failed": "#d62728", "skipped": "#bbbbbb"}
    groups = [g for g in (*colors, "pending") if any(v["group"] == g for v in values)]
    encoding = {
        "y": {"field": "kind", "type": "nominal", "sort": None, "title": None, "axis": {"labelLimit": 260}},
        "x": {"field": "n", "type": "quantitative", "title": "rows"},
    }
    return {
        "title": title,
        "width": WIDTH - 160,
        "data": {"values": values},
        "encoding": encoding,
        "layer": [
            {
                "mark": {"type": "bar"},
                "encoding": {
                    "color": {
                        "field": "group",
                        "type": "nominal",
                        "legend": None,
                        "scale": {"domain": groups, "range": [colors.get(g, "#9467bd") for g in groups]},
                    }
                },
            },
            {"mark": {"type": "text", "align": "left", "dx": 4}, "encoding": {"text": {"field": "n"}}},
        ],
    }
