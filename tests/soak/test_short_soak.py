"""The short soak inside ``make test``: a fixed set of small episodes, plus the seeds that found defects.

Select with ``-m soak``, leave out with ``-m "not soak"``. A failure prints the
episode, its violations and the command that replays it.

``XFAIL_UNTIL_MERGED``: on the soak branch alone these episodes find the
defects other branches fix (issues 9, 10, 15: unknown fields dropped by merge,
ids lower-cased, rollback of replace/patch, the rate budget across processes,
counters and ``--results`` lost to ``kill -9``), so they are expected failures
there (non-strict: they pass once the fixes are in). Set it to False after the
merge so that a regression fails ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .runner import SHORT_ROWS, brief, describe, run_seed

XFAIL_UNTIL_MERGED = True

# A spread of what an episode can be: kills, SIGINT/SIGTERM, two processes on one token, an edit
# mid-job, stdin, CSV, replace and patch modes, 401 windows and the other random faults.
SHORT_SEEDS = [9, 21, 24, 31]

# Seeds that found defects (what they found on the soak branch, before the fixes were merged).
REGRESSION_SEEDS: dict[int, str] = {
    1: "merge drops unknown fields (beta_noise_cancellation, ai_config.beta_translate); rollback cannot restore them",
    10: "kill -9: --results lose finished rows, request counters lose the killed run; upper-case id not_found",
    12: "replace-mode rollback exits 0 having restored nothing",
    14: "two kills: counters and --results lose rows; the rate window overshoots across a resume",
    11: "two processes on one token: 117 starts in a 1 s window at --rate 100/1",
    24: "SIGTERM delivered while the run winds down: exit -15 instead of 130",
}

SEEDS = sorted({*SHORT_SEEDS, *REGRESSION_SEEDS})


@pytest.mark.soak
@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(
            s,
            marks=pytest.mark.xfail(
                XFAIL_UNTIL_MERGED, reason="defects fixed on other branches", raises=AssertionError, strict=False
            ),
        )
        for s in SEEDS
    ],
)
def test_episode_keeps_every_invariant(seed: int, tmp_path: Path) -> None:
    record, violations = run_seed(seed, tmp_path / f"seed-{seed}", SHORT_ROWS)
    lines = [
        f"seed {seed}: {describe(record)}",
        *brief(violations),
        f"replay: python -m tests.soak --seed {seed} --short",
    ]
    assert not violations, "\n".join(lines)
