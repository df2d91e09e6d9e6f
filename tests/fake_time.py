"""Virtual clocks for tests: sleeps advance them at once, so a 300 s Retry-After takes no real time.

``VirtualTime`` drives a job's ``Control``; ``FakeTime`` adds sleeps up (one sleeper at a time);
``OverlappingTime`` lets concurrent sleeps overlap as real ones do; ``FakeClock`` is a settable
``clock()`` for the timeline.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
from typing import Any

from batcher.run.pool import Control


class VirtualTime:
    """``clock``/``sleep`` for ``Control``: time moves only when someone sleeps.

    ``hold_from_s``: sleeps at least that long wait for ``release`` first, so a
    test can look at the job during a long pause (driven by an event, not a guess).
    """

    def __init__(self, hold_from_s: float | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.hold_from_s = hold_from_s
        self.release = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.hold_from_s is not None and seconds >= self.hold_from_s:
            await self.release.wait()
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)

    def control(self) -> Control:
        """A job Control on this clock."""
        return Control(clock=self.clock, sleep=self.sleep)


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


def worst_window(starts: list[float], window_s: float) -> int:
    starts = sorted(starts)
    return max(bisect.bisect_left(starts, s + window_s) - i for i, s in enumerate(starts))


class OverlappingTime:
    """A clock on which concurrent sleeps overlap, as real ones do (FakeTime adds them up).

    ``run`` drives coroutines: whenever they are all blocked, time jumps to the
    earliest pending wake-up.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self.busy = 0  # real I/O in flight (see ``tracked``): time stands still meanwhile
        self._idle = asyncio.Event()

    def tracked(self, call: Any) -> Any:
        """Wrap an I/O coroutine function so that no time passes while it runs."""

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.busy += 1
            self._idle.clear()
            try:
                return await call(*args, **kwargs)
            finally:
                self.busy -= 1
                if not self.busy:
                    self._idle.set()

        return wrapper

    async def _settle(self) -> None:
        while True:
            for _ in range(20):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if not self.busy:
                return
            await self._idle.wait()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), self._seq, future))
        self._seq += 1
        await future

    async def run(self, *coros: Any) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(task.done() for task in tasks):
            await self._settle()
            if self._sleepers:
                when, _, future = heapq.heappop(self._sleepers)
                self.now = max(self.now, when)
                if not future.done():
                    future.set_result(None)
            elif not all(task.done() for task in tasks):
                await self._settle()
                if all(task.done() for task in tasks) or self._sleepers:
                    continue
                raise AssertionError("deadlock: tasks blocked with nobody sleeping")
        await asyncio.gather(*tasks)


T0 = 1_800_000_000.0  # a whole multiple of every bucket width: bucket starts are easy to name


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
