"""The worker pool: every crash kept, a failing heartbeat stops the job, injected time."""

from __future__ import annotations

import asyncio
import time

import pytest

from batcher.core.config import RateSpec
from batcher.errors import Interrupted
from batcher.http.budget import Budget
from batcher.http.pacer import Pacer
from batcher.report.console import Progress
from batcher.run.pool import Control, pump, show_pause

from ..fake_time import VirtualTime


async def test_every_worker_crash_is_kept_not_only_the_first():
    both_started = asyncio.Barrier(2)

    async def handle(item: int) -> None:
        await both_started.wait()  # two rows in flight when both fail
        raise ValueError(f"bug on row {item}")

    control = Control()
    with pytest.raises(ExceptionGroup) as caught:
        await pump(iter(range(10)), handle, 2, control)
    assert sorted(str(e) for e in caught.value.exceptions) == ["bug on row 0", "bug on row 1"]
    assert control.stopping


async def test_a_single_crash_is_raised_as_itself():
    async def handle(item: int) -> None:
        raise KeyError(item)

    with pytest.raises(KeyError):
        await pump(iter(range(3)), handle, 1, Control())


async def test_a_failing_heartbeat_flush_stops_the_job_with_its_error():
    handled = []

    async def handle(item: int) -> None:
        handled.append(item)
        await asyncio.sleep(0)

    def tick() -> None:
        raise OSError("disk full while committing")

    control = Control()
    with pytest.raises(OSError, match="disk full"):
        await pump(iter(range(100_000)), handle, 2, control, on_tick=tick, heartbeat_s=0)
    assert control.stopping and len(handled) < 100_000


async def test_control_sleeps_on_the_injected_clock_and_wakes_on_stop():
    t = VirtualTime()
    control = t.control()
    await control.sleep(300)
    assert t.now == 300 and control.clock() == 300
    control.interrupt()
    with pytest.raises(Interrupted):
        await control.sleep(1)


def test_the_progress_line_shows_a_pause_the_tokens_budget_holds(tmp_path):
    """Another process of the token was told Retry-After: 40; this one sends nothing meanwhile, and
    its progress line says so (``show_pause`` reads the pacer's ``held_s``, budget included)."""
    path = tmp_path / "budget.db"
    other = Budget(path, watch_s=None)
    other.pause_until(time.time() + 40)
    pacer = Pacer(RateSpec(10, 1.0), budget=Budget(path, watch_s=None))
    progress = Progress(10)
    try:
        show_pause(progress, pacer, Control())
        assert progress.paused_until is not None and progress.paused_until > time.time() + 35
    finally:
        other.close()
        pacer.budget.close()
