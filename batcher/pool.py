"""The worker pool and the job's stop switch, shared by run, plan and rollback.

``Control`` holds why a job is stopping (a signal, a halt, a bug) and the
job's notion of time; ``pump`` runs a handler over rows with N workers fed by
a bounded queue, with a heartbeat for group commits and progress.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from .errors import HaltError, Interrupted
from .limiter import Pacer
from .progress import Progress

HEARTBEAT_S = 0.25
TICK = object()  # yielded by row iterators during long skip stretches
_END = object()


class Control:
    """Shared stop state and the job's notion of time.

    ``time_scale`` < 1 makes every wait shorter (tests and rehearsals of a
    5-minute lockout); ``clock`` runs correspondingly faster so deadlines agree.
    Sleeps wake early when the job is stopping, raising ``Interrupted``.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        self.stop = asyncio.Event()
        self.time_scale = time_scale
        self.interrupted = False
        self.halt: HaltError | None = None
        self.crash: BaseException | None = None
        self._t0 = time.monotonic()
        self.on_second_interrupt: Callable[[], None] | None = None
        self.on_first_interrupt: Callable[[], None] | None = None  # e.g. say that in-flight requests drain

    @property
    def stopping(self) -> bool:
        """True once the job must take no more rows."""
        return self.stop.is_set()

    def clock(self) -> float:
        """Monotonic seconds, scaled."""
        return self._t0 + (time.monotonic() - self._t0) / self.time_scale

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (scaled); raise ``Interrupted`` if the job stops meanwhile."""
        if self.stop.is_set():
            raise Interrupted("stopping")
        try:
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds) * self.time_scale)
        except TimeoutError:
            return
        raise Interrupted("stopping")

    def interrupt(self) -> None:
        """First SIGINT/SIGTERM: stop taking rows. A second one calls ``on_second_interrupt``."""
        if self.interrupted and self.on_second_interrupt is not None:
            self.on_second_interrupt()
        elif not self.interrupted and self.on_first_interrupt is not None:
            self.on_first_interrupt()
        self.interrupted = True
        self.stop.set()

    def halt_with(self, error: HaltError) -> None:
        """Stop on purpose (auth, max failures): exit 3."""
        if self.halt is None:
            self.halt = error
        self.stop.set()


async def pump(
    items: Iterator[Any],
    handle: Callable[[Any], Awaitable[None]],
    concurrency: int,
    control: Control,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Feed ``items`` through a bounded queue to ``concurrency`` workers running ``handle``.

    ``on_tick`` runs every ``HEARTBEAT_S`` meanwhile (group commits, progress).
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=concurrency)

    async def worker() -> None:
        while (item := await queue.get()) is not _END:
            if control.stopping:
                continue  # drain: queued rows stay unfinished (skipped, resumable)
            try:
                await handle(item)
            except Interrupted:
                pass
            except Exception as exc:  # a bug: stop cleanly, keep the state, re-raise later
                control.crash = control.crash or exc
                control.stop.set()

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            on_tick()  # type: ignore[misc]

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    beat = asyncio.create_task(heartbeat()) if on_tick is not None else None
    try:
        for item in items:
            if control.stopping:
                break
            if item is TICK:
                await asyncio.sleep(0)
                continue
            await queue.put(item)
    finally:
        for _ in workers:
            await queue.put(_END)
        await asyncio.gather(*workers)
        if beat is not None:
            beat.cancel()
        if on_tick is not None:
            on_tick()
    if control.crash is not None:
        raise control.crash


def show_pause(progress: Progress, pacer: Pacer, control: Control) -> None:
    """Tell the progress display about a Retry-After pause (in wall-clock time), then redraw."""
    left = pacer.gate.remaining_s
    progress.paused_until = time.time() + left * control.time_scale if left > 0 else None
    progress.tick()
