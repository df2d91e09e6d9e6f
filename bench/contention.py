"""`make bench` section 7: another client spends 30% of the token's budget; what does batcher get of the rest?

The fake API enforces ``LIMIT`` (40 per 10 s, Cloudflare's 1200/300 scaled
down 30 times) over every request of the token and says so in ``Ratelimit`` /
``Ratelimit-Policy`` headers. ``bench/other_client.py`` GETs at 30% of it, evenly,
reading no header; one window later (so the server's window holds its steady
share) batcher starts a replace job with header-aware pacing, once with
``--rate auto`` and once with ``--rate 40/10`` (the scaled default). The two
runs go at once, each against its own server (4 requests/s cost no CPU).

Measured at the server, from its request log (account "bench" is batcher,
"other" the other client): over whole windows from one window after batcher's
first request, a sliding window admits at most N per window, so the room left
to batcher is k x N minus the other client's successes in those k windows;
batcher's share is its successes over that room. 429s are counted over the whole run.
"""

from __future__ import annotations

import json
import subprocess
import time

from common import ENV, OUT, PY, QUICK, ROOT, Server, fresh_state
from migrate import meeting_id

LIMIT = (40, 10.0)
OTHER_SHARE = 0.3
ROWS = 90 if QUICK else 170  # about 60 s at the 2.8 requests/s left


def write_inputs() -> tuple[str, str]:
    seed, rows = OUT / "contention-seed.jsonl", OUT / "contention-rows.csv"
    with open(seed, "w") as out:
        out.writelines(json.dumps({"account_id": "bench", "id": meeting_id(i)}) + "\n" for i in range(ROWS))
        out.write(json.dumps({"account_id": "other", "id": meeting_id(10**9)}) + "\n")
    with open(rows, "w") as out:
        out.write("meeting_id,account_id,title,persist_chat\n")
        out.writelines(f"{meeting_id(i)},bench,Meeting {i} shared,true\n" for i in range(ROWS))
    return str(seed), str(rows)


def share(log: list[dict], n: int, window_s: float) -> dict:
    """Batcher's share of the room the other client left, over whole windows (see the docstring)."""
    ours = [e for e in log if e["account"] == "bench"]
    other = [e for e in log if e["account"] == "other"]
    start = min(e["t"] for e in ours) + window_s
    windows = int((max(e["t"] for e in ours) - start) // window_s)
    end = start + windows * window_s

    def ok(entries: list[dict]) -> int:
        return sum(1 for e in entries if e["status"] == 200 and start <= e["t"] < end)

    room = windows * n - ok(other)
    return {
        "windows": windows,
        "batcher_ok": ok(ours),
        "other_ok": ok(other),
        "other_share_of_limit": round(ok(other) / (windows * n), 3),
        "batcher_share_of_limit": round(ok(ours) / (windows * n), 3),
        "share_of_rest": round(ok(ours) / room, 4) if room > 0 else None,
        "batcher_429": sum(1 for e in ours if e["status"] == 429),
        "batcher_requests": len(ours),
        "other_429": sum(1 for e in other if e["status"] == 429),
        "other_requests": len(other),
    }


def job(rows: str, rate: str, name: str, url: str, concurrency: int = 16) -> subprocess.Popen:
    """A replace job over ``rows`` at ``--rate rate``, with a budget file of its own."""
    return subprocess.Popen(
        [PY, "-m", "batcher", "run", rows, "--mode", "replace", "--rate", rate, "--concurrency", str(concurrency),
         "--base-url", url, "--state", fresh_state(f"contention-{name}.db"), "-q",
         "--budget-file", fresh_state(f"budget-contention-{name}.db")],
        env=ENV, cwd=OUT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def contention() -> list[dict]:
    """Both pacings at once, each with its own server and other client; see the module docstring."""
    n, window = LIMIT
    seed, rows = write_inputs()
    rates = {"auto": "auto", "explicit": f"{n}/{window:g}"}
    started = []
    try:
        for name in rates:
            server = Server("--seed", seed, "--rate-limit", f"{n}/{window:g}")
            other = subprocess.Popen(
                [PY, str(ROOT / "bench" / "other_client.py"), server.url, "other", meeting_id(10**9), str(OTHER_SHARE * n / window)],
                env=ENV, cwd=OUT,
            )  # fmt: skip
            started.append((name, server, other))
        time.sleep(window)  # the other client's steady share fills the server's window first
        jobs = [job(rows, rates[name], name, server.url) for name, server, _ in started]
        results = []
        for (name, server, other), proc in zip(started, jobs, strict=True):
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"bench: contention run --rate {rates[name]} exit {proc.returncode}: {err[-2000:]}")
            other.terminate()
            other.wait()
            log = server.log()
            (OUT / f"contention-{name}.log.json").write_text(json.dumps(log))  # every arrival, to look into
            results.append({"rate": rates[name], "limit": f"{n}/{window:g}", "other_share": OTHER_SHARE,
                            **share(log, n, window)})  # fmt: skip
        return results
    finally:
        for _, server, other in started:
            if other.poll() is None:
                other.kill()
            server.stop()


def print_contention(runs: list[dict]) -> None:
    for r in runs:
        print(f"\n7. another client spends {r['other_share']:.0%} of a {r['limit']} limit (headers on), batcher --rate {r['rate']}:"
              f" {r['share_of_rest']:.1%} of the rest over {r['windows']} windows ({r['batcher_ok']} vs the other's {r['other_ok']}"
              f" = {r['batcher_share_of_limit']:.0%} vs {r['other_share_of_limit']:.0%} of the limit), batcher answered 429: {r['batcher_429']} of {r['batcher_requests']}"
              f" (the other client: {r['other_429']} of {r['other_requests']})", flush=True)  # fmt: skip
