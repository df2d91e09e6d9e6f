"""Job configuration: one frozen value object, its defaults, and the token as a secret.

``JobConfig`` is what a job is told, flat, as a library user or the command line builds it.
Each edge of the pipeline gets only its part, as httpx passes ``Timeout`` and ``Limits``:
``config.pacing`` (the rate promise, the pacer's and the budget's), ``config.http`` (what
the client needs to reach the API) and ``config.paths`` (the files a job writes). They are
derived once from the fields, never set on their own, so the flat fields stay the one truth;
only ``run`` (and its intake) sees the whole ``JobConfig``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import UsageError

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_CONCURRENCY = 8
DEFAULT_RATE = "1200/300"  # Cloudflare's global API limit per token
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIMEOUT_S = 30.0
MODES = ("merge", "replace", "patch")
# Account and app ids go into URL paths: nothing outside this set ever may.
# (fullmatch, not match + "$": "$" also matches before a trailing newline.)
BASE_URL_EXAMPLE = "https://api.cloudflare.com/client/v4"
MAX_TIMEOUT_S = 86400.0  # a day for one request is surely a typo (and inf overflows asyncio's timers)
ACCOUNT_RE = re.compile(r"[0-9A-Za-z_-]{1,32}")


class Secret:
    """A string that never shows itself: not in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class RateSpec:
    """At most ``max_requests`` request starts in any window of ``window_s`` seconds."""

    max_requests: int
    window_s: float
    is_auto: bool = False

    def __str__(self) -> str:
        text = f"{self.max_requests}/{self.window_s:g}"
        return f"auto (ceiling {text})" if self.is_auto else text


def parse_rate(text: str | None) -> RateSpec | None:
    """Parse ``--rate``: ``N/SECONDS``, ``none`` (no pacing) or ``auto[:N/SECONDS]``."""
    text = (text or DEFAULT_RATE).strip().lower()
    if text == "none":
        return None
    is_auto = text.startswith("auto")
    if is_auto:
        # plain "auto" aims no higher than Cloudflare's global limit; "auto:N/S" sets another ceiling
        text = text[5:] if text.startswith("auto:") else DEFAULT_RATE
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d*)?|\.\d+)", text)
    if not match or int(match[1]) < 1 or float(match[2]) <= 0:
        raise UsageError(f"--rate must look like 1200/300 (requests/seconds), 'auto' or 'none', not {text!r}")
    return RateSpec(int(match[1]), float(match[2]), is_auto)


@dataclass(frozen=True)
class PacingConfig:
    """How fast requests may start: the pacer's and the shared budget's part of a job."""

    rate: RateSpec | None  # None: no pacing (``--rate none``)
    max_in_flight: int  # ``--concurrency``: requests under way at once
    budget_path: str | None  # the token's shared budget file; None: the per-token default


@dataclass(frozen=True)
class HttpConfig:
    """What the client needs to reach the API: where, as whom, how long and how often to try."""

    base_url: str
    app_id: str | None
    token: Secret
    timeout_s: float  # one attempt, whole (connect, send, read)
    max_attempts: int  # per request, the first included
    max_connections: int  # open connections at most (one per request in flight)
    is_insecure: bool  # ``--insecure``: TLS certificates not verified
    budget_path: str | None  # the budget the client attaches to a pacing pacer; None: per-token default

    def meeting_url(self, account_id: str, meeting_id: str) -> str:
        """The URL of one meeting, each id an encoded path segment.

        Ids are validated before they get here; encoding each one as a single
        segment (``/``, ``?``, ``#``, ``%`` and ``..`` included) means that even
        an unvalidated id could not add a segment or a query.
        """
        root = self.base_url.rstrip("/")
        account, meeting = _segment(account_id), _segment(meeting_id)
        if self.app_id:
            return f"{root}/accounts/{account}/realtime/kit/{_segment(self.app_id)}/meetings/{meeting}"
        return f"{root}/accounts/{account}/realtimekit/meetings/{meeting}"


@dataclass(frozen=True)
class PathsConfig:
    """The files a job reads and writes, defaults resolved (``--state``, ``--report``, ...)."""

    state_file: str
    report_file: str
    results_path: str | None  # ``-``: stdout; None: no results stream
    summary_path: str | None


@dataclass(frozen=True)
class JobConfig:
    """Everything a job needs to know, fixed before it starts."""

    input: str
    token: Secret = field(default_factory=lambda: Secret(""))
    base_url: str = DEFAULT_BASE_URL
    app_id: str | None = None
    account_id: str | None = None
    mode: str = "merge"
    input_format: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    rate: RateSpec | None = field(default_factory=lambda: parse_rate(DEFAULT_RATE))
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_failures: int | None = None
    allow_credential_reset: bool = False
    skip_invalid: bool = False
    retry_failed: bool = False
    force: bool = False
    state_path: str | None = None
    report_path: str | None = None
    results_path: str | None = None
    summary_path: str | None = None
    insecure: bool = False
    budget_path: str | None = None  # the shared rate budget file (http/budget.py); None: per-token default
    # --set PATH=VALUE, typed: merged into every row's patch; part of the job's identity
    set_values: tuple[tuple[str, Any], ...] = ()
    # run --canary N: the first N rows (and one of each other account) written first and read back;
    # not part of the job's identity (the same command without it goes on)
    canary: int = 0
    canary_only: bool = False  # stop (exit 0) after a clean canary

    def __post_init__(self) -> None:
        object.__setattr__(self, "set_values", tuple(tuple(pair) for pair in self.set_values or ()))
        # repr: a JSON array or object value is not hashable
        if len({path for path, _ in self.set_values}) < len({(path, repr(v)) for path, v in self.set_values}):
            raise UsageError("--set gives one field two different values")
        if self.mode != "patch" and any(path == "status" for path, _ in self.set_values):
            raise UsageError("--set status=... needs --mode patch: PATCH is the only call that changes status")
        if self.mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.canary < 0:
            raise UsageError("--canary must be 0 (no canary) or more rows")
        if self.canary_only and self.canary < 1:
            raise UsageError("--canary-only needs --canary N (N >= 1): the rows to write and read back first")
        if self.max_attempts < 1:
            raise UsageError("--max-attempts must be at least 1")
        check_seconds(self.timeout_s, "--timeout")
        check_base_url(self.base_url)
        for flag, value in (("--account-id", self.account_id), ("--app-id", self.app_id)):
            if value is not None and not ACCOUNT_RE.fullmatch(value):
                raise UsageError(f"{flag} must be 1-32 characters of 0-9 A-Z a-z _ -, not {value!r}")
        if self.input == "-" and not self.state_path:
            raise UsageError("reading from stdin needs --state FILE, so the job can be resumed")

    @property
    def state_file(self) -> str:
        """``--state`` or ``INPUT.state.db``."""
        return self.state_path or f"{self.input}.state.db"

    @property
    def report_file(self) -> str:
        """``--report`` or ``INPUT.failures.jsonl``."""
        if self.report_path:
            return self.report_path
        base = self.input if self.input != "-" else self.state_file
        return f"{base}.failures.jsonl"

    # cached_property writes the instance's __dict__ directly, so it works on a frozen dataclass
    # and is not a field: construction, equality and repr stay the flat fields'.
    @cached_property
    def pacing(self) -> PacingConfig:
        """The pacer's part: the rate, requests in flight, the shared budget file."""
        return PacingConfig(self.rate, self.concurrency, self.budget_path)

    @cached_property
    def http(self) -> HttpConfig:
        """The client's part: base URL, app id, token, timeout, attempts, connections, TLS."""
        return HttpConfig(
            self.base_url,
            self.app_id,
            self.token,
            self.timeout_s,
            self.max_attempts,
            self.concurrency,
            self.insecure,
            self.budget_path,
        )

    @cached_property
    def paths(self) -> PathsConfig:
        """The job's files, defaults resolved: the store's and the outputs' part."""
        return PathsConfig(self.state_file, self.report_file, self.results_path, self.summary_path)

    def meeting_url(self, account_id: str, meeting_id: str) -> str:
        """The URL of one meeting (``HttpConfig.meeting_url``)."""
        return self.http.meeting_url(account_id, meeting_id)


_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_~-]+")  # what quote() leaves as it is, dots aside


def _segment(value: str) -> str:
    """One URL path segment: everything but unreserved characters percent-encoded; dots too, so
    ``.`` and ``..`` cannot name a parent."""
    if _PLAIN_SEGMENT.fullmatch(value):  # UUIDs and plain ids (every row): nothing to encode
        return value
    return quote(value, safe="").replace(".", "%2E")


def check_base_url(url: str, flag: str = "--base-url (or BATCHER_BASE_URL)") -> None:
    """Refuse a base URL that could not reach an API: it must be ``http(s)://host[:port][/path]``."""
    why = None
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError as exc:
        why = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            why = "it has no http:// or https:// scheme" if not parts.scheme else f"its scheme is {parts.scheme!r}"
        elif not parts.hostname:
            why = "it has no host"
        elif parts.query or url.endswith("?"):
            why = "it has a query (?...)"
        elif parts.fragment or "#" in url:
            why = "it has a fragment (#...)"
        elif any(ch.isspace() for ch in url):
            why = "it contains whitespace"
        elif parts.username is not None or parts.password is not None:
            why = "it carries a user name or password (the token goes in CLOUDFLARE_API_TOKEN or --token-file)"
    if why:
        # never echo a password: everything between "//" and the last "@" is hidden, and a URL
        # with credentials that does not even parse gets no parser message (it would quote them)
        start, at = url.find("//"), url.rfind("@")
        shown = url[: start + 2] + "***" + url[at:] if 0 <= start < at else url
        if shown != url and why and "user name or password" not in why:
            why = "it is not a valid URL, and it carries a user name or password"
        raise UsageError(f"{flag} {shown!r} is not a base URL: {why}; expected the form {BASE_URL_EXAMPLE}")


def check_seconds(value: float, flag: str) -> None:
    """A duration option must be a finite number of seconds above 0 (``nan``/``inf``/``-1`` are typos)."""
    if not math.isfinite(value) or value <= 0 or value > MAX_TIMEOUT_S:
        raise UsageError(f"{flag} must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, not {value!r}")
