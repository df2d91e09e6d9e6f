"""Per-request timings, aggregated in memory into fixed time buckets, for the HTML report.

Nothing is kept per request. Every request (GET, PUT, PATCH, retries and
rollback's included), every Retry-After pause and every row outcome of a run
is added to the bucket of wall-clock time it happened in (a request: the one it
*started* in, as ``--rate`` counts starts). A bucket holds counts (requests by
method, retries, answers by status or error kind, row outcomes by kind, pauses
and paused seconds) and a latency histogram.

Bucket widths are fixed by the age of the job (``WIDTHS``), counted from its
first run of the same kind: 1 s for its first 10 minutes, 5 s to the first
hour, 30 s to the sixth, then 60 s. A two-minute job gets a chart with a point
a second; a week-long job writes 60 rows an hour, however often it is resumed.
Each width starts on a multiple of itself, so buckets never overlap and a
display interval that is a multiple of every width (report/data.py) merges them
exactly.

The histogram's bins grow by a constant ratio (``BIN_RATIO`` = 2**(1/8)), so
naming a bin by its geometric middle is within ``PERCENTILE_ERROR`` (4.4 %) of
any latency in it: p50/p95/p99 read from merged histograms are within 4.4 % of
the true sample at that rank (nearest-rank definition), for latencies above
``MIN_LATENCY_S``, whatever the number of requests. Histograms are sparse
(the range of bins hit), so a bucket stays a few hundred bytes however busy.

``changed()`` hands the buckets touched since its last call to the state,
which writes them with each ``Store.flush`` (the engine's group commits; the
``timeline`` table is the state's: ``state/tables.py``, ``state/runs.py``): a ``kill -9`` loses only what
happened since the last group commit, and the state grows by at most one row
per bucket of activity, whatever the request rate: 60 rows an hour once a run
is six hours old (README, "The HTML report": bytes per hour). Buckets
belong to a run (``runs.py``), so a resumed run never rewrites an earlier one.

Time comes from an injected wall clock: tests drive a fake one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

# (run age from which it applies in seconds, bucket width in seconds); each age a multiple of its width
WIDTHS = ((0, 1), (600, 5), (3600, 30), (6 * 3600, 60))
MAX_WIDTH_S = WIDTHS[-1][1]
BIN_RATIO = 2 ** (1 / 8)  # each latency bin is this much wider than the one before
MIN_LATENCY_S = 1e-4  # bin 0 holds everything below MIN_LATENCY_S * BIN_RATIO
PERCENTILE_ERROR = math.sqrt(BIN_RATIO) - 1  # 0.0443: the geometric middle of a bin vs anything in it
# Buckets older than this (behind the clock) leave memory once written. A request that started
# earlier still than that (a --timeout over 15 minutes) is counted in the current bucket instead.
HORIZON_S = 900.0
_LOG_RATIO = math.log(BIN_RATIO)

Clock = Callable[[], float]


def bin_of(latency_s: float) -> int:
    """The histogram bin of a latency."""
    if latency_s < MIN_LATENCY_S * BIN_RATIO:
        return 0
    return int(math.log(latency_s / MIN_LATENCY_S) / _LOG_RATIO)


def bin_value(index: int) -> float:
    """The latency a bin stands for: its geometric middle (seconds)."""
    return MIN_LATENCY_S * math.pow(BIN_RATIO, index + 0.5)  # math.pow: a float, where ** may give a complex


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1, nearest rank) of a latency histogram, in seconds; None if empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(histogram))  # unreachable: seen ends at total >= rank


@dataclass(slots=True)
class Bucket:
    """What happened in one bucket (a slice of wall-clock time) of a run."""

    methods: Counter[str] = field(default_factory=Counter)  # requests started, by method
    retries: int = 0  # of those, attempts after the first of their call
    answers: Counter[str] = field(default_factory=Counter)  # "200", "429", ... or "timeout", "network"
    latency: Counter[int] = field(default_factory=Counter)  # histogram: bin -> requests
    pauses: int = 0  # Retry-After pauses that began here
    paused_s: float = 0.0  # seconds of pause recorded here (the lengths in ``spans``; older states: spread)
    rows: Counter[str] = field(default_factory=Counter)  # "succeeded", "unchanged", "skipped", "failed:KIND"
    # (start, seconds) of each pause, or of the extension of one, recorded while this bucket was current:
    # kept where it begins, not spread over the buckets it covers, so a year-long Retry-After is one entry
    spans: list[tuple[float, float]] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests started in this bucket."""
        return sum(self.methods.values())

    def add(self, other: Bucket) -> None:
        """Merge ``other`` into this bucket (for coarser display intervals)."""
        self.methods.update(other.methods)
        self.retries += other.retries
        self.answers.update(other.answers)
        self.latency.update(other.latency)
        self.pauses += other.pauses
        self.paused_s += other.paused_s
        self.spans += other.spans
        self.rows.update(other.rows)

    def to_json(self) -> bytes:
        """Compact JSON (short keys, empty parts left out): the ``timeline.data`` column."""
        doc: dict[str, Any] = {"m": self.methods}
        if self.retries:
            doc["r"] = self.retries
        if self.answers:
            doc["a"] = self.answers
        if self.latency:  # dense from the lowest bin hit: [first bin, count, count, ...]
            low, high = min(self.latency), max(self.latency)
            doc["l"] = [low, *(self.latency.get(i, 0) for i in range(low, high + 1))]
        if self.pauses or self.paused_s:
            doc["p"] = [self.pauses, round(self.paused_s, 3)]
        if self.spans:
            doc["s"] = [[round(start, 3), round(seconds, 3)] for start, seconds in self.spans]
        if self.rows:
            doc["o"] = self.rows
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, data: bytes | str) -> Bucket:
        """The inverse of ``to_json``."""
        doc = orjson.loads(data)
        pauses, paused_s = doc.get("p", (0, 0.0))
        low, *counts = doc.get("l") or (0,)
        return cls(
            Counter(doc.get("m", {})),
            doc.get("r", 0),
            Counter(doc.get("a", {})),
            Counter({low + i: n for i, n in enumerate(counts) if n}),
            pauses,
            float(paused_s),
            Counter(doc.get("o", {})),
            [(float(start), float(seconds)) for start, seconds in doc.get("s", ())],
        )


class Timeline:
    """One run's buckets in memory, handed to the state with each group commit.

    ``start(run_id, origin)`` (called by ``runs.open_run``) fixes the age zero: the job's first run;
    until then ``changed()`` is empty (nothing is written for a run that
    never started).
    """

    def __init__(self, clock: Clock) -> None:
        """``clock``: wall-clock seconds (the caller's: core keeps no clock of its own)."""
        self.clock = clock
        self.run_id: int | None = None
        self._bands = _bands(clock())
        self._buckets: dict[int, tuple[int, Bucket]] = {}  # start -> (width, bucket)
        self._dirty: set[int] = set()
        self._paused_until = -math.inf

    def start(self, run_id: int, origin: float | None = None) -> None:
        """The run is recorded: its buckets go to the state from now on. Bucket widths follow the age
        of the job, from ``origin`` (its first run's start; None: now): a job resumed every ten
        minutes still writes a minute's bucket, not 600 a run, once it is hours old."""
        self.run_id = run_id
        now = self.clock()
        self._bands = _bands(now if origin is None else min(origin, now))

    def now(self) -> float:
        """The wall clock: a request's start mark for ``request``."""
        return self.clock()

    def span(self, at: float) -> tuple[int, int]:
        """(start, width) of the bucket holding the instant ``at``."""
        width = next(w for from_s, w in reversed(self._bands) if at >= from_s) if at >= self._bands[0][0] else 1
        return int(at // width) * width, width

    def _bucket(self, at: float) -> Bucket:
        start, width = self.span(at)
        found = self._buckets.get(start)
        if found is None:
            if at < self.clock() - HORIZON_S:  # its bucket was written and let go: count it now
                return self._bucket(self.clock())
            found = self._buckets[start] = (width, Bucket())
        self._dirty.add(start)
        return found[1]

    def request(self, method: str, started: float, status: int | None, error: str | None, is_retry: bool) -> None:
        """One attempt finished: ``started`` is ``now()`` taken before it was sent.

        ``status`` is the HTTP status, or None with ``error`` naming what
        happened instead (``timeout``, ``network``).
        """
        latency = max(0.0, self.clock() - started)
        bucket = self._bucket(started)
        bucket.methods[method] += 1
        bucket.retries += is_retry
        bucket.answers[str(status) if status is not None else error or "error"] += 1
        bucket.latency[bin_of(latency)] += 1

    def pause(self, seconds: float) -> None:
        """Every worker pauses ``seconds`` from now (Retry-After). Overlapping pauses count once.

        The pause is kept as (start, seconds) in the current bucket, however
        long it is (the report spreads it over time when it is read); a pause
        that extends one under way adds only its extra seconds, from where
        the other ends.
        """
        now = self.clock()
        end = now + seconds
        if not seconds > 0 or end <= self._paused_until:
            return
        bucket = self._bucket(now)
        if now >= self._paused_until:
            bucket.pauses += 1
        start = max(now, self._paused_until)
        self._paused_until = end
        bucket.spans.append((start, end - start))
        bucket.paused_s += end - start

    def row(self, outcome: str, error: str | None = None, count: int = 1) -> None:
        """``count`` rows ended now as ``outcome`` (failed ones by error kind)."""
        if count > 0:
            self._bucket(self.clock()).rows[f"failed:{error}" if outcome == "failed" else outcome] += count

    def changed(self) -> list[tuple[int, int, int, bytes]]:
        """(run id, start, width, ``Bucket.to_json``) of each bucket touched since the last call, for the
        state to write with its next commit; old buckets leave memory."""
        if self.run_id is None or not self._dirty:
            return []
        out = []
        for start in sorted(self._dirty):
            width, bucket = self._buckets[start]
            out.append((self.run_id, start, width, bucket.to_json()))
        self._dirty.clear()
        oldest = self.clock() - HORIZON_S - MAX_WIDTH_S
        for start in [s for s in self._buckets if s < oldest]:
            del self._buckets[start]
        return out


def _bands(origin: float) -> list[tuple[float, int]]:
    """When each width takes over for a run that began at ``origin``: the first multiple of the
    width at or after the age it applies from, so a wider bucket never overlaps a narrower one."""
    return [(math.ceil((origin + from_s) / width) * width, width) for from_s, width in WIDTHS]


def load_buckets(rows: Iterable[tuple[int, int, int, bytes]]) -> Iterator[tuple[int, int, int, Bucket]]:
    """``(run, start, width, Bucket)`` from (run, start, width, data) rows of the state's timeline table."""
    for run, start, width, data in rows:
        yield run, start, width, Bucket.from_json(data)
