"""`make demo`: a real migration against the local fake API, start to finish.

Starts `batcher fake-api` with the seed meetings, then walks the safe-migration
path: validate (a clean file and a broken one), plan, run, re-run (nothing is
sent twice), and rollback of one job. Then a bigger job against a second, busier
fake API (rate limited, failing 3% of requests, some meetings missing) writes
its HTML report: demo-out/report.html. Everything it writes goes to demo-out/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
INPUTS = ROOT / "inputs"


def batcher(*args: str, env: dict[str, str]) -> int:
    print(f"\n$ batcher {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "batcher", *args], env=env, cwd=ROOT).returncode


def start_fake_api(port_file: Path, *args: str) -> subprocess.Popen[bytes]:
    """``batcher fake-api`` on a free port; returns once it listens (or raises)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "batcher", "fake-api", *args, "--port", "0", "--port-file", str(port_file)], cwd=ROOT
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if server.poll() is not None or time.monotonic() > deadline:
            server.terminate()
            raise RuntimeError("demo: the fake API did not start")
        time.sleep(0.05)
    return server


def report_demo(env: dict[str, str]) -> int:
    """A job worth a picture: 240 meetings (6 missing) through a server that allows 20 requests a second
    (our --rate says 30: its 429s pause every worker), fails 3% of requests and takes 20-odd ms."""
    ids = OUT / "busy-meetings.csv"
    port_file = OUT / "busy-port"
    busy = start_fake_api(
        port_file,
        *("--meetings", "234", "--ids-out", str(ids), "--rate-limit", "200/10", "--no-ratelimit-headers"),
        *("--fail-rate", "0.03", "--chaos-seed", "7", "--latency-ms", "20"),
    )
    try:
        with ids.open("a", encoding="utf-8") as out:  # meetings that are not there: not_found failures
            out.writelines(f"{uuid.UUID(int=n + 1)},demo-account\n" for n in range(6))
        env = {**env, "BATCHER_BASE_URL": f"http://127.0.0.1:{port_file.read_text()}"}
        html = str(OUT / "report.html")
        args = ("run", str(ids), "--set", "ai_config.transcription.language=fr", "--rate", "30/1")
        args += ("--state", str(OUT / "busy.state.db"), "--report", str(OUT / "busy.failures.jsonl"), "--html", html)
        code = batcher(*args, env=env)
        print(f"(exit {code})", flush=True)
        if code != 1 or not os.path.exists(html):
            print("demo: expected exit 1 (6 meetings are missing) and the HTML report", file=sys.stderr)
            return 1
        print(f"\ndemo: the HTML report of that job: {os.path.relpath(html, ROOT)} (open it in a browser)")
        return 0
    finally:
        busy.terminate()
        busy.wait(timeout=10)


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    port_file = OUT / "port"
    try:
        server = start_fake_api(port_file, "--seed", str(INPUTS / "seed-meetings.jsonl"))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        env = {
            **os.environ,
            "CLOUDFLARE_API_TOKEN": "demo-token",
            "CLOUDFLARE_ACCOUNT_ID": "demo-account",
            "BATCHER_BASE_URL": f"http://127.0.0.1:{port_file.read_text()}",
        }
        out = lambda name: str(OUT / name)  # noqa: E731
        job = ("--rate", "100/1", "--state", out("french.state.db"), "--report", out("french.failures.jsonl"))
        steps = [
            (("validate", "inputs/bad-rows.csv"), 2),
            (("validate", "inputs/french-transcription.csv"), 0),
            (("plan", "inputs/french-transcription.csv", "--out", out("french.plan.jsonl"), "--rate", "100/1"), 1),
            (("run", "inputs/french-transcription.csv", *job, "--summary-json", out("french.summary.json")), 1),
            (("run", "inputs/french-transcription.csv", *job), 1),
            (
                (
                    "run",
                    "inputs/recording-limits.csv",
                    "--rate",
                    "100/1",
                    "--state",
                    out("limits.state.db"),
                    "--report",
                    out("limits.failures.csv"),
                ),
                1,
            ),
            (
                (
                    "run",
                    "inputs/own-s3-bucket.jsonl",
                    "--rate",
                    "100/1",
                    "--state",
                    out("s3.state.db"),
                    "--report",
                    out("s3.failures.jsonl"),
                ),
                0,
            ),
            (("rollback", "--state", out("limits.state.db"), "--rate", "100/1"), 0),
        ]
        for args, expected in steps:
            code = batcher(*args, env=env)
            print(f"(exit {code})", flush=True)
            if code != expected:
                print(f"demo: expected exit {expected} from `batcher {args[0]}`", file=sys.stderr)
                return 1
        print(f"\ndemo: done. Plans, reports, summaries and state files are in {OUT.relative_to(ROOT)}/")
        print(
            "demo: the exit-1 runs are the credential guard refusing to erase stored S3 keys (see the failure reports)."
        )
        return report_demo(env)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
