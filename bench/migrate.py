"""`make bench` section 6: requests per row per mode, and the time to migrate 100k meetings at 1200/300.

The mix: a bulk change where one meeting in ten (``UNCHANGED_SHARE``) already is as the row wants
it (set by hand earlier, or done by an earlier run of another job). That share only moves merge
mode (GET for every row, PUT only for changed ones: 2 - share requests a row); replace and patch
send every row once, whatever the meeting holds. The rows set ``title`` and ``persist_chat``.

Requests per row come from the job's own ``--summary-json`` over ``MIX_ROWS`` rows at
``--rate none``. Utilisation comes from a scaled run per mode: ``--rate 40/10`` (Cloudflare's
1200/300 divided by 30, the same 4 requests/s) against a fake API that enforces 40/10 and sends
``Ratelimit`` headers, measured at the server over five windows' worth of requests: the successes before the last
window's first one, over N per window for the time they took (the job's tail left out). The three
scaled runs go at once, each against its own server with its own budget file: at 4 requests/s
they cost no CPU worth sharing.

    time for 100k = 100,000 x requests per row / (1200/300 x utilisation)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from common import ENV, OUT, PY, QUICK, Server, batcher, fresh_state

MODES = ("replace", "merge", "patch")
UNCHANGED_SHARE = 0.1  # one row in ten already as wanted
MIX_ROWS = 1000 if QUICK else 3000
SCALED = (40, 10.0)  # Cloudflare's 1200/300, scaled down 30 times: 4 requests/s either way
CLOUDFLARE_PER_S = 1200 / 300
MEETINGS = 100_000
WINDOWS = 5  # length of each scaled run, in windows' worth of requests


def meeting_id(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def write_mix(n: int) -> tuple[Path, Path]:
    """A seed of ``n`` meetings (every tenth already as its row wants it) and the rows (CSV)."""
    step = round(1 / UNCHANGED_SHARE)
    seed, rows = OUT / f"mix-seed-{n}.jsonl", OUT / f"mix-rows-{n}.csv"
    with open(seed, "w") as out:
        for i in range(n):
            doc = {"account_id": "bench", "id": meeting_id(i)}
            if i % step == 0:
                doc.update(title=f"Meeting {i} mix", persist_chat=True)
            out.write(json.dumps(doc) + "\n")
    with open(rows, "w") as out:
        out.write("meeting_id,account_id,title,persist_chat\n")
        out.writelines(f"{meeting_id(i)},bench,Meeting {i} mix,true\n" for i in range(n))
    return seed, rows


def mode_args(mode: str) -> list[str]:
    # patch mode needs the realtime/kit/{app_id} path (the one with PATCH)
    return ["--mode", mode] + (["--app-id", "bench-app"] if mode == "patch" else [])


def requests_per_row() -> dict[str, dict]:
    """Each mode over the same mix at --rate none: the job's summary's requests / rows."""
    seed, rows = write_mix(MIX_ROWS)
    result = {}
    for mode in MODES:
        server = Server("--seed", str(seed))  # a fresh server per mode: every mode meets the same mix
        try:
            summary = OUT / f"mix-{mode}.summary.json"
            batcher("run", str(rows), *mode_args(mode), "--rate", "none", "--concurrency", "16",
                    "--base-url", server.url, "--state", fresh_state(f"mix-{mode}.db"), "-q",
                    "--summary-json", str(summary), check=True)  # fmt: skip
            s = json.loads(summary.read_text())
            result[mode] = {
                "rows": s["total"],
                "requests": s["requests"],
                "unchanged": s["unchanged"],
                "requests_per_row": round(s["requests"] / s["total"], 3),
            }
        finally:
            server.stop()
    return result


def scaled_utilisation(per_row: dict[str, dict]) -> dict[str, dict]:
    """Every mode at --rate 40/10 against a server enforcing 40/10 (at once, separate servers)."""
    n, window = SCALED
    runs = {}
    try:
        for mode in MODES:
            count = int(WINDOWS * n / per_row[mode]["requests_per_row"])  # WINDOWS windows' worth of requests
            seed, rows = write_mix(count)
            server = Server("--seed", str(seed), "--rate-limit", f"{n}/{window:g}")
            proc = subprocess.Popen(
                [PY, "-m", "batcher", "run", str(rows), *mode_args(mode), "--rate", f"{n}/{window:g}",
                 "--concurrency", "16", "--base-url", server.url, "--state", fresh_state(f"scaled-{mode}.db"), "-q",
                 "--budget-file", fresh_state(f"budget-scaled-{mode}.db")],
                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=OUT,
            )  # fmt: skip
            runs[mode] = (server, proc, count)
        result = {}
        for mode, (server, proc, count) in runs.items():
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"bench: scaled {mode} run exit {proc.returncode}: {err[-2000:]}")
            log = server.log()
            ok = sorted(e["t"] for e in log if e["status"] == 200)
            # Steady state, as a 100k-row job lives it: the successes before the last window's
            # first one, over the time they took (N per W). The job's tail is left out: its last
            # few requests would count as a whole window's room.
            whole = int((ok[-1] - ok[0]) // window)
            per_window = [
                sum(1 for t in ok if ok[0] + k * window <= t < ok[0] + (k + 1) * window) for k in range(whole + 1)
            ]
            tail = next(t for t in ok if t >= ok[0] + whole * window)
            before = sum(1 for t in ok if t < tail)
            result[mode] = {
                "rows": count,
                "requests": len(log),
                "answered_429": sum(1 for e in log if e["status"] == 429),
                "per_window": per_window,
                "utilisation": round(before / ((tail - ok[0]) * n / window), 4),
            }
        return result
    finally:
        for server, proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()
            server.stop()


def migrate_100k() -> dict:
    """Requests per row, scaled utilisation, and the hours to migrate 100k meetings, per mode."""
    per_row = requests_per_row()
    scaled = scaled_utilisation(per_row)
    result = {"unchanged_share": UNCHANGED_SHARE, "scaled_rate": f"{SCALED[0]}/{SCALED[1]:g}", "modes": {}}
    for mode in MODES:
        seconds = MEETINGS * per_row[mode]["requests_per_row"] / (CLOUDFLARE_PER_S * scaled[mode]["utilisation"])
        result["modes"][mode] = {
            **per_row[mode],
            "scaled": scaled[mode],
            "hours_100k": round(seconds / 3600, 2),
            "time_100k": f"{int(seconds // 3600)} h {round(seconds % 3600 / 60):02d} min",
        }
    return result


def print_migrate(m: dict) -> None:
    print(f"\n6. requests per row ({MIX_ROWS} rows, {m['unchanged_share']:.0%} already as wanted) and the time to migrate "
          f"{MEETINGS:,} meetings at 1200/300 (utilisation from --rate {m['scaled_rate']} vs a server enforcing it)")  # fmt: skip
    for mode, r in m["modes"].items():
        s = r["scaled"]
        print(f"   {mode:>7}: {r['requests_per_row']:.3f} requests/row ({r['requests']} for {r['rows']} rows, {r['unchanged']} unchanged)"
              f" | utilisation {s['utilisation']:.1%} (per window {s['per_window']}, {s['answered_429']} answered 429)"
              f" | 100k meetings: {r['time_100k']}")  # fmt: skip
