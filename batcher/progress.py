"""What a person (or a pipeline) sees on stderr: progress, events, the summary.

``Console`` is the one place batcher writes to stderr. In text mode it prints
sentences; with ``--log-format json`` every message is one JSON object a line
(``{"event": ..., "message": ..., ...fields}``) for log pipelines.

``Progress`` draws a live bar (tqdm) on a terminal: done/total, rows/s, ETA,
failures so far and a visible "paused for Retry-After until HH:MM:SS". When
stderr is not a terminal it prints a plain status line every few seconds
instead (a JSON ``progress`` event in JSON mode).
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import IO, Any

import orjson

# Seconds between plain status lines when stderr is not a terminal.
PLAIN_EVERY_S = 5.0


class Console:
    """stderr, in text or JSON lines; ``quiet`` silences progress, not errors."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        log_format: str = "text",
        quiet: bool = False,
        verbose: bool = False,
        plain_every_s: float = PLAIN_EVERY_S,
    ):
        self.stream = stream or sys.stderr
        self.plain_every_s = plain_every_s  # tests pass 0: a status line on every tick
        self.is_json = log_format == "json"
        self.quiet = quiet
        self.verbose = verbose
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not self.is_json

    def say(self, event: str, text: str, **fields: Any) -> None:
        """One message: ``text`` for people, ``{"event", "message", **fields}`` for pipelines."""
        if self.is_json:
            text = orjson.dumps({"event": event, "message": text, **fields}, default=str).decode()
        self.stream.write(text + "\n")
        self.stream.flush()

    def debug(self, event: str, text: str, **fields: Any) -> None:
        """A message shown only with ``--verbose``."""
        if self.verbose:
            self.say(event, text, **fields)

    def progress(self, total: int | None = None, label: str = "rows") -> Progress:
        """A progress display bound to this console."""
        return Progress(total, console=self, label=label)


class Progress:
    """Counts rows as they finish and shows them; ``tick()`` is called a few times a second."""

    def __init__(
        self, total: int | None = None, *, console: Console | None = None, label: str = "rows", quiet: bool = False
    ):
        self.console = console or Console(quiet=True)
        self.quiet = quiet or self.console.quiet
        self.total = total
        self.done = 0
        self.failed = 0
        self.label = label
        self.paused_until: float | None = None  # wall-clock end of a Retry-After pause
        self._started = time.monotonic()
        self._last_plain = self._started
        self._bar: Any = None

    def _start_bar(self) -> None:
        from tqdm import tqdm

        # A terminal that reports a 0x0 size (a bare pty) would hide the bar: fall back to 100x20.
        width, height = shutil.get_terminal_size((100, 20))
        self._bar = tqdm(
            total=self.total,
            initial=self.done,
            unit=" " + self.label,
            file=self.console.stream,
            ncols=width,
            nrows=height,
            smoothing=0.05,
            mininterval=0.25,
        )

    def advance(self, outcome: str) -> None:
        """One row finished with ``outcome``."""
        self.done += 1
        if outcome == "failed":
            self.failed += 1
        if self._bar is not None:
            self._bar.update(1)

    def _paused_text(self) -> str | None:
        if self.paused_until and self.paused_until > time.time():
            return "paused for Retry-After until " + time.strftime("%H:%M:%S", time.localtime(self.paused_until))
        return None

    def line(self) -> str:
        """The current status as one plain line."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.done}{f'/{self.total}' if self.total is not None else ''} {self.label}", f"{rate:.1f}/s"]
        if self.total:
            left = (self.total - self.done) / rate if rate > 0 else None
            parts.insert(1, f"{100 * self.done / self.total:.0f}%")
            parts.append("ETA " + (time.strftime("%H:%M:%S", time.gmtime(left)) if left is not None else "--:--:--"))
        parts.append(f"{self.failed} failed")
        if paused := self._paused_text():
            parts.append(paused)
        return " | ".join(parts)

    def tick(self) -> None:
        """Refresh the bar (terminal) or print a status line if enough time has passed."""
        if self.quiet:
            return
        if self.console.is_tty:
            if self._bar is None:
                self._start_bar()
            self._bar.total = self.total
            postfix = f"{self.failed} failed" + (f", {p}" if (p := self._paused_text()) else "")
            self._bar.set_postfix_str(postfix, refresh=True)
            return
        if time.monotonic() - self._last_plain >= self.console.plain_every_s:
            self._last_plain = time.monotonic()
            self.console.say(
                "progress",
                "progress: " + self.line(),
                done=self.done,
                total=self.total,
                failed=self.failed,
                paused_until=self._paused_text(),
            )

    def close(self) -> None:
        """End the live bar so the summary starts on a fresh line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
