"""Signals and the event loop for every command: a stop is clean in each phase of the process.

Before the loop a SIGTERM, like a SIGINT, ends the process as interrupted
(exit 130, nothing sent yet); inside it the command's own handlers
(``install_signals``) stop the job cleanly; once the loop has finished, the
job is over and a late signal no longer changes its exit code.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

from ..run.pool import Control
from .environment import Environment

_T = TypeVar("_T")


def install_signals(
    control: Control, on_second: Callable[[], None], on_first: Callable[[], None] | None = None
) -> None:
    """SIGINT and SIGTERM go to ``control.interrupt`` (first: stop cleanly; second: ``on_second``)."""
    loop = asyncio.get_running_loop()
    control.on_second_interrupt = on_second
    control.on_first_interrupt = on_first
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, control.interrupt)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_async(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a command's coroutine. Signals are handled in every phase of the process:
    before the loop a SIGTERM, like a SIGINT, ends it as interrupted (exit 130, nothing
    sent yet); inside it the command's own handlers stop the job cleanly; once the loop
    has finished, the job is over and a late signal no longer changes its exit code."""
    is_main = threading.current_thread() is threading.main_thread()
    if is_main:
        signal.signal(signal.SIGTERM, _interrupted)

    async def then_ignore_signals() -> _T:
        try:
            return await coro
        finally:
            # the job is over (its summary printed): from here to the process's end, through the
            # loop's own teardown (which would put the default handlers back), a signal changes nothing
            if is_main:
                loop, both = asyncio.get_running_loop(), {signal.SIGINT, signal.SIGTERM}
                # blocked meanwhile: removing the loop's handler passes through the default one, and a
                # SIGTERM in that instant would kill; one pending is discarded once it is ignored
                signal.pthread_sigmask(signal.SIG_BLOCK, both)
                try:
                    for sig in both:
                        loop.remove_signal_handler(sig)
                        signal.signal(sig, signal.SIG_IGN)
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, both)

    try:
        if Environment.read().is_uvloop_off:
            raise ImportError
        import uvloop  # optional: faster event loop when installed
    except ImportError:
        return asyncio.run(then_ignore_signals())
    return uvloop.run(then_ignore_signals())
