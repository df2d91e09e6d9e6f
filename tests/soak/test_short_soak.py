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

XFAIL_UNTIL_MERGED = False  # merged: every episode must keep every invariant
TAME = frozenset({"unknown_fields", "upper_ids"})  # leave out the two defects that hide the others

# A spread of what an episode can be: kills, SIGINT/SIGTERM, two processes on one token, an edit
# mid-job, stdin, CSV, replace and patch modes, 401 windows and the other random faults.
SHORT_SEEDS = [9, 21, 24, 31]

# Seeds that found defects: (seed, rows, without, what it found on the soak branch before the fixes merged).
TALL = (100, 300)
REGRESSION: list[tuple[int, tuple[int, int], frozenset[str], str]] = [
    (1, SHORT_ROWS, frozenset(), "merge drops unknown fields (beta_noise_cancellation, ai_config.beta_translate)"),
    (10, SHORT_ROWS, frozenset(), "kill -9: --results and request counters lose rows; upper-case id not_found"),
    (11, SHORT_ROWS, frozenset(), "two processes on one token: 117 starts in a 1 s window at --rate 100/1"),
    (12, SHORT_ROWS, frozenset(), "replace-mode rollback exits 0 having restored nothing"),
    (14, SHORT_ROWS, frozenset(), "two kills: counters and --results lose rows; rate overshoot across a resume"),
    (24, SHORT_ROWS, frozenset(), "SIGTERM delivered while the run winds down: exit -15 instead of 130"),
    (107, SHORT_ROWS, TAME, "SIGTERM while a 401 halt winds down: exit -15; rate overshoot across resumes"),
    (314, SHORT_ROWS, TAME, "rollback calls a meeting whose secrets the job changed 'unchanged' (secrets stay)"),
    (352, SHORT_ROWS, TAME, "JSONL input edited mid-run: the edited row is sent (exit 1, not 2)"),
    (215, TALL, TAME, "one process, one token: 22 starts within 10 ms at --rate 20/0.5 amid Retry-After pauses"),
    # found after the merge, on main
    (2, SHORT_ROWS, frozenset(), "SIGINT as a resume wound down: exit -2 (signals now handled in every phase)"),
    (4, SHORT_ROWS, frozenset(), "SIGTERM as a second job on the token wound down: exit -15"),
    (1037, SHORT_ROWS, frozenset(), "SIGTERM during a resume that met an edited input: a further row read, exit 2"),
]

CASES = [
    (seed, SHORT_ROWS, frozenset(), "short soak") for seed in SHORT_SEEDS if seed not in {r[0] for r in REGRESSION}
] + REGRESSION


@pytest.mark.soak
@pytest.mark.parametrize(
    ("seed", "rows", "without", "found"),
    [
        pytest.param(
            *case,
            id=f"seed{case[0]}" + ("-tame" if case[2] else "") + ("-tall" if case[1] != SHORT_ROWS else ""),
            marks=pytest.mark.xfail(
                XFAIL_UNTIL_MERGED, reason="defects fixed on other branches", raises=AssertionError, strict=False
            ),
        )
        for case in CASES
    ],
)
def test_episode_keeps_every_invariant(
    seed: int, rows: tuple[int, int], without: frozenset[str], found: str, tmp_path: Path
) -> None:
    record, violations = run_seed(seed, tmp_path / f"seed-{seed}", rows, without)
    flags = " --short" if rows == SHORT_ROWS else f" --rows {rows[0]}-{rows[1]}"
    flags += f" --without {','.join(sorted(without))}" if without else ""
    lines = [
        f"seed {seed} ({found}): {describe(record)}",
        *brief(violations),
        f"replay: python -m tests.soak --seed {seed}{flags}",
    ]
    assert not violations, "\n".join(lines)
