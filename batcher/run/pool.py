"""The worker pool and the job's stop switch, shared by run, plan and rollback.

``Control`` holds why a job is stopping (a signal, a halt, a bug) and the
job's notion of time (injected clock and sleep); ``pump`` runs a handler over rows with N workers fed by
a bounded queue, with a heartbeat for group commits and progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..errors import HaltError, Interrupted
from ..http.adaptive import Sleep
from ..http.pacer import Pacer
from ..report.console import Progress

HEARTBEAT_S = 0.25
TICK = object()  # yielded by row iterators during long skip stretches
_END = object()


class Control:
    """Shared stop state and the job's notion of time.

    ``clock`` and ``sleep`` are injected (tests drive a virtual clock; a
    production job reads no environment variable to bend time). Sleeps wake
    early when the job is stopping, raising ``Interrupted``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Sleep | None = None) -> None:
        self.stop = asyncio.Event()
        self.interrupted = False
        self.output_closed = False  # stdout's reader went away (``| head``): a stop, not a Ctrl-C
        self.halt: HaltError | None = None
        self.crashes: list[BaseException] = []  # every worker crash, in order
        self._clock = clock
        self._sleep = sleep
        self.on_second_interrupt: Callable[[], None] | None = None
        self.flushers: list[Callable[[], None]] = []  # what a hard stop must save first
        self.on_first_interrupt: Callable[[], None] | None = None  # e.g. say that in-flight requests drain

    @property
    def stopping(self) -> bool:
        """True once the job must take no more rows."""
        return self.stop.is_set()

    def clock(self) -> float:
        """Monotonic seconds."""
        return self._clock()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``; raise ``Interrupted`` if the job stops meanwhile."""
        if self.stop.is_set():
            raise Interrupted("stopping")
        if self._sleep is not None:
            await self._sleep(max(0.0, seconds))
            if self.stop.is_set():
                raise Interrupted("stopping")
            return
        try:
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
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

    def output_lost(self) -> None:
        """Our stdout's reader went away (``| head``): stop as on a first interrupt, resumable.

        Not ``interrupt()``: a Ctrl-C that also ended the reader would count twice and exit at once."""
        self.output_closed = True
        self.interrupted = True
        self.stop.set()

    def halt_with(self, error: HaltError) -> None:
        """Stop on purpose (auth, max failures): exit 3."""
        if self.halt is None:
            self.halt = error
        self.stop.set()

    def crashed(self, error: BaseException) -> None:
        """A bug in a worker or the heartbeat: stop cleanly, keep the state, re-raise at the end."""
        self.crashes.append(error)
        self.stop.set()

    def flush_now(self) -> None:
        """Save what must survive an immediate exit (a second Ctrl-C); never raises.

        What was committed before is consistent on its own, so a flush that
        cannot run now (e.g. pre-flight's transaction is open) is skipped.
        """
        for flush in self.flushers:
            with contextlib.suppress(Exception):
                flush()


async def pump(
    items: Iterator[Any],
    handle: Callable[[Any], Awaitable[None]],
    concurrency: int,
    control: Control,
    on_tick: Callable[[], None] | None = None,
    heartbeat_s: float = HEARTBEAT_S,
    ready: Callable[[asyncio.Event], Awaitable[bool]] | None = None,
) -> None:
    """Feed ``items`` through a bounded queue to ``concurrency`` workers running ``handle``.

    ``on_tick`` runs every ``heartbeat_s`` meanwhile (group commits, progress);
    if it fails, the job stops with its error. A worker's exception stops the
    job too; every one is kept, and raised at the end (an ``ExceptionGroup``
    when several). Cancelling the caller cancels the workers (a TaskGroup):
    the rows they held stay unfinished, to be marked skipped.

    ``ready`` (stdin: ``Source.ready``) is awaited before each row is read, so a
    blocking read never runs on the loop; it answers False when the job stops.
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
            except Exception as exc:
                control.crashed(exc)

    async def heartbeat(tick: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(heartbeat_s)
            try:
                tick()
            except Exception as exc:  # a failing group commit must not vanish
                control.crashed(exc)
                return

    async def feed() -> None:
        rows = iter(items)
        try:
            # the stop is checked before each row is *read*, not after: a stopping job reads
            # (and re-validates) no more of the input than it was already holding
            while not control.stopping:
                if ready is not None and not await ready(control.stop):
                    break  # stopping while the producer stalls: read (and send) nothing more
                if (item := next(rows, _END)) is _END:
                    break
                if item is TICK:
                    await asyncio.sleep(0)
                    continue
                await queue.put(item)
        except BaseException:
            control.stop.set()  # e.g. the input changed: the workers drain what is queued without sending it
            raise
        finally:
            for _ in range(concurrency):
                await queue.put(_END)

    feed_error: Exception | None = None  # e.g. the input changed: raised as itself, not in a group
    async with asyncio.TaskGroup() as workers:
        for _ in range(concurrency):
            workers.create_task(worker())
        beat = asyncio.create_task(heartbeat(on_tick)) if on_tick is not None else None
        try:
            await feed()
        except Exception as exc:
            feed_error = exc
        finally:
            if beat is not None:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat
    if on_tick is not None:
        on_tick()
    if feed_error is not None:
        raise feed_error
    if len(control.crashes) == 1:
        raise control.crashes[0]
    if control.crashes:
        raise ExceptionGroup("several workers crashed", [c for c in control.crashes if isinstance(c, Exception)])


def show_pause(progress: Progress, pacer: Pacer, control: Control) -> None:
    """Tell the progress display about a Retry-After pause (in wall-clock time), then redraw."""
    left = pacer.held_s  # this process's pause, or one the token's budget holds
    progress.paused_until = time.time() + left if left > 0 else None
    progress.tick()
