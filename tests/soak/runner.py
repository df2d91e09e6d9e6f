"""One seed from plan to verdict, shared by ``python -m tests.soak`` and the pytest entry."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import orjson

from .episode import Record, run_episode
from .invariants import Violation, check_all
from .plan import draw_episode

SHORT_ROWS = (20, 60)  # the short soak inside `make test`: small episodes, same machinery


def run_seed(
    seed: int, workdir: Path, rows: tuple[int, int] = SHORT_ROWS, without: frozenset[str] = frozenset()
) -> tuple[Record, list[Violation]]:
    """Run the episode of ``seed`` (leaving out ``without``) and check every invariant."""
    shutil.rmtree(workdir, ignore_errors=True)
    record = run_episode(draw_episode(seed, rows, without), workdir)
    violations = check_all(record)
    if violations:  # beside the workdir, not in it: it holds secrets, and the workdir is scanned for them
        dump = {k: v for k, v in asdict(record).items() if k not in ("plan", "files", "workdir")}
        workdir.with_suffix(".record.json").write_bytes(orjson.dumps(dump, default=str))
    return record, violations


def brief(violations: list[Violation], per_invariant: int = 3) -> list[str]:
    """At most ``per_invariant`` lines per invariant, then how many more."""
    lines, shown = [], Counter[str]()
    total = Counter(v.invariant for v in violations)
    for v in violations:
        shown[v.invariant] += 1
        if shown[v.invariant] <= per_invariant:
            lines.append(str(v))
        elif shown[v.invariant] == per_invariant + 1:
            lines.append(f"[{v.invariant}] ... and {total[v.invariant] - per_invariant} more")
    return lines


def describe(record: Record) -> str:
    """A one-line summary of what the episode did."""
    parts = []
    for job in record.plan.jobs:
        signals = [p.signal_sent for p in record.procs if p.job == job.name and p.signal_sent]
        parts.append(
            f"{job.name}: {job.mode} {job.fmt} {len(job.rows)} rows c={job.concurrency}"
            + (f" signals={','.join(signals)}" if signals else "")
            + (" edit" if any(e["job"] == job.name for e in record.edits) else "")
        )
    n, t = record.plan.rate
    faults = sum(record.chaos_drawn.values())
    return "; ".join(parts) + f"; rate {n}/{t:g}; {faults} faults; {len(record.log)} requests"
