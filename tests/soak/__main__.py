"""``python -m tests.soak``: run episodes until stopped, or ``--episodes N``; ``--seed S`` replays one.

Exit 0 when every episode kept every invariant, 1 otherwise. Each failing
episode prints its seed, its violations and the one-line command that replays it.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .plan import WITHOUT
from .runner import SHORT_ROWS, brief, describe, run_seed


def main(argv: list[str] | None = None) -> int:
    """Parse options, run episodes, print a verdict per episode and a total."""
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    p.add_argument("--seed", type=int, action="append", help="run exactly this seed (repeatable)")
    p.add_argument("--episodes", type=int, default=0, help="number of episodes (0: until stopped)")
    p.add_argument("--start", type=int, default=int(time.time()) % 100000, help="first seed of a random run")
    p.add_argument("--rows", default="100-3000", help="rows per episode, MIN-MAX (default 100-3000)")
    p.add_argument("--short", action="store_true", help=f"small episodes ({SHORT_ROWS[0]}-{SHORT_ROWS[1]} rows)")
    p.add_argument("--keep", action="store_true", help="keep every episode's directory (failing ones are always kept)")
    p.add_argument("--workdir", default=None, help="where episode directories go (default: a temp dir)")
    p.add_argument(
        "--without",
        default="",
        help=f"comma-separated features to leave out, so a known defect does not hide others: {', '.join(sorted(WITHOUT))}",
    )
    args = p.parse_args(argv)
    without = frozenset(w for w in args.without.split(",") if w)
    if without - WITHOUT:
        p.error(f"--without: unknown {', '.join(sorted(without - WITHOUT))}")
    low, high = (int(x) for x in args.rows.split("-"))
    rows = SHORT_ROWS if args.short else (low, high)
    seeds = args.seed or (
        itertools.count(args.start) if args.episodes == 0 else range(args.start, args.start + args.episodes)
    )
    root = Path(args.workdir or tempfile.mkdtemp(prefix="batcher-soak-"))
    clean = failed = 0
    started = time.time()
    try:
        for seed in seeds:
            workdir = root / f"seed-{seed}"
            record, violations = run_seed(seed, workdir, rows, without)
            if violations:
                failed += 1
                print(f"FAIL seed {seed} ({record.elapsed_s:.1f}s, {describe(record)}); workdir {workdir}")
                for line in brief(violations):
                    print(f"    {line}")
                flags = " --short" if args.short else f" --rows {rows[0]}-{rows[1]}"
                flags += f" --without {','.join(sorted(without))}" if without else ""
                print(f"    replay: python -m tests.soak --seed {seed}{flags}")
            else:
                clean += 1
                print(f"ok   seed {seed} ({record.elapsed_s:.1f}s, {describe(record)})")
                if not args.keep:
                    shutil.rmtree(workdir, ignore_errors=True)
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("stopped")
    print(f"{clean + failed} episodes, {clean} clean, {failed} failing, {time.time() - started:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
