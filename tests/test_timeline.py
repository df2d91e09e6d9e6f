"""The timeline's buckets on a fake clock: boundaries, pauses, percentiles, durability, size."""

from __future__ import annotations

import math
import os
import random

import pytest

from batcher import runs
from batcher.store import Store
from batcher.timeline import (
    BUCKET_S,
    HORIZON_S,
    PERCENTILE_ERROR,
    Bucket,
    Timeline,
    bin_of,
    bin_value,
    load_buckets,
    percentile,
)

T0 = 1_800_000_000.0  # a whole multiple of BUCKET_S: bucket starts are easy to name


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


def test_a_request_counts_in_the_bucket_it_started_in_not_the_one_it_ended_in():
    clock = FakeClock(T0 + BUCKET_S - 0.5)
    timeline = Timeline(clock)
    timeline.run_id = 1
    started = timeline.now()
    clock.now += 1.0  # it ends in the next bucket
    timeline.request("GET", started, 200, None, is_retry=False)
    clock.now = T0 + BUCKET_S  # exactly on the boundary: the next bucket
    timeline.request("PUT", timeline.now(), None, "timeout", is_retry=True)
    buckets = {start: Bucket.from_json(data) for _, (_, start, data) in timeline.statements()}
    assert set(buckets) == {T0, T0 + BUCKET_S}
    assert buckets[T0].methods == {"GET": 1} and buckets[T0].retries == 0 and buckets[T0].answers == {"200": 1}
    later = buckets[T0 + BUCKET_S]
    assert later.methods == {"PUT": 1} and later.retries == 1 and later.answers == {"timeout": 1}
    assert percentile(buckets[T0].latency, 0.5) == pytest.approx(1.0, rel=PERCENTILE_ERROR)


def test_a_pause_is_spread_over_the_buckets_it_covers_and_overlaps_count_once():
    clock = FakeClock(T0 + 5)
    timeline = Timeline(clock)
    timeline.run_id = 1
    timeline.pause(25)  # 5..30
    clock.now = T0 + 20
    timeline.pause(3)  # inside the first: nothing new
    clock.now = T0 + 28
    timeline.pause(5)  # extends it to 33: 3 more seconds, still one pause
    clock.now = T0 + 40
    timeline.pause(2)  # a new one
    buckets = {start: Bucket.from_json(data) for _, (_, start, data) in timeline.statements()}
    paused = {start - T0: b.paused_s for start, b in buckets.items()}
    assert paused == {0: 5, 10: 10, 20: 10, 30: 3, 40: 2}
    assert sum(b.pauses for b in buckets.values()) == 2
    assert buckets[T0].pauses == 1 and buckets[T0 + 40].pauses == 1


def test_rows_count_by_outcome_and_failure_kind():
    timeline = Timeline(FakeClock())
    timeline.run_id = 1
    timeline.row("succeeded")
    timeline.row("failed", "not_found")
    timeline.row("failed", "not_found")
    timeline.row("skipped", count=7)
    timeline.row("skipped", count=0)
    [(_, (_, _, data))] = timeline.statements()
    assert Bucket.from_json(data).rows == {"succeeded": 1, "failed:not_found": 2, "skipped": 7}


def test_nothing_is_written_before_the_run_is_opened_and_only_touched_buckets_after():
    clock = FakeClock()
    timeline = Timeline(clock)
    timeline.row("succeeded")
    assert timeline.statements() == []
    timeline.run_id = 3
    assert [args[:2] for _, args in timeline.statements()] == [(3, T0)]
    assert timeline.statements() == []  # nothing new
    clock.now += 3 * BUCKET_S
    timeline.row("unchanged")
    assert [args[:2] for _, args in timeline.statements()] == [(3, T0 + 3 * BUCKET_S)]


def test_group_commits_rewrite_a_bucket_whole_so_the_state_holds_every_event(tmp_path):
    clock = FakeClock()
    timeline = Timeline(clock)
    store = Store.open(str(tmp_path / "s.db"))
    runs.open_run(store.db, timeline, "run", {})
    for i in range(95):
        clock.now = T0 + i * 0.37
        timeline.request("GET", timeline.now(), 200, None, False)
        if i % 7 == 0:
            store.flush(*timeline.statements())  # mid-bucket: the bucket is written again later
    runs.close_run(store, timeline, 0)
    saved = list(load_buckets(store.db.execute("SELECT run, start, data FROM timeline")))
    assert sum(b.requests for _, _, b in saved) == 95
    assert len(saved) == math.ceil(94 * 0.37 / BUCKET_S)
    [run] = runs.read_runs(store.db)
    assert (run.kind, run.exit_code, run.ended) == ("run", 0, clock.now)
    store.close()


def test_memory_keeps_only_recent_buckets_and_a_very_late_request_still_counts():
    clock = FakeClock()
    timeline = Timeline(clock)
    timeline.run_id = 1
    first = timeline.now()
    for i in range(int(3 * HORIZON_S)):  # 45 minutes, one request a second
        clock.now = T0 + i
        timeline.request("GET", timeline.now(), 200, None, False)
        timeline.statements()
    assert len(timeline._buckets) <= HORIZON_S / BUCKET_S + 3
    timeline.request("PUT", first, None, "timeout", False)  # started 45 minutes ago: its bucket is gone
    [(_, (_, start, data))] = timeline.statements()
    assert start == int(clock.now // BUCKET_S) * BUCKET_S and Bucket.from_json(data).methods["PUT"] == 1


def simulate_job(path: str, hours: float, rate_per_s: float, seed: int = 1) -> tuple[int, int, int]:
    """A busy job on a fake clock (lognormal latencies, a few 429s and retries), group-committed
    four times a simulated second. Returns (state bytes added, timeline rows, requests)."""
    rng = random.Random(seed)
    clock = FakeClock()
    timeline = Timeline(clock)
    store = Store.open(path)
    runs.open_run(store.db, timeline, "run", {})
    store.close()
    before = os.path.getsize(path)
    store = Store.open(path)
    end, next_flush, n = T0 + hours * 3600, T0, 0
    while clock.now < end:
        started = clock.now
        clock.now += rng.lognormvariate(-2.5, 0.8)
        timeline.request("GET" if n % 2 == 0 else "PUT", started, 429 if rng.random() < 0.002 else 200, None, False)
        clock.now = started + 1 / rate_per_s
        if n % 2:
            timeline.row("succeeded" if rng.random() < 0.97 else "failed", "not_found")
        n += 1
        if clock.now >= next_flush:
            store.flush(*timeline.statements())
            next_flush = clock.now + 0.25
    runs.close_run(store, timeline, 0)
    (rows,) = store.db.execute("SELECT COUNT(*) FROM timeline").fetchone()
    store.close()
    return os.path.getsize(path) - before, rows, n


def test_the_state_grows_by_a_bounded_amount_per_hour_of_a_busy_job(tmp_path):
    # 3 hours at 30 requests/s (7.5 x Cloudflare's global limit): at most one row per bucket,
    # and (README, "The HTML report") well under 150 KiB an hour.
    added, rows, requests = simulate_job(str(tmp_path / "long.db"), 3, 30)
    assert requests >= 3 * 3600 * 30
    assert rows == 3 * 3600 / BUCKET_S
    assert added / 3 < 150 * 1024
