"""`make demo`: a real migration against the local fake API, start to finish.

Starts `batcher fake-api` with the seed meetings, then walks the safe-migration
path: validate (a clean file and a broken one), plan, run, re-run (nothing is
sent twice), and rollback of one job. Everything it writes goes to demo-out/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
INPUTS = ROOT / "inputs"


def batcher(*args: str, env: dict[str, str]) -> int:
    print(f"\n$ batcher {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "batcher", *args], env=env, cwd=ROOT).returncode


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    port_file = OUT / "port"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batcher",
            "fake-api",
            "--seed",
            str(INPUTS / "seed-meetings.jsonl"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                print("demo: the fake API did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
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
        return 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
