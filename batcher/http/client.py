"""The HTTP client: GET / PUT / PATCH a meeting, with retries and pacing.

This is the only module that touches aiohttp, and the only place its
exceptions are caught: everything above sees a ``CallResult`` value. Every
attempt (retries included) first awaits the shared ``Pacer``, so ``--rate``
counts every request the job makes; redirects are never followed (a followed
redirect would be a request the pacer never saw). What to do after each
attempt (retry, wait, pause everyone, verify an unknown write by GET) is the
``core.attempts`` flow's command; ``Client.call`` only carries it out.
Every message it produces has the API token scrubbed out.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from .._version import __version__
from ..core.attempts import Done, Fresh, Outcome, PauseAll, Refresh, Send, Verify, Wait, WriteAttempts
from ..core.config import HttpConfig
from ..core.redaction import scrub, secret_values
from ..core.retry import parse_ratelimit, parse_ratelimit_policy, parse_retry_after, parse_x_ratelimit
from ..core.timings import Timeline
from .adaptive import Sleep
from .budget import Budget, Clock, default_budget_path
from .pacer import Pacer

_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@dataclass(slots=True)
class CallResult:
    """How one logical call ended, after all its attempts."""

    status: int | None
    data: dict[str, Any] | None = None
    error: str | None = None  # None on success; else not_found, http_error, rate_limited, network, timeout, auth ...
    message: str = ""
    attempts: int = 1
    # A write whose last attempt left it unknown whether the server applied it
    # (drop, timeout, 5xx) and that no GET could confirm either way.
    is_unknown: bool = False
    # The whole 2xx envelope, for answers whose data is not one object (the list endpoint's paging).
    envelope: dict[str, Any] | None = None

    @property
    def is_ok(self) -> bool:
        """True when the API answered 2xx with ``success`` not false."""
        return self.error is None


@dataclass
class Stats:
    """Counters shared by every worker of a job."""

    requests: int = 0
    retries: int = 0


def error_message(status: int, body: bytes, scrub: Callable[[str], str] = str) -> str:
    """A one-line message from any of the API's error shapes, or a non-JSON body.

    ``scrub`` takes secrets out *before* anything is cut short: a secret across the cut would
    otherwise leave its first characters in the message."""
    try:
        doc = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and err.get("message"):
            code = f" (code {err['code']})" if err.get("code") not in (None, status) else ""
            return f"{err['message']}{code}"
        if isinstance(err, str) and err:
            return err
        errors = doc.get("errors")
        if isinstance(errors, list) and errors:
            parts = [
                f"{e.get('message', '')} (code {e['code']})" if isinstance(e, dict) and "code" in e else str(e)
                for e in errors[:3]
            ]
            return "; ".join(parts)
        return f"HTTP {status}: {scrub(orjson.dumps(doc).decode(errors='replace'))[:200]}"
    text = _SPACE.sub(" ", _TAGS.sub(" ", scrub(body[:65536].decode("utf-8", errors="replace"))))[:2000].strip()
    return f"HTTP {status}: non-JSON body: {text[:160]}" if text else f"HTTP {status} with an empty body"


def _error_kind(status: int) -> str:
    if 300 <= status < 400:
        return "redirect"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    return "http_error"


# aiohttp re-sends an idempotent request once, silently, when a kept-alive
# connection drops; the switch to turn that off is private (since aiohttp 3.11,
# hence the floor in pyproject.toml). If it ever disappears, fail loudly rather
# than send requests --rate never counted.
_RETRY_SWITCH = "_retry_connection"
_WRITES = frozenset({"PUT", "PATCH", "POST", "DELETE"})
# Verify answers: True = GET shows the write landed, False = it did not, None = the GET failed.
Verifier = Callable[[], Awaitable[bool | None]]
# After a wait: read again, decide again -> (what was decided, the body to send next or None: the same).
Refresher = Callable[[], Awaitable[tuple[Fresh, dict[str, Any] | None]]]


def wall_clock_from(clock: Clock) -> Clock:
    """Wall-clock seconds that advance with ``clock`` (the job's, maybe a test's)."""
    offset = time.time() - clock()
    return lambda: offset + clock()


class Client:
    """GET/PUT/PATCH meetings over one keep-alive session sized to the concurrency.

    Entering it also attaches the token's shared rate budget (budget.py) to a
    pacer that has a rate, so run, plan, rollback and export all keep one
    budget per token without each having to know.
    """

    def __init__(
        self,
        config: HttpConfig,
        pacer: Pacer,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[..., None] | None = None,
        timeline: Timeline | None = None,
    ):
        self.config = config
        self.timeline = timeline  # per-request timings for the HTML report (core/timings.py)
        self.pacer = pacer
        self.stats = Stats()
        self._sleep = sleep
        self._attempts = WriteAttempts(config.max_attempts, rng or random.Random())  # what to do after each attempt
        self._on_retry = on_retry  # (event, text, **fields): the --verbose log
        self._session: aiohttp.ClientSession | None = None
        self._budget: Budget | None = None
        self._token = config.token.reveal()
        # Ids are validated to [0-9A-Za-z_-] and UUIDs, so when the base URL is
        # already in encoded form, whole URLs can skip yarl's per-request encoding.
        base = URL(config.base_url)
        self._is_url_safe = str(base) == config.base_url
        # URL.build from the base's parts skips parsing each whole URL again (~1.7 us a request);
        # only for URLs under the base with no query or fragment, which is every meeting URL.
        self._prefix = config.base_url.rstrip("/") if self._is_url_safe and not base.raw_query_string else None
        self._base_parts = (base.scheme, base.raw_authority, base.raw_path.rstrip("/"))

    async def __aenter__(self) -> Client:
        if self.pacer.rate is not None and self.pacer.budget is None:
            path = self.config.budget_path or default_budget_path(self._token)
            self._budget = Budget(path, wall_clock_from(self.pacer.clock))
            self.pacer.attach_budget(self._budget)
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections,
            limit_per_host=self.config.max_connections,
            ssl=not self.config.is_insecure,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            headers={
                "Authorization": f"Bearer {self._token}",
                "User-Agent": f"batcher/{__version__}",
                "Content-Type": "application/json",  # on GETs too: harmless, and saves a merge per request
            },
            raise_for_status=False,
            skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),  # the API sets no cookies: skip filtering them per request
        )
        if not hasattr(self._session, _RETRY_SWITCH):
            await self.__aexit__(None, None, None)  # the session and the budget both
            raise RuntimeError(
                f"aiohttp {aiohttp.__version__} has no ClientSession.{_RETRY_SWITCH}: need aiohttp>=3.11"
            )
        setattr(self._session, _RETRY_SWITCH, False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._budget is not None:
            self.pacer.attach_budget(None)
            self._budget.close()
            self._budget = None

    def scrub(self, text: str) -> str:
        """``text`` with the API token replaced by ``***`` (error bodies may echo headers)."""
        return text.replace(self._token, "***") if self._token and self._token in text else text

    def _clean(self, text: str, sent: dict[str, Any] | None) -> str:
        """``text`` without the token or the credentials of ``sent`` (the request's body)."""
        text = self.scrub(text)
        return scrub(text, secret_values(sent)) if sent else text

    def _error_text(self, status: int, body: bytes, sent: dict[str, Any] | None) -> str:
        """The error message of an answer, cleaned before any part of it is cut short and after."""
        clean = functools.partial(self._clean, sent=sent)
        return clean(error_message(status, body, clean))

    async def call(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        verify: Verifier | None = None,
        refresh: Refresher | None = None,
    ) -> CallResult:
        """One logical call with retries; never raises for HTTP or network trouble.

        ``verify`` is for writes: after a failure that leaves it unknown whether
        the write landed, it is asked (True: a GET shows it landed, False: it did
        not, None: the GET failed). ``refresh`` is for writes built from a read:
        after every wait and every unknown outcome it reads and decides again,
        and answers a ``Fresh`` with the body to send next (the same one, or one
        merged onto what the server now holds); it replaces ``verify``. What to
        do after each attempt, and when the call's failure is ``is_unknown``
        ("may have been applied"), is the ``core.attempts.WriteAttempts`` flow;
        this loop only carries it out.
        """
        payload = orjson.dumps(body) if body is not None else None
        target = self.target(url)
        flow = self._attempts.commands(
            is_write=method in _WRITES, can_verify=verify is not None, can_refresh=refresh is not None
        )
        command = next(flow)
        result: CallResult  # set by the first command: every flow starts with a Send
        while True:
            match command:  # class patterns without captures: a capture costs ~1 us per command
                case Send():
                    result, outcome = await self._send(method, target, payload, body, command.attempt)
                    command = flow.send(outcome)
                case PauseAll():
                    self.pacer.pause_for(command.seconds)
                    if self.timeline is not None:
                        self.timeline.pause(command.seconds)
                    command = flow.send(None)
                case Wait():
                    self.stats.retries += 1
                    if self._on_retry is not None:
                        self._log_retry(method, url, result, command)
                    if not command.is_paused:  # else the pacer's pause does the waiting
                        await self._sleep(command.seconds)
                    command = flow.send(None)
                case Verify():
                    assert verify is not None  # the flow asks only when it can
                    command = flow.send(await verify())
                case Refresh():
                    assert refresh is not None  # the flow asks only when it can
                    fresh, rebuilt = await refresh()
                    if rebuilt is not None and rebuilt is not body:  # merged onto someone else's change
                        body, payload = rebuilt, orjson.dumps(rebuilt)
                    command = flow.send(fresh)
                case Done():
                    if command.is_confirmed:
                        return self._confirmed(result)
                    return self._unknown(result) if command.is_unknown else result

    def _log_retry(self, method: str, url: str, result: CallResult, wait: Wait) -> None:
        assert self._on_retry is not None
        why = f"HTTP {result.status}" if result.status else result.error
        everyone = " (every worker pauses)" if wait.is_paused else ""
        text = f"{method} {url}: {why}; attempt {result.attempts + 1} in {wait.seconds:.1f} s{everyone}"
        self._on_retry("retry", text, status=result.status, attempt=result.attempts)

    async def _send(
        self, method: str, target: str | URL, payload: bytes | None, body: dict[str, Any] | None, attempt: int
    ) -> tuple[CallResult, Outcome]:
        """One attempt: paced, sent, timed; its result and what the flow needs of it."""
        ticket = self.pacer.count_free_start() if self.pacer.is_free else await self.pacer.acquire()
        started = self.timeline.now() if self.timeline is not None else 0.0
        result, retry_after = await self._attempt(method, target, payload, ticket, body)
        result.attempts = attempt
        if self.timeline is not None:
            self.timeline.request(method, started, result.status, result.error, attempt > 1)
        return result, Outcome(result.status, result.error, retry_after)

    def target(self, url: str) -> str | URL:
        """What aiohttp is given for ``url``: an already-encoded ``URL`` when the base URL is in
        encoded form (ids are validated: nothing to encode), else the string for yarl to encode."""
        if not self._is_url_safe:
            return url
        prefix = self._prefix
        if prefix is not None and url.startswith(prefix) and url[len(prefix) : len(prefix) + 1] == "/":
            rest = url[len(prefix) :]
            if "?" not in rest and "#" not in rest:
                scheme, authority, path = self._base_parts
                return URL.build(scheme=scheme, authority=authority, path=path + rest, encoded=True)
        return URL(url, encoded=True)

    @staticmethod
    def _confirmed(result: CallResult) -> CallResult:
        return CallResult(
            200, attempts=result.attempts, message=f"confirmed by GET after {result.error or result.status}"
        )

    @staticmethod
    def _unknown(result: CallResult) -> CallResult:
        result.is_unknown = True
        result.message = f"{result.message}; the write may have been applied (no GET could tell)"
        return result

    async def _attempt(
        self, method: str, url: str | URL, payload: bytes | None, ticket: int | None, sent: dict[str, Any] | None = None
    ) -> tuple[CallResult, float | None]:

        assert self._session is not None, "use Client as an async context manager"
        self.stats.requests += 1
        try:
            async with self._session.request(method, url, data=payload, allow_redirects=False) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except TimeoutError:
            return CallResult(None, error="timeout", message=f"no answer within {self.config.timeout_s:g} s"), None
        except aiohttp.ClientError as exc:
            # str(exc) of aiohttp errors names host and port; scrubbed all the same
            return CallResult(
                None, error="network", message=self._clean(f"{type(exc).__name__}: {exc}", sent)[:300]
            ), None
        # The server's word on its budget, on every response (two look-ups when it says nothing).
        ratelimit_text = headers.get("Ratelimit")
        if ratelimit_text is not None:
            policy = parse_ratelimit_policy(headers.get("Ratelimit-Policy"))
            self.pacer.on_response(status, parse_ratelimit(ratelimit_text), policy, ticket)
        elif (remaining := headers.get("X-RateLimit-Remaining")) is not None:
            ratelimit = parse_x_ratelimit(remaining, headers.get("X-RateLimit-Reset"), now_s=time.time())
            self.pacer.on_response(status, ratelimit, None, ticket)
        elif self.pacer.adaptive is not None:
            self.pacer.on_response(status, None, None, ticket)
        if 200 <= status < 300:
            try:
                doc = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError:  # a proxy's page: the origin may have applied a write
                kind = "bad_answer" if method in _WRITES else "api_error"
                return CallResult(status, error=kind, message=self._error_text(status, body, sent)), None
            if isinstance(doc, dict) and doc.get("success") is False:
                return CallResult(status, error="api_error", message=self._error_text(status, body, sent)), None
            data = doc.get("data", doc.get("result")) if isinstance(doc, dict) else None
            envelope = doc if isinstance(doc, dict) else None
            return CallResult(status, data=data if isinstance(data, dict) else None, envelope=envelope), None
        if 300 <= status < 400:
            where = self._clean(headers.get("Location", "(no Location)"), sent)[:300]
            message = f"HTTP {status} redirect to {where}: not followed (check --base-url)"
            return CallResult(status, error="redirect", message=message), None
        message = self._error_text(status, body, sent)
        return CallResult(status, error=_error_kind(status), message=message), parse_retry_after(
            headers.get("Retry-After"), now_s=time.time()
        )
