"""Progress on stderr: a live line on a terminal, a plain status line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import IO

PLAIN_EVERY_S = 5.0


class Progress:
    """Counts rows as they finish and renders them; ``tick()`` is called by the engine's heartbeat."""

    def __init__(
        self, total: int | None = None, stream: IO[str] | None = None, quiet: bool = False, label: str = "rows"
    ):
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.failed = 0
        self.label = label
        self.quiet = quiet
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.paused_until: float | None = None  # wall-clock time of a Retry-After pause
        self._started = time.monotonic()
        self._last_plain = self._started
        self._drawn = False

    def advance(self, outcome: str) -> None:
        """One row finished with ``outcome``."""
        self.done += 1
        if outcome == "failed":
            self.failed += 1

    def line(self) -> str:
        """The current status as one line."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        total = f"/{self.total}" if self.total is not None else ""
        parts = [f"{self.done}{total} {self.label}", f"{rate:.1f}/s"]
        if self.total:
            pct = 100 * self.done / self.total
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            parts.insert(1, f"{pct:.0f}%")
            parts.append(
                "ETA " + (time.strftime("%H:%M:%S", time.gmtime(left)) if left != float("inf") else "--:--:--")
            )
        parts.append(f"{self.failed} failed")
        if self.paused_until and self.paused_until > time.time():
            parts.append("paused for Retry-After until " + time.strftime("%H:%M:%S", time.localtime(self.paused_until)))
        return " | ".join(parts)

    def tick(self) -> None:
        """Redraw (TTY) or print a plain line if enough time has passed (not a TTY)."""
        if self.quiet:
            return
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()
            self._drawn = True
        elif time.monotonic() - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = time.monotonic()
            self.stream.write("progress: " + self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the live line so the summary starts on a fresh one."""
        if self._drawn:
            self.stream.write("\r\x1b[2K" + self.line() + "\n")
            self.stream.flush()
