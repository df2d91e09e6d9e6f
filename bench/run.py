"""`make bench`: batcher against its peers, in one run, on this machine.

Prints a table and writes bench/out/results.json. Every comparison alternates
its two sides in the same run and reports the median ratio. The fake API runs
in its own process (uvloop when installed), so it has a core of its own.

    1. throughput vs a bare aiohttp loop (bench/peer.py), replace mode; merge mode in requests/s
       in two set-ups: (a) server and client pinned to a core each, (b) nothing pinned
    2. rate precision: utilisation and the worst window for a few --rate N/T
    3. adaptive pacing (--rate auto) against an unknown server limit
    4. peak RSS of validate and run at 100k and 1M rows
    5. resume: rows/s skipped when resuming a 1M-row job that is 90% done
    6. requests per row per mode, and the time to migrate 100k meetings at 1200/300 (migrate.py)
    7. another client spends 30% of the budget: batcher's share of the rest (contention.py)

BENCH_ONLY=17 (say) runs only those sections; BENCH_QUICK=1 smaller sizes.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    ENV,
    OUT,
    PY,
    QUICK,
    ROOT,
    TASKSET,
    Server,
    batcher,
    fresh_state,
    pinned,
    read_ids,
    timed,
    worst_window,
    write_rows,
)
from contention import contention, print_contention
from migrate import migrate_100k, print_migrate

ROWS = 5000 if QUICK else 50000
ROUNDS = 3
BIG = (20_000, 100_000) if QUICK else (100_000, 1_000_000)


# -- 1. throughput -----------------------------------------------------------


# Set-up (a): the server on core 0, the client (peer or batcher) on core 1, so neither steals the
# other's core. Set-up (b): nothing pinned: the client may use both cores (its threads, the OS
# spreading its work) while the server shares them; on 2 cores that is the closest honest stand-in
# for real use, where the server is far away and both cores are the client's.
SETUPS = {"a": ("0", "1"), "b": (None, None)}


def throughput(setup: str = "a", merge: bool = True) -> dict:
    server_cpus, client_cpus = SETUPS[setup]
    server = Server(
        "--meetings", str(ROWS), "--account-id", "bench", "--ids-out", str(OUT / "ids.csv"), cpus=server_cpus
    )
    try:
        ids = read_ids(OUT / "ids.csv")
        rows_s = {"batcher": [], "peer": []}
        ratios, merge_rps = [], []
        for r in range(ROUNDS):
            src = OUT / f"put-{r}.csv"
            write_rows(src, ids, f"{setup}{r}")
            peer = timed(
                pinned(client_cpus, [PY, str(ROOT / "bench" / "peer.py"), str(src), server.url, "bench", "64"])
            )
            ours = timed(pinned(client_cpus, [PY, "-m", "batcher", "run", str(src), "--mode", "replace", "--rate", "none", "--concurrency", "64",
                          "--base-url", server.url, "--state", fresh_state(f"put-{r}.db"), "-q"]))  # fmt: skip
            rows_s["peer"].append(ROWS / peer)
            rows_s["batcher"].append(ROWS / ours)
            ratios.append(peer / ours)
            if not merge:
                continue
            write_rows(src, ids, f"m{setup}{r}")
            server.arrivals()
            seconds = timed(pinned(client_cpus, [PY, "-m", "batcher", "run", str(src), "--rate", "none", "--concurrency", "64",
                           "--base-url", server.url, "--state", fresh_state(f"merge-{r}.db"), "-q"]))  # fmt: skip
            arrivals, _ = server.arrivals()
            merge_rps.append(len(arrivals) / seconds)
        result = {
            "setup": setup,
            "pinned": f"server on core {server_cpus}, client on core {client_cpus}"
            if server_cpus and TASKSET
            else "nothing pinned",
            "rows": ROWS,
            "peer_rows_s": round(statistics.median(rows_s["peer"])),
            "batcher_rows_s": round(statistics.median(rows_s["batcher"])),
            "ratio_median": round(statistics.median(ratios), 3),
            "ratios": [round(x, 3) for x in ratios],
        }
        if merge_rps:
            result["merge_requests_s"] = round(statistics.median(merge_rps))
        return result
    finally:
        server.stop()


# -- 2. rate precision ----------------------------------------------------------


def rate_precision() -> list[dict]:
    configs = [(40, 1.0), (10, 2.5), (40, 10.0)] if not QUICK else [(40, 1.0), (10, 2.5)]
    server = Server("--meetings", "200", "--account-id", "bench", "--ids-out", str(OUT / "ids-rate.csv"))
    results = []
    try:
        ids = read_ids(OUT / "ids-rate.csv")
        for n, window in configs:
            count = 4 * n  # four windows' worth: bursts at 0, T, 2T, 3T
            src = OUT / f"rate-{n}-{window:g}.csv"
            write_rows(src, ids[:count], f"{n}/{window:g}")
            server.arrivals()
            batcher("run", str(src), "--mode", "replace", "--rate", f"{n}/{window:g}", "--concurrency", "16",
                    "--base-url", server.url, "--state", fresh_state(f"rate-{n}.db"), "-q",
                    # each config its own rate budget: the token's shared one would carry the last config's starts
                    "--budget-file", fresh_state(f"budget-{n}-{window:g}.db"), check=True)  # fmt: skip
            arrivals, _ = server.arrivals()
            span = max(arrivals) - min(arrivals)
            results.append({
                "rate": f"{n}/{window:g}",
                "per_s": round(n / window, 2),
                "requests": len(arrivals),
                "utilisation": round(len(arrivals) / ((span + window) * n / window), 4),
                "worst_window": worst_window(arrivals, window),
                "limit": n,
            })  # fmt: skip
    finally:
        server.stop()
    return results


# -- 3. adaptive -------------------------------------------------------------


def adaptive(headers: bool) -> dict:
    limit, window = 30, 1.0
    extra = () if headers else ("--no-ratelimit-headers",)
    ids_file = str(OUT / "ids-auto.csv")
    server = Server(
        "--meetings",
        "2000",
        "--account-id",
        "bench",
        "--ids-out",
        ids_file,
        "--rate-limit",
        f"{limit}/{window:g}",
        *extra,
    )
    try:
        ids = read_ids(OUT / "ids-auto.csv")
        count = 300 if QUICK else 900
        src = OUT / "auto.csv"
        write_rows(src, ids[:count], "auto")
        server.arrivals()
        start = time.monotonic()
        batcher("run", str(src), "--mode", "replace", "--rate", "auto:100/1", "--concurrency", "16",
                "--base-url", server.url, "--state", fresh_state("auto.db"), "-q", check=True)  # fmt: skip
        arrivals, statuses = server.arrivals()
        elapsed = max(arrivals) - start
        ok = statuses.get("200", 0)
        return {
            "server_limit": f"{limit}/{window:g}",
            "ratelimit_headers": headers,
            "requests": len(arrivals),
            "share_of_limit": round(ok / elapsed / (limit / window), 3),
            "share_429": round(statuses.get("429", 0) / max(1, len(arrivals)), 4),
        }
    finally:
        server.stop()


# -- 4. memory and 5. resume -------------------------------------------------


def big_input(n: int) -> Path:
    path = OUT / f"rows-{n}.csv"
    if not path.exists():
        with open(path, "w") as out:
            out.write("meeting_id,account_id,title,persist_chat,ai_config.transcription.language\n")
            out.writelines(f"{i:08x}-0000-4000-8000-{i:012x},bench,Meeting {i},true,fr\n" for i in range(n))
    return path


def peak_rss_mb(
    args: list[str], interrupt_after_requests: Server | None = None, after: int = 0
) -> tuple[float, float, int]:
    """Run batcher; returns (peak RSS MB, seconds, exit code). Optionally SIGINT once the server saw ``after`` requests."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "batcher", *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=OUT
    )
    if interrupt_after_requests is not None:
        seen = 0
        while proc.poll() is None and seen < after:
            time.sleep(0.2)
            seen += len(interrupt_after_requests.arrivals()[0])
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - start, proc.returncode


def memory_and_resume() -> tuple[list[dict], dict]:
    rows = []
    # Nearly no meetings: every PUT is a fast 404, which is all memory needs. The first 64 exist, so
    # the job's first rows succeed and it does not stop early on "every row not found" (engine.py).
    seed = OUT / "seed-first-64.jsonl"
    seed.write_text("".join(f'{{"account_id": "bench", "id": "{i:08x}-0000-4000-8000-{i:012x}"}}\n' for i in range(64)))
    server = Server("--seed", str(seed))
    try:
        for n in BIG:
            src = big_input(n)
            rss, secs, code = peak_rss_mb(["validate", str(src)])
            rows.append(
                {
                    "command": "validate",
                    "rows": n,
                    "peak_rss_mb": round(rss, 1),
                    "rows_s": round(n / secs),
                    "exit": code,
                }
            )
            state = fresh_state(f"mem-{n}.db")
            server.arrivals()
            rss, secs, code = peak_rss_mb(
                ["run", str(src), "--mode", "replace", "--rate", "none", "--concurrency", "64", "--base-url", server.url, "--state", state, "-q"],
                interrupt_after_requests=server, after=20000,
            )  # fmt: skip
            rows.append(
                {
                    "command": "run (pre-flight of all rows + 20k sent, then SIGINT)",
                    "rows": n,
                    "peak_rss_mb": round(rss, 1),
                    "exit": code,
                }
            )
        # resume: the biggest job, 90% done
        n = BIG[-1]
        state = str(OUT / f"mem-{n}.db")
        with sqlite3.connect(state) as db:
            db.execute("UPDATE rows SET outcome = 'succeeded' WHERE row <= ?", (n * 9 // 10,))
            db.execute("UPDATE rows SET outcome = 'pending' WHERE row > ?", (n * 9 // 10,))
        server.arrivals()
        start = time.monotonic()
        proc = subprocess.Popen(
            [PY, "-m", "batcher", "run", str(big_input(n)), "--mode", "replace", "--rate", "none", "--base-url", server.url, "--state", state, "-q"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=OUT,
        )  # fmt: skip
        first = None
        while first is None and proc.poll() is None:
            time.sleep(0.1)
            arrivals, _ = server.arrivals()
            first = min(arrivals) if arrivals else None
        proc.send_signal(signal.SIGINT)
        proc.wait()
        skipped = n * 9 // 10
        resume = {
            "rows": n,
            "skipped": skipped,
            "seconds_to_first_send": round(first - start, 2),
            "rows_s_skipped": round(skipped / (first - start)),
        }
    finally:
        server.stop()
    return rows, resume


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"
    print(f"bench on {machine}{' (quick)' if QUICK else ''}", flush=True)
    results = {"machine": machine, "quick": QUICK, "section_seconds": {}}
    clock = [time.monotonic()]

    def lap(section: str) -> None:  # how long each section took: `make bench` should stay near 10 minutes
        now = time.monotonic()
        results["section_seconds"][section] = round(now - clock[0])
        clock[0] = now

    only = os.environ.get("BENCH_ONLY", "1234567")
    if "1" in only:
        results["throughput"] = t = throughput("a")
        results["throughput_b"] = tb = throughput("b", merge=False)
        print(
            f"\n1. throughput ({t['rows']} rows, replace, --rate none, --concurrency 64; {ROUNDS} alternating rounds each)"
        )
        for x in (t, tb):
            print(
                f"   ({x['setup']}) {x['pinned']}: peer (aiohttp+semaphore+gather) {x['peer_rows_s']} rows/s | batcher {x['batcher_rows_s']} rows/s | median ratio {x['ratio_median']} {x['ratios']}"
            )
        print(f"   merge mode (GET+PUT), set-up (a): {t['merge_requests_s']} requests/s", flush=True)
        lap("1")
    if "2" in only:
        results["rate"] = rp = rate_precision()
        print("\n2. rate precision (measured at the server)")
        for r in rp:
            print(
                f"   --rate {r['rate']:>6} ({r['per_s']}/s): {r['requests']} requests, utilisation {r['utilisation']:.1%}, worst window {r['worst_window']} (limit {r['limit']})"
            )
        lap("2")
    if "3" in only:
        results["adaptive"] = runs = [adaptive(headers=True), adaptive(headers=False)]
        for a in runs:
            how = "with Ratelimit headers" if a["ratelimit_headers"] else "no headers (pure AIMD)"
            print(
                f"\n3. --rate auto vs an unknown {a['server_limit']} limit, {how}: {a['share_of_limit']:.1%} of the limit, {a['share_429']:.2%} answered 429",
                flush=True,
            )
        lap("3")
    if "4" in only or "5" in only:
        memory_and_resume_section(results)
        lap("4+5")
    if "6" in only:
        results["migrate"] = m = migrate_100k()
        print_migrate(m)
        lap("6")
    if "7" in only:
        results["contention"] = c = contention()
        print_contention(c)
        lap("7")
    print(f"\nseconds per section: {results['section_seconds']}")
    return _write(results)


def memory_and_resume_section(results: dict) -> None:
    mem, resume = memory_and_resume()
    results["memory"], results["resume"] = mem, resume
    print("\n4. memory")
    for m in mem:
        extra = f", {m['rows_s']} rows/s" if "rows_s" in m else ""
        print(f"   {m['command']} {m['rows']} rows: peak RSS {m['peak_rss_mb']} MB{extra}")
    print(
        f"\n5. resume: {resume['skipped']} done rows skipped in {resume['seconds_to_first_send']} s = {resume['rows_s_skipped']} rows/s",
        flush=True,
    )


def _write(results: dict) -> int:
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {OUT.relative_to(ROOT)}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
