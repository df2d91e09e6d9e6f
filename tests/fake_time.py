"""A virtual clock for jobs: sleeps advance it at once, so a 300 s Retry-After takes no real time."""

from __future__ import annotations

import asyncio

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
