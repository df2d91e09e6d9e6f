"""Runs in the state: ``runs.recording`` writes a run's start on entry and its end exactly once, on
every way out; bucket widths follow the job's age."""

from __future__ import annotations

import pytest

from batcher.core.timings import Timeline
from batcher.errors import HaltError, Interrupted
from batcher.state import runs
from batcher.state.store import Store

T0 = 1_800_000_000.0


def _ends_written(store: Store) -> list[str]:
    """Collects every statement that writes a run's end, as SQLite runs them."""
    seen: list[str] = []
    store.db.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("UPDATE runs SET ended") else None)
    return seen


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [(HaltError("too many failures"), 3), (Interrupted("SIGTERM"), 130), (KeyboardInterrupt(), 130), (OSError(), 2)],
    ids=["halt", "interrupted", "keyboard-interrupt", "crash"],
)
def test_a_run_whose_body_raises_is_closed_once_with_the_exit_code_of_its_error(tmp_path, error, exit_code):
    store = Store.open(str(tmp_path / "job.state.db"))
    now = [T0]
    timeline = Timeline(lambda: now[0])
    ends = _ends_written(store)
    with pytest.raises(type(error)), runs.recording(store, timeline, "run", {"rate": "none"}) as run:
        now[0] += 5
        raise error
    [record] = runs.read_runs(store.db)
    assert (record.id, record.kind, record.started, record.ended) == (run.id, "run", T0, T0 + 5)
    assert record.exit_code == exit_code and record.options == {"rate": "none"}
    assert len(ends) == 1
    store.close()


def test_a_run_that_ends_normally_records_the_exit_code_its_body_set(tmp_path):
    store = Store.open(str(tmp_path / "job.state.db"))
    timeline = Timeline(lambda: T0)
    ends = _ends_written(store)
    with runs.recording(store, timeline, "rollback", {}) as run:
        [started] = runs.read_runs(store.db)
        assert started.ended is None, "the start is written before the body runs"
        run.exit_code = 1
    [record] = runs.read_runs(store.db)
    assert (record.kind, record.ended, record.exit_code) == ("rollback", T0, 1)
    assert len(ends) == 1
    store.close()


def test_the_buckets_of_a_run_are_committed_with_its_end(tmp_path):
    store = Store.open(str(tmp_path / "job.state.db"))
    timeline = Timeline(lambda: T0)
    with runs.recording(store, timeline, "run", {}):
        timeline.row("succeeded", count=4)
    [(run_id, start, _, bucket)] = runs.read_timeline(store.db)
    assert (start, bucket.rows) == (T0, {"succeeded": 4})
    assert run_id == runs.read_runs(store.db)[0].id
    store.close()


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


def test_the_jobs_recent_activity_is_its_starts_in_the_window_and_the_end_of_its_latest_pause(tmp_path):
    """What a resumed run with another token must honour (``Pacer.inherit``): each request at its
    bucket's end (the latest it may have started, never after now), and a pause still under way."""
    store = Store.open(str(tmp_path / "job.state.db"))
    now = [T0]
    timeline = Timeline(lambda: now[0])
    with runs.recording(store, timeline, "run", {}):
        timeline.request("PUT", T0 - 0.5, 200, None, False)  # an old one, outside the window asked for
        now[0] = T0 + 20.25
        for _ in range(3):
            timeline.request("PUT", now[0], 200, None, False)
        timeline.pause(300.0)  # a Cloudflare lockout, 5 minutes
    starts, paused_until = runs.recent_activity(store.db, since=T0 + 10, now=T0 + 20.5)
    assert starts == [T0 + 20.5] * 3, "each at the end of its 1-s bucket, capped at now"
    assert paused_until == pytest.approx(T0 + 20.25 + 300.0)
    assert runs.recent_activity(store.db, since=T0 + 400, now=T0 + 400) == ([], pytest.approx(T0 + 320.25))
    store.close()
