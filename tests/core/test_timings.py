"""The timeline's buckets on a fake clock: boundaries, pauses, percentiles, durability, size."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from batcher.core.timings import (
    HORIZON_S,
    PERCENTILE_ERROR,
    Bucket,
    Timeline,
    bin_of,
    bin_value,
    load_buckets,
    percentile,
)
from batcher.state import runs
from batcher.state.store import Store

from ..fake_time import T0, FakeClock


def exact_percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_from_the_histogram_are_within_the_stated_error(seed):
    rng = random.Random(seed)
    samples = [rng.lognormvariate(-2.0, 1.5) for _ in range(5000)] + [0.0002, 31.0]
    histogram: dict[int, int] = {}
    for value in samples:
        histogram[bin_of(value)] = histogram.get(bin_of(value), 0) + 1
    assert PERCENTILE_ERROR < 0.045
    for q in (0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        true, got = exact_percentile(samples, q), percentile(histogram, q)
        assert abs(got - true) / true <= PERCENTILE_ERROR + 1e-9, (q, true, got)


def test_every_latency_is_within_the_error_of_its_bins_middle():
    for value in [1e-4 * 1.0001**k for k in range(0, 200000, 997)]:
        assert abs(bin_value(bin_of(value)) - value) / value <= PERCENTILE_ERROR + 1e-9


def test_percentile_of_an_empty_histogram_is_none():
    assert percentile({}, 0.5) is None


def saved(timeline: Timeline) -> dict[float, tuple[int, Bucket]]:
    """What the next group commit writes: start -> (width, bucket)."""
    return {args[1]: (args[2], Bucket.from_json(args[3])) for args in timeline.changed()}


def started_timeline(clock: FakeClock) -> Timeline:
    timeline = Timeline(clock)
    timeline.start(1)
    return timeline


def test_a_request_counts_in_the_bucket_it_started_in_not_the_one_it_ended_in():
    clock = FakeClock()
    timeline = started_timeline(clock)
    clock.now = T0 + 0.5
    started = timeline.now()
    clock.now += 1.0  # it ends in the next bucket
    timeline.request("GET", started, 200, None, is_retry=False)
    clock.now = T0 + 1  # exactly on the boundary: the next bucket
    timeline.request("PUT", timeline.now(), None, "timeout", is_retry=True)
    buckets = saved(timeline)
    assert set(buckets) == {T0, T0 + 1}
    first, later = buckets[T0][1], buckets[T0 + 1][1]
    assert first.methods == {"GET": 1} and first.retries == 0 and first.answers == {"200": 1}
    assert later.methods == {"PUT": 1} and later.retries == 1 and later.answers == {"timeout": 1}
    assert percentile(first.latency, 0.5) == pytest.approx(1.0, rel=PERCENTILE_ERROR)


@pytest.mark.parametrize(
    ("origin", "age", "span"),
    [
        (T0, 0, (T0, 1)),
        (T0, 599.9, (T0 + 599, 1)),
        (T0, 600, (T0 + 600, 5)),
        (T0, 3599.9, (T0 + 3595, 5)),
        (T0, 3600, (T0 + 3600, 30)),
        (T0, 6 * 3600 - 0.1, (T0 + 6 * 3600 - 30, 30)),
        (T0, 6 * 3600, (T0 + 6 * 3600, 60)),
        (T0, 9 * 86400 + 7, (T0 + 9 * 86400, 60)),
        # a run that starts off the grid: each width takes over on a multiple of itself, so a wider
        # bucket never overlaps the narrower ones before it
        (T0 + 0.3, 602, (T0 + 602, 1)),
        (T0 + 0.3, 605, (T0 + 605, 5)),
        (T0 + 17, 3600 + 20, (T0 + 3630, 30)),
        (T0 + 17, 3600 + 2, (T0 + 3615, 5)),
    ],
)
def test_buckets_widen_with_the_age_of_the_run_on_their_own_grid(origin, age, span):
    clock = FakeClock(origin)
    timeline = started_timeline(clock)
    assert timeline.span(origin + age) == span


def test_buckets_of_a_run_never_overlap():
    clock = FakeClock(T0 + 3.7)
    timeline = started_timeline(clock)
    spans = sorted({timeline.span(T0 + 3.7 + k * 0.5) for k in range(2 * 7 * 3600)})
    assert all(a[0] + a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert {w for _, w in spans} == {1, 5, 30, 60}


def test_a_pause_is_kept_where_it_begins_and_overlaps_count_once():
    clock = FakeClock(T0 + 0.5)
    timeline = started_timeline(clock)
    timeline.pause(2.5)  # 0.5 .. 3
    clock.now = T0 + 2
    timeline.pause(0.5)  # inside the first: nothing new
    clock.now = T0 + 2.8
    timeline.pause(0.5)  # extends it to 3.3: 0.3 more seconds, still one pause
    clock.now = T0 + 5
    timeline.pause(1)  # a new one
    buckets = saved(timeline)
    # (start, seconds) in the bucket current when it was announced; an extension adds its extra seconds only
    spans = {start - T0: [(round(s - T0, 6), round(n, 6)) for s, n in b.spans] for start, (_, b) in buckets.items()}
    assert spans == {0: [(0.5, 2.5)], 2: [(3, 0.3)], 5: [(5, 1)]}
    assert sum(b.pauses for _, b in buckets.values()) == 2
    assert buckets[T0][1].pauses == 1 and buckets[T0 + 5][1].pauses == 1


def test_rows_count_by_outcome_and_failure_kind():
    timeline = started_timeline(FakeClock())
    timeline.row("succeeded")
    timeline.row("failed", "not_found")
    timeline.row("failed", "not_found")
    timeline.row("skipped", count=7)
    timeline.row("skipped", count=0)
    [(_, bucket)] = saved(timeline).values()
    assert bucket.rows == {"succeeded": 1, "failed:not_found": 2, "skipped": 7}


def test_nothing_is_written_before_the_run_is_opened_and_only_touched_buckets_after():
    clock = FakeClock()
    timeline = Timeline(clock)
    timeline.row("succeeded")
    assert timeline.changed() == []
    timeline.start(3)
    assert [args[:3] for args in timeline.changed()] == [(3, T0, 1)]
    assert timeline.changed() == []  # nothing new
    clock.now += 3
    timeline.row("unchanged")
    assert [args[:3] for args in timeline.changed()] == [(3, T0 + 3, 1)]


def test_group_commits_rewrite_a_bucket_whole_so_the_state_holds_every_event(tmp_path):
    clock = FakeClock()
    timeline = Timeline(clock)
    store = Store.open(str(tmp_path / "s.db"))
    runs.open_run(store, timeline, "run", {})
    for i in range(95):
        clock.now = T0 + i * 0.37
        timeline.request("GET", timeline.now(), 200, None, False)
        if i % 7 == 0:
            store.flush()  # mid-bucket: the bucket is written again later (flush_extras)
    runs.close_run(store, timeline, 0)
    rows = store.db.execute("SELECT run, start, width, data FROM timeline")
    kept = list(load_buckets(rows))
    assert sum(b.requests for *_, b in kept) == 95
    assert len(kept) == math.floor(94 * 0.37) + 1
    [run] = runs.read_runs(store.db)
    assert (run.kind, run.exit_code, run.ended) == ("run", 0, clock.now)
    store.close()


def test_memory_keeps_only_recent_buckets_and_a_very_late_request_still_counts():
    clock = FakeClock()
    timeline = started_timeline(clock)
    first = timeline.now()
    for i in range(int(3 * HORIZON_S)):  # 45 minutes, one request a second
        clock.now = T0 + i
        timeline.request("GET", timeline.now(), 200, None, False)
        timeline.changed()
    assert len(timeline._buckets) <= HORIZON_S / 5 + 20
    timeline.request("PUT", first, None, "timeout", False)  # started 45 minutes ago: its bucket is gone
    [(start, (_, bucket))] = saved(timeline).items()
    assert start == timeline.span(clock.now)[0] and bucket.methods["PUT"] == 1


def state_bytes(store: Store) -> int:
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (pages,) = store.db.execute("PRAGMA page_count").fetchone()
    (size,) = store.db.execute("PRAGMA page_size").fetchone()
    return pages * size


def simulate_job(path: str, hours: int, rate_per_s: float, seed: int = 1) -> list[int]:
    """A busy job on a fake clock (lognormal latencies, a few 429s), group-committed four times a
    simulated second. Returns the state's size at each whole hour (index 0: at the start)."""
    rng = random.Random(seed)
    clock = FakeClock()
    timeline = Timeline(clock)
    store = Store.open(path)
    runs.open_run(store, timeline, "run", {})
    sizes = [state_bytes(store)]
    next_flush, n = T0, 0
    while len(sizes) <= hours:
        started = clock.now
        clock.now += rng.lognormvariate(-2.5, 0.8)
        timeline.request("GET" if n % 2 == 0 else "PUT", started, 429 if rng.random() < 0.002 else 200, None, False)
        clock.now = started + 1 / rate_per_s
        if n % 2:
            timeline.row("succeeded" if rng.random() < 0.97 else "failed", "not_found")
        n += 1
        if clock.now >= next_flush:
            store.flush()
            next_flush = clock.now + 0.25
        if clock.now >= T0 + 3600 * len(sizes):
            store.flush()
            sizes.append(state_bytes(store))
    store.close()
    return sizes


def test_the_state_grows_by_a_bounded_amount_per_hour_of_a_busy_job(tmp_path):
    # 8 hours at 20 requests/s (5 x Cloudflare's global limit). docs/performance.md (the state file) gives
    # the measured figures; these bounds leave room for SQLite's page slack.
    sizes = simulate_job(str(tmp_path / "long.db"), 8, 20)
    per_hour = [b - a for a, b in itertools.pairwise(sizes)]
    assert per_hour[0] < 400 * 1024  # the first hour: 600 buckets of 1 s, 600 of 5 s
    assert max(per_hour[6:]) < 40 * 1024  # from the sixth hour on: 60 buckets an hour


def test_a_year_long_retry_after_adds_one_bucket_not_one_per_future_bucket():
    """Guards Timeline.pause: a pause far into the future is kept where it begins, not in every future bucket."""
    clock = FakeClock(T0 + 0.5)
    timeline = Timeline(clock)
    timeline.start(1)
    timeline.pause(31_536_000)  # a year: legal per the contract
    clock.now += 1
    timeline.pause(31_536_000)  # overlaps the first: one pause, 1 s longer
    rows = timeline.changed()
    assert len(rows) <= 2  # before: one bucket per future bucket (527,050 of them)
    spans = {args[1] - T0: Bucket.from_json(args[3]).spans for args in rows}
    assert spans == {0: [(T0 + 0.5, 31_536_000.0)], 1: [(T0 + 0.5 + 31_536_000, 1.0)]}
