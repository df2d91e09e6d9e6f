"""The report's charts: Vega-Lite specs drawn from the timeline, rendered to SVG offline."""

from __future__ import annotations

from collections import Counter

from batcher.core.timings import Bucket
from batcher.report import charts
from batcher.report.data import TimelineView, build_timeline
from batcher.state.runs import RunRecord

from ..fake_time import T0


def chart_runs(*rates: tuple[str, float | None], width_s: int = 1) -> TimelineView:
    runs = [
        RunRecord(i + 1, "run", T0 + 10 * i, T0 + 10 * i + 5, 0, 1, {"rate": r, "rate_per_s": p})
        for i, (r, p) in enumerate(rates)
    ]
    bucket = Bucket(methods=Counter({"GET": 3}))
    return build_timeline(runs, [(1, T0, width_s, bucket)])


def test_auto_rate_draws_a_ceiling_not_a_promise_and_a_window_longer_than_a_point_is_said():
    """Guards the throughput chart: --rate auto draws a ceiling, not a promise; a window longer than a point is said."""
    spec = charts.throughput(chart_runs(("auto (ceiling 1200/300)", 4.0)), "Throughput")
    names = {v["series"] for layer in spec["layer"] for v in layer.get("data", {}).get("values", []) if "series" in v}
    assert "ceiling (auto)" in names and "rate promise" not in names
    assert spec["title"]["subtitle"].startswith("The rate promised is 1,200 per 300 s")
    spec = charts.throughput(chart_runs(("50/1", 50.0)), "Throughput")
    names = {v["series"] for layer in spec["layer"] for v in layer.get("data", {}).get("values", []) if "series" in v}
    assert "rate promise" in names and spec["title"] == "Throughput"  # a 1 s window: nothing to say
    charts.render(charts.throughput(chart_runs(("auto (ceiling 1200/300)", 4.0), ("50/1", 50.0)), "Throughput"))


def test_a_job_under_a_second_draws_its_throughput_line_and_labels_whole_seconds_only():
    """Guards the throughput chart of a job under a second: a line needs two points; only whole seconds are labelled."""
    run = RunRecord(1, "run", T0 + 0.2, T0 + 0.7, 0, 1, {"rate": "none", "rate_per_s": None})
    view = build_timeline([run], [(1, T0, 1, Bucket(methods=Counter({"GET": 6, "PUT": 6})))])
    spec = charts.throughput(view, "Throughput")
    [line] = [layer for layer in spec["layer"] if layer["mark"]["type"] == "line"]
    drawn = [v for v in line["data"]["values"] if v["series"] == "requests/s" and v["v"] is not None]
    assert len(drawn) >= 2 and {v["v"] for v in drawn} == {12.0}  # a line needs two points
    assert line["encoding"]["x"]["axis"]["values"] == [T0 * 1000, (T0 + 1) * 1000]
    assert "<svg" in charts.render(spec)
