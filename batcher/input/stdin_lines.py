"""Stdin read off the event loop: a stalled producer never freezes the job, Ctrl-C is obeyed at once.

A pipeline's producer may pause for minutes (``jq`` over a slow export, a query that streams). Read
on the event loop, a pending ``readline`` froze everything: no request sent for the rows already
received, no commit, no heartbeat (``status`` said "not running"), answers that arrived in time
judged as timeouts, and a Ctrl-C printed "starting nothing new" and then waited for the pipe to close
before sending every row it had read.

``LinesInThread`` reads the raw lines in a daemon thread into a bounded buffer. The job's own
(synchronous) chain of decoding and checking pulls lines from it as before, but the feeder first
awaits ``ready(stop)``: a complete non-blank line is buffered (so the next row can be decoded
without blocking), or the input ended, or the job is stopping. A stopping job stops waiting at
once; the thread, blocked in ``readline``, dies with the process (a daemon). The buffer holds at
most ``MAX_BUFFERED_LINES`` lines: memory stays flat whatever the producer's pace.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Iterator
from typing import IO

__all__ = ["MAX_BUFFERED_LINES", "LinesInThread", "looks_utf16"]

MAX_BUFFERED_LINES = 1024


def looks_utf16(head: bytes) -> bool:
    """A UTF-16 BOM, or NULs between ASCII letters, in the first four bytes."""
    return head[:2] in (b"\xff\xfe", b"\xfe\xff") or (
        len(head) == 4 and (head[1] == head[3] == 0 or head[0] == head[2] == 0)
    )


class LinesInThread:
    """Lines of a binary stream, read by a daemon thread; iterate them, and await ``ready`` first."""

    __slots__ = ("_cond", "_eof", "_error", "_event", "_lines", "_loop", "_nonblank", "_stream", "_thread", "head")

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lines: deque[bytes] = deque()  # read, not yet taken (at most MAX_BUFFERED_LINES)
        self._nonblank = 0  # how many of them hold a row (a blank line holds none)
        self._eof = False  # the producer closed the pipe (or reading failed: ``_error``)
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._event: asyncio.Event | None = None  # the loop's waiter in ``ready``, woken by the thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.head = b""  # the first bytes read (for the UTF-16 check)

    def start(self) -> LinesInThread:
        """Start reading (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="batcher-stdin", daemon=True)
            self._thread.start()
        return self

    def _raw_lines(self) -> Iterator[bytes]:
        """Lines of the stream. A real file descriptor is read with ``os.read``, not through the
        buffered reader: a daemon thread blocked inside ``BufferedReader.readline`` holds its lock,
        and the interpreter aborts at exit when it cannot take it ("could not acquire lock ...")."""
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):  # BytesIO and the like: never blocks
            yield from iter(self._stream.readline, b"")
            return
        pending = b""
        while chunk := os.read(fd, 1 << 16):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
        if pending:
            yield pending

    def _read(self) -> None:
        try:
            for line in self._raw_lines():
                with self._cond:
                    while len(self._lines) >= MAX_BUFFERED_LINES:
                        self._cond.wait()
                    if not self.head:
                        self.head = line[:4]
                    self._lines.append(line)
                    self._nonblank += bool(line.strip())
                    self._wake()
        except BaseException as exc:  # a closed or broken stdin: the consumer sees the end, then this
            self._error = exc
        finally:
            with self._cond:
                self._eof = True
                self._wake()

    def _wake(self) -> None:  # under the lock
        self._cond.notify_all()
        if self._event is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._event.set)

    async def ready(self, stop: asyncio.Event) -> bool:
        """Wait until the next row can be read without blocking (True), or the job stops (False)."""
        self.start()
        while True:
            with self._cond:
                if self._nonblank > 0 or self._eof:
                    return True
                self._loop = asyncio.get_running_loop()
                self._event = event = asyncio.Event()
            if stop.is_set():
                return False
            stopping = asyncio.ensure_future(stop.wait())
            arrived = asyncio.ensure_future(event.wait())
            try:
                await asyncio.wait({stopping, arrived}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                arrived.cancel()
            if stop.is_set():
                return False

    def __iter__(self) -> LinesInThread:
        return self

    def __next__(self) -> bytes:
        self.start()
        with self._cond:
            while not self._lines and not self._eof:
                self._cond.wait()
            if not self._lines:
                raise StopIteration
            line = self._lines.popleft()
            self._nonblank -= bool(line.strip())
            self._cond.notify_all()  # room in the buffer for the reader
            return line
