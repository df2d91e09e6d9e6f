"""What every `make bench` section shares: paths, the fake API in its own process, running batcher."""

from __future__ import annotations

import bisect
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PY = sys.executable
ENV = {**os.environ, "CLOUDFLARE_API_TOKEN": "bench", "CLOUDFLARE_ACCOUNT_ID": "bench", "PYTHONUNBUFFERED": "1"}
QUICK = os.environ.get("BENCH_QUICK") == "1"  # smaller sizes, for a smoke test
# taskset pins a process to some cores (set-up (a) of the throughput section); None where it is missing
TASKSET = "/usr/bin/taskset" if Path("/usr/bin/taskset").exists() and (os.cpu_count() or 1) >= 2 else None


def pinned(cpus: str | None, cmd: list[str]) -> list[str]:
    """``cmd`` run on the cores ``cpus`` (e.g. "0"), or as is when ``cpus`` is None or taskset is missing."""
    return [TASKSET, "-c", cpus, *cmd] if cpus is not None and TASKSET else cmd


class Server:
    """`batcher fake-api` in its own process (on the cores ``cpus`` when given)."""

    def __init__(self, *args: str, cpus: str | None = None) -> None:
        port_file = OUT / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            pinned(cpus, [PY, "-m", "batcher", "fake-api", "--port", "0", "--port-file", str(port_file), "--record-arrivals", *args]),
            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=OUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not (port_file.exists() and port_file.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: the fake API did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text()}"
        port_file.unlink()
        self._log_next = 0

    def arrivals(self) -> tuple[list[float], dict[str, int]]:
        """Monotonic arrival times and status counts since the last call."""
        with urllib.request.urlopen(self.url + "/__arrivals") as resp:
            doc = json.loads(resp.read())
        return doc["arrivals"], doc["statuses"]

    def log(self) -> list[dict]:
        """The server's request log since the last call: wall-clock ``t``, method, account, meeting, status."""
        with urllib.request.urlopen(f"{self.url}/__log?since={self._log_next}") as resp:
            doc = json.loads(resp.read())
        self._log_next = doc["next"]
        return doc["entries"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def batcher(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "batcher", *args], env=ENV, capture_output=True, text=True, cwd=OUT, **kw)


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=ENV, check=True, capture_output=True, cwd=OUT)
    return time.perf_counter() - start


def fresh_state(name: str) -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(OUT / (name + suffix)).unlink(missing_ok=True)
    return str(OUT / name)


def write_rows(path: Path, ids: list[str], tag: str) -> None:
    with open(path, "w") as out:
        out.write("meeting_id,account_id,title,persist_chat\n")
        out.writelines(f"{m},bench,Meeting {i} {tag},true\n" for i, m in enumerate(ids))


def read_ids(path: Path) -> list[str]:
    """The meeting ids `fake-api --ids-out` wrote."""
    return [line.split(",")[0] for line in path.read_text().splitlines()[1:]]


def worst_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window_s) - i for i, t in enumerate(times)), default=0)
