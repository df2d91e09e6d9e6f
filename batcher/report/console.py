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
from collections.abc import Callable
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
    """Counts rows as they finish and shows them; ``tick()`` is called a few times a second.

    A resumed job starts from what earlier runs finished (``resume``): the bar
    shows the whole job, the rate only this run's rows. The ETA counts a
    Retry-After pause still to wait (``paused_until``) plus the remaining rows
    at the rate measured outside pauses, so it counts down while nothing
    finishes. Clocks and
    the plain-line interval are constructor arguments (tests pass their own).
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        console: Console | None = None,
        label: str = "rows",
        quiet: bool = False,
        plain_every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.console = console or Console(quiet=True)
        self.quiet = quiet or self.console.quiet
        self.total = total
        self.done = 0
        self.failed = 0
        self.initial = 0  # rows finished by earlier runs: not part of this run's rate
        self.label = label
        self._paused_until: float | None = None
        self._pause_began: float | None = None
        self._paused_s = 0.0  # time spent in ended pauses: not part of the rate
        self.plain_every_s = self.console.plain_every_s if plain_every_s is None else plain_every_s
        self._clock = clock
        self._wall = wall_clock
        self._started = clock()
        # Rows/s the --rate promise allows: the first window's burst must not make the ETA promise more
        self.max_rows_per_s: float | None = None
        self._last_plain = self._started
        self._bar: Any = None

    @property
    def paused_until(self) -> float | None:
        """Wall-clock end of the current Retry-After pause, or None."""
        return self._paused_until

    @paused_until.setter
    def paused_until(self, value: float | None) -> None:
        now = self._clock()
        if value and self._pause_began is None:
            self._pause_began = now
        elif not value and self._pause_began is not None:
            self._paused_s += now - self._pause_began
            self._pause_began = None
        self._paused_until = value

    def _active_s(self) -> float:
        """Seconds this run spent not paused: a pause must not lower the rate the ETA uses after it."""
        now = self._clock()
        paused = self._paused_s + (now - self._pause_began if self._pause_began is not None else 0.0)
        return max(now - self._started - paused, 1e-9)

    def resume(self, counts: dict[str, int], todo: int) -> None:
        """Start from the whole job: ``counts`` from ``Store.counts()``, ``todo`` rows this run will send.

        Rows to send are the unfinished ones (counted as ``skipped``) plus the
        failed ones being retried; the rest are done, and failures not retried
        stay failures.
        """
        self.total = counts["total"]
        self.done = self.initial = max(0, counts["total"] - todo)
        self.failed = max(0, counts["failed"] - max(0, todo - counts["skipped"]))

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
            # tqdm's own ETA freezes while nothing finishes (a Retry-After pause): ours is in the postfix
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )

    def advance(self, outcome: str) -> None:
        """One row finished with ``outcome``."""
        self.done += 1
        if outcome == "failed":
            self.failed += 1
        if self._bar is not None:
            self._bar.update(1)

    def _paused_text(self) -> str | None:
        if self._paused_until and self._paused_until > self._wall():
            return "paused for Retry-After until " + time.strftime("%H:%M:%S", time.localtime(self.paused_until))
        return None

    def rate(self) -> float:
        """Rows per second finished by this run, pauses left out."""
        return (self.done - self.initial) / self._active_s()

    def eta_s(self) -> float | None:
        """Seconds until the job is done: the pause still to wait plus the remaining rows at the current rate
        (never faster than ``max_rows_per_s``, the pace the --rate promise allows).

        None when it cannot be known yet (no total, or no row finished by this run).
        """
        if not self.total:
            return None
        remaining = max(0, self.total - self.done)
        if remaining == 0:
            return 0.0
        rate = min(self.rate(), self.max_rows_per_s) if self.max_rows_per_s else self.rate()
        if rate <= 0:
            return None
        pause = max(0.0, self._paused_until - self._wall()) if self._paused_until else 0.0
        return pause + remaining / rate

    def _eta_text(self) -> str:
        left = self.eta_s()
        if left is None:
            return "ETA --:--:--"
        seconds = int(left + 0.5)
        return f"ETA {seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    def line(self) -> str:
        """The current status as one plain line."""
        parts = [
            f"{self.done}{f'/{self.total}' if self.total is not None else ''} {self.label}",
            f"{self.rate():.1f}/s",
        ]
        if self.total:
            parts.insert(1, f"{100 * self.done / self.total:.0f}%")
            parts.append(self._eta_text())
        parts.append(f"{self.failed} failed")
        if paused := self._paused_text():
            parts.append(paused)
        return " | ".join(parts)

    def note(self, text: str) -> None:
        """A message between progress updates (e.g. "draining in-flight requests"), shown even with --quiet."""
        if self._bar is not None:
            self._bar.clear()
        self.console.say("notice", text)
        if self._bar is not None:
            self._bar.refresh()

    def tick(self) -> None:
        """Refresh the bar (terminal) or print a status line if enough time has passed."""
        if self.quiet:
            return
        if self.console.is_tty:
            if self._bar is None:
                self._start_bar()
            self._bar.total = self.total
            postfix = f"{self._eta_text()}, {self.failed} failed" if self.total else f"{self.failed} failed"
            if p := self._paused_text():
                postfix += f", {p}"
            self._bar.set_postfix_str(postfix, refresh=True)
            return
        if self._clock() - self._last_plain >= self.plain_every_s:
            self._last_plain = self._clock()
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
