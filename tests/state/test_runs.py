"""Runs in the state: each run is opened on the job's timeline, closed with its exit code."""

from __future__ import annotations


def test_a_run_of_a_job_begun_hours_ago_starts_with_wide_buckets(tmp_path):
    """Guards ``runs.open_run``: a run's bucket widths follow the job's age, not the run's."""
    from batcher.core.timings import Timeline
    from batcher.state import runs
    from batcher.state.store import Store

    now = [1_800_000_000.0]
    store = Store.open(str(tmp_path / "job.state.db"))
    try:
        first = Timeline(lambda: now[0])
        runs.open_run(store, first, "run", {})
        runs.close_run(store, first, 130)
        now[0] += 7 * 3600  # resumed seven hours later
        second = Timeline(lambda: now[0])
        runs.open_run(store, second, "run", {})
        assert second.span(now[0])[1] == 60, "a resumed run began again with 1-s buckets"
        assert first.span(1_800_000_000.0)[1] == 1
    finally:
        store.close()
