"""Progress tells the truth: the whole job after a resume, an ETA that counts a pause, what Ctrl-C does."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

from batcher.report.console import Console, Progress
from batcher.run.announce import say_estimate
from batcher.run.engine import run_job

from ..conftest import config, start_cli, when_requests_reach, write_jsonl


class Clock:
    """A hand-driven clock: monotonic and wall time move together."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(clock: Clock, stream: io.StringIO | None = None) -> Progress:
    console = Console(stream=stream or io.StringIO())
    return Progress(console=console, clock=clock, wall_clock=clock, plain_every_s=0)


def test_a_resumed_job_counts_from_what_earlier_runs_finished():
    progress = _progress(Clock())
    # 200 rows: 90 done, 100 never reached (skipped), 10 failed of which --retry-failed resends 4 (todo 104)
    progress.resume({"total": 200, "succeeded": 80, "unchanged": 10, "failed": 10, "skipped": 100}, todo=104)
    assert (progress.total, progress.done, progress.failed) == (200, 96, 6)
    assert progress.line().startswith("96/200 rows | 48% |")


def test_the_rate_and_eta_count_only_this_runs_rows():
    clock = Clock()
    progress = _progress(clock)
    progress.resume({"total": 200, "failed": 0, "skipped": 100}, todo=100)
    clock.now += 10
    for _ in range(10):
        progress.advance("succeeded")
    assert progress.rate() == 1.0 and progress.eta_s() == 90.0
    assert "1.0/s" in progress.line() and "ETA 00:01:30" in progress.line()


def test_the_eta_counts_a_retry_after_pause_and_keeps_moving_during_it():
    clock = Clock()
    progress = _progress(clock)
    progress.total = 100
    clock.now += 10
    for _ in range(50):
        progress.advance("succeeded")
    progress.paused_until = clock.now + 300
    first = progress.eta_s()
    assert first == 300 + 50 / 5.0
    clock.now += 100  # a hundred seconds into the pause, nothing finished
    assert progress.eta_s() == first - 100, "counts down with the pause; the rate is the one before it"
    assert "paused for Retry-After until" in progress.line()
    progress.paused_until = None  # the pause ends
    clock.now += 10
    assert progress.rate() == 50 / 20


def test_the_terminal_bar_shows_our_eta_not_a_frozen_one():
    clock = Clock()
    screen = Tty()
    progress = _progress(clock, screen)
    progress.total = 100
    progress.tick()
    clock.now += 10
    for _ in range(50):
        progress.advance("succeeded")
    progress.paused_until = clock.now + 300
    progress.tick()
    assert "ETA 00:05:10" in screen.getvalue()
    clock.now += 100
    progress.tick()
    assert "ETA 00:03:30" in screen.getvalue(), "the bar's ETA moves while the pause runs"
    progress.close()


async def test_a_resumed_run_shows_the_whole_job(server, tmp_path):
    ids = server.add(10, title="orig")
    server.api.faults.append({"kind": "status", "status": 401, "method": "PUT", "meeting": ids[5]})
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "new"} for m in ids])
    halted = await run_job(config(tmp_path, server, src, concurrency=1))
    assert halted.exit_code == 3 and halted.summary["succeeded"] == 5
    progress = Progress(console=Console(stream=io.StringIO()), plain_every_s=0)
    assert (await run_job(config(tmp_path, server, src), progress=progress)).exit_code == 0
    assert (progress.total, progress.initial, progress.done, progress.failed) == (10, 5, 10, 0)


async def test_the_first_ctrl_c_says_requests_drain_and_a_second_stops_at_once(server, tmp_path):
    ids = server.add(40)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, "title": "x"} for m in ids])
    reached = when_requests_reach(server, 4)
    proc = await start_cli("run", str(src), "--rate", "2/1", "--concurrency", "2", base_url=server.base_url)
    await reached.wait()
    proc.send_signal(signal.SIGINT)
    _out, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 130, text
    assert "waiting for the requests in flight to finish" in text
    assert "Press Ctrl-C again to stop at once" in text


def test_progress_eta_is_never_faster_than_the_rate_promise():
    # the first window's burst shows a row rate the promise cannot sustain
    progress = Progress(1000, console=Console(io.StringIO()))
    progress.done = 100
    progress._started = time.monotonic() - 10  # 10 rows/s so far
    assert "ETA 00:01:30" in progress.line()
    say_estimate(
        Console(io.StringIO()), config(Path("."), None, "-", state_path="s.db", rate="1200/300"), 0, progress=progress
    )
    assert progress.max_rows_per_s == 2.0  # merge: 2 requests a row at 4 requests/s
    assert "ETA 00:07:30" in progress.line()
