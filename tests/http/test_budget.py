"""The rate promise across pauses, processes and resumes, and the server's own budget (injected clocks)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import threading

import pytest

from batcher.core.config import RateSpec
from batcher.http.budget import BUSY_RETRY_S, REJOIN_GRACE_S, Budget, default_budget_path
from batcher.http.pacer import Pacer

from ..fake_time import FakeTime, OverlappingTime, worst_window


async def test_a_slot_granted_before_a_pause_is_not_used_after_it():
    t = OverlappingTime()
    pacer = Pacer(RateSpec(4, 1.0), t.clock, t.sleep)
    starts: list[float] = []

    async def worker() -> None:
        await pacer.acquire()
        starts.append(t.now)  # the moment the request really goes out

    async def retry_after() -> None:
        await t.sleep(0.5)
        pacer.pause_for(5)  # a 429 with Retry-After: 5 while eight workers wait for slots

    await t.run(retry_after(), *(worker() for _ in range(12)))
    assert starts[:4] == [0.0] * 4 and min(starts[4:]) >= 5.5, "nobody starts inside the pause"
    assert worst_window(starts, 1.0) == 4, "at most N starts in any window, counted when they happen"


async def test_two_processes_over_one_budget_file_never_exceed_the_rate(tmp_path):
    t = FakeTime()
    path = tmp_path / "budget.db"
    pacers = [Pacer(RateSpec(5, 2.0), t.clock, t.sleep, budget=Budget(path, t.clock)) for _ in range(2)]
    starts: list[float] = []

    async def worker(pacer: Pacer) -> None:
        for _ in range(10):
            await pacer.acquire()
            starts.append(t.now)

    await asyncio.gather(*(worker(p) for p in pacers for _ in range(3)))
    assert len(starts) == 60
    assert worst_window(starts, 2.0) == 5, "each enforces N/T against the starts of both"


async def test_a_new_process_over_a_budget_with_n_recent_starts_waits(tmp_path):
    t = FakeTime()
    t.now = 1000.0
    path = tmp_path / "budget.db"
    before = Pacer(RateSpec(3, 10.0), t.clock, t.sleep, budget=Budget(path, t.clock))
    for _ in range(3):
        await before.acquire()
    before.budget.close()  # the first run is interrupted ...
    t.now += 4.0  # ... and resumed four seconds later
    after = Pacer(RateSpec(3, 10.0), t.clock, t.sleep, budget=Budget(path, t.clock))
    await after.acquire()
    assert t.now >= 1010.0, "the resumed run waits for the window the first one used"


async def test_a_pause_recorded_by_one_process_is_obeyed_by_another(tmp_path):
    t = FakeTime()
    path = tmp_path / "budget.db"
    one, other = (Pacer(RateSpec(100, 1.0), t.clock, t.sleep, budget=Budget(path, t.clock)) for _ in range(2))
    one.pause_for(300)  # one was told Retry-After: 300
    await other.acquire()
    assert t.now >= 300 and Budget(path, t.clock).paused_until == 300


def test_the_budget_file_is_named_by_a_hash_of_the_token_never_the_token():
    path = default_budget_path("secret-token-CANARY", {"XDG_CACHE_HOME": "/c"})
    assert path.parent.as_posix() == "/c/batcher" and "CANARY" not in str(path)
    assert path.name.startswith("budget-") and len(path.stem) == len("budget-") + 16
    assert default_budget_path("other", {"XDG_CACHE_HOME": "/c"}) != path


async def test_no_request_starts_when_the_server_says_no_budget_is_left():
    t = FakeTime()
    pacer = Pacer(None, t.clock, t.sleep)  # even with --rate none
    ticket = await pacer.acquire()
    pacer.on_response(200, (0, 30.0), None, ticket)  # Ratelimit: r=0;t=30
    assert not pacer.is_free
    await pacer.acquire()
    assert t.now >= 30.0


async def test_each_start_spends_one_of_the_budget_the_server_announced():
    t = FakeTime()
    pacer = Pacer(None, t.clock, t.sleep)
    first = await pacer.acquire()
    await pacer.acquire()  # in flight when the first answer comes
    pacer.on_response(200, (3, 10.0), None, first)  # r=3 as counted before the second started
    for _ in range(2):
        await pacer.acquire()
    assert t.now == 0.0, "3 left, one already spent by the second: two more may start"
    await pacer.acquire()
    assert t.now >= 10.0, "the third waits for the server's reset"


def test_a_budget_file_being_created_by_another_process_is_waited_for_not_an_error(tmp_path):
    """Guards the budget file's set-up: two processes starting together both set it up; the second waits for the first, no error."""
    import sqlite3
    import threading
    import time

    from batcher.http.budget import Budget

    path = tmp_path / "budget.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of its set-up
    holder.execute("CREATE TABLE IF NOT EXISTS other_setup (x)")
    opened: list[object] = []
    opener = threading.Thread(target=lambda: opened.append(Budget(path)))
    opener.start()
    time.sleep(0.2)  # the scenario: the lock is held ten times longer than a grant may wait
    holder.execute("COMMIT")
    opener.join(10)
    holder.close()
    assert len(opened) == 1 and isinstance(opened[0], Budget)


async def test_two_processes_on_one_token_share_the_servers_remaining_budget(tmp_path):
    """Guards the shared budget: the server's remaining count for a token, heard by one process, holds the other."""
    t = FakeTime()
    path = tmp_path / "budget.db"
    one, other = (Pacer(RateSpec(100, 1.0), t.clock, t.sleep, budget=Budget(path, t.clock)) for _ in range(2))
    ticket = await one.acquire()
    one.on_response(200, (3, 30.0), None, ticket)  # the server: 3 more starts for this token in 30 s
    for _ in range(3):
        await other.acquire()
    assert t.now == 0.0
    await other.acquire()  # the fourth waits for the server's reset, although `other` never heard from it
    assert t.now >= 30.0


async def test_a_busy_budget_file_makes_the_pacer_sleep_instead_of_blocking_the_loop(tmp_path):
    """Guards the pacer on a busy budget file: it sleeps asynchronously and asks again instead of blocking the event loop."""
    t = FakeTime()
    path = tmp_path / "budget.db"
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        holder.execute("COMMIT")  # ... and lets go while this one sleeps

    pacer = Pacer(RateSpec(100, 1.0), t.clock, sleep, budget=Budget(path, t.clock))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the file
    await pacer.acquire()
    holder.close()
    assert slept == [BUSY_RETRY_S], "asked again after an asynchronous sleep, not a 30 s busy wait"


async def _three_starts(path, t: FakeTime) -> Pacer:
    pacer = Pacer(RateSpec(3, 10.0), t.clock, t.sleep, budget=Budget(path, t.clock, watch_s=None))
    for _ in range(3):
        await pacer.acquire()
    return pacer


async def test_a_budget_file_deleted_under_a_running_job_is_rejoined_with_its_starts(tmp_path):
    """A cache cleaner deletes the file (its journals stay, held open by the running job); the next
    job on the token creates a new file there and waits for the running one to rejoin it."""
    t = FakeTime()
    t.now = 1000.0
    path = tmp_path / "budget.db"
    running = await _three_starts(path, t)
    os.unlink(path)
    assert os.path.exists(f"{path}-wal"), "the running job's journals are still there"
    newcomer = Pacer(RateSpec(3, 10.0), t.clock, t.sleep, budget=Budget(path, t.clock, watch_s=None))
    assert running.budget.rejoin_if_moved() and running.budget.rejoined == 1
    await newcomer.acquire()
    assert t.now >= 1010.0, "the newcomer counts the running job's three starts: 3 in 10 s, not 6"
    assert not running.budget.rejoin_if_moved(), "the path names its file again"


async def test_a_budget_folder_removed_whole_is_made_again_by_the_running_job_before_its_next_start(tmp_path):
    t = FakeTime()
    t.now = 1000.0
    path = tmp_path / "cache" / "budget.db"
    running = await _three_starts(path, t)
    shutil.rmtree(path.parent)
    assert running.budget.try_start(3, 10.0) > 0, "its own next start still waits for its window"
    assert running.budget.rejoined == 1 and path.exists(), "the grant found the file gone and made it again"
    newcomer = Pacer(RateSpec(3, 10.0), t.clock, t.sleep, budget=Budget(path, t.clock, watch_s=None))
    await newcomer.acquire()
    assert t.now >= 1010.0, "a job started afterwards finds the running job's starts in the new file"


async def test_a_pause_held_in_a_deleted_budget_file_is_carried_into_the_new_one(tmp_path):
    t = FakeTime()
    t.now = 1000.0
    path = tmp_path / "budget.db"
    running = await _three_starts(path, t)
    running.pause_for(60.0)  # a Retry-After: 60 that every process of the token must obey
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{path}{suffix}")
    assert running.budget.rejoin_if_moved()
    assert Budget(path, t.clock, watch_s=None).paused_until == 1060.0


def test_the_watcher_thread_rejoins_without_a_request(tmp_path):
    """A job that sends nothing for a while (a stalled producer) still rejoins: its watcher does."""
    path = tmp_path / "budget.db"
    budget = Budget(path, watch_s=0.01)
    try:
        budget.try_start(5, 10.0)
        os.unlink(path)
        for _ in range(500):  # the watcher's own period is 10 ms; give it up to 5 s on a busy machine
            if budget.rejoined:
                break
            threading.Event().wait(0.01)
        assert budget.rejoined == 1 and path.exists()
        assert sqlite3.connect(path).execute("SELECT count(*) FROM starts").fetchone() == (1,)
    finally:
        budget.close()


async def test_two_jobs_holding_one_deleted_budget_file_copy_its_starts_once(tmp_path):
    t = FakeTime()
    t.now = 1000.0
    path = tmp_path / "budget.db"
    one = Pacer(RateSpec(4, 10.0), t.clock, t.sleep, budget=Budget(path, t.clock, watch_s=None))
    two = Pacer(RateSpec(4, 10.0), t.clock, t.sleep, budget=Budget(path, t.clock, watch_s=None))
    await one.acquire()
    await two.acquire()
    for suffix in ("", "-wal", "-shm"):
        os.unlink(f"{path}{suffix}")
    assert one.budget.rejoin_if_moved() and two.budget.rejoin_if_moved()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM starts").fetchone() == (2,), "each start once"


async def test_a_job_that_makes_the_file_where_a_deleted_ones_journals_lie_waits_for_its_holders(tmp_path):
    t = FakeTime()
    t.now = 1000.0
    path = tmp_path / "budget.db"
    await _three_starts(path, t)  # a running job, whose file is about to be deleted
    os.unlink(path)
    newcomer = Budget(path, t.clock, watch_s=None)
    assert newcomer.try_start(3, 10.0) == pytest.approx(REJOIN_GRACE_S), "nothing granted before the holders rejoin"
    assert newcomer.held_until == pytest.approx(1000.0 + REJOIN_GRACE_S)


async def test_a_rejoin_that_cannot_open_the_new_file_keeps_the_old_one_working(tmp_path):
    t = FakeTime()
    t.now = 1000.0
    path = tmp_path / "budget.db"
    running = await _three_starts(path, t)
    os.unlink(path)
    os.mkdir(path)  # the cleaner's own folder where the file was: nothing can be opened there now
    assert not running.budget.rejoin_if_moved() and running.budget.rejoined == 0
    assert running.budget.try_start(3, 10.0) > 0, "still counting its own starts in the old file"
    assert running.budget.held_until == 0.0
    os.rmdir(path)
    assert running.budget.rejoin_if_moved(), "the next check rejoins"
    assert sqlite3.connect(path).execute("SELECT count(*) FROM starts").fetchone() == (3,)


def test_held_until_is_the_servers_reset_while_it_said_no_budget_is_left(tmp_path):
    t = FakeTime()
    t.now = 1000.0
    budget = Budget(tmp_path / "budget.db", t.clock, watch_s=None)
    assert budget.held_until == 0.0
    budget.note_server(0, 30.0, started_at=999.0)
    assert budget.held_until == pytest.approx(1030.0), "status shows it as a pause"
    assert budget.try_start(5, 10.0) == pytest.approx(30.0)
