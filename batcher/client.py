"""The HTTP client: GET / PUT / PATCH a meeting, with retries and pacing.

This is the only module that touches aiohttp, and the only place its
exceptions are caught: everything above sees a ``CallResult`` value. Every
attempt (retries included) first awaits the shared ``Pacer``, so ``--rate``
counts every request the job makes.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from . import __version__
from .config import JobConfig
from .limiter import Pacer, Sleep
from .retry import Verdict, backoff_s, classify, parse_ratelimit, parse_ratelimit_policy, parse_retry_after

_TAGS = re.compile(r"<[^>]+>")
# After these, a write may or may not have been applied (429 means it was not).
UNKNOWN_OUTCOME = frozenset({None, 408, 500, 502, 503, 504})
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


def error_message(status: int, body: bytes) -> str:
    """A one-line message from any of the API's error shapes, or a non-JSON body."""
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
        return f"HTTP {status}: {orjson.dumps(doc)[:200].decode(errors='replace')}"
    text = _SPACE.sub(" ", _TAGS.sub(" ", body[:2000].decode("utf-8", errors="replace"))).strip()
    return f"HTTP {status}: non-JSON body: {text[:160]}" if text else f"HTTP {status} with an empty body"


def _error_kind(status: int) -> str:
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    return "http_error"


class Client:
    """GET/PUT/PATCH meetings over one keep-alive session sized to the concurrency."""

    def __init__(
        self,
        config: JobConfig,
        pacer: Pacer,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[..., None] | None = None,
    ):
        self.config = config
        self.pacer = pacer
        self.stats = Stats()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_retry = on_retry  # (event, text, **fields): the --verbose log
        self._session: aiohttp.ClientSession | None = None
        # Ids are validated to [0-9A-Za-z_-] and UUIDs, so when the base URL is
        # already in encoded form, whole URLs can skip yarl's per-request encoding.
        self._is_url_safe = str(URL(config.base_url)) == config.base_url
        self._reads_ratelimit = pacer.adaptive is not None

    async def __aenter__(self) -> Client:
        connector = aiohttp.TCPConnector(
            limit=self.config.concurrency,
            limit_per_host=self.config.concurrency,
            ssl=not self.config.insecure,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s),
            headers={
                "Authorization": f"Bearer {self.config.token.reveal()}",
                "User-Agent": f"batcher/{__version__}",
                "Content-Type": "application/json",  # on GETs too: harmless, and saves a merge per request
            },
            raise_for_status=False,
            skip_auto_headers=("Accept-Encoding",),
        )
        # aiohttp silently re-sends an idempotent request once when a kept-alive
        # connection drops. That request would escape --rate and the retry
        # counters; our own retry loop handles drops, so switch it off.
        self._session._retry_connection = False
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        verify: Callable[[], Awaitable[bool]] | None = None,
    ) -> CallResult:
        """One logical call with retries; never raises for HTTP or network trouble.

        ``verify`` is for writes: after a failure that leaves it unknown whether
        the write landed (a dropped connection, a timeout, a 5xx from a proxy),
        it is asked, before the write is sent again, whether the meeting already
        looks as the write would leave it; if so the call has succeeded and is
        not repeated. A server that applied a PUT and then lost the connection
        is thus written once, not twice.
        """
        payload = orjson.dumps(body) if body is not None else None
        target: str | URL = URL(url, encoded=True) if self._is_url_safe else url
        attempt = 0
        while True:
            attempt += 1
            if not self.pacer.is_free:
                await self.pacer.acquire()
            result, retry_after = await self._attempt(method, target, payload)
            result.attempts = attempt
            verdict = classify(result.status) if result.error != "api_error" else Verdict.FAIL
            if verdict is not Verdict.RETRY:
                return result
            is_unknown = verify is not None and result.status in UNKNOWN_OUTCOME
            if attempt >= self.config.max_attempts:
                return await self._confirmed(result, verify) if is_unknown else result
            self.stats.retries += 1
            wait = retry_after if retry_after is not None else backoff_s(attempt, self._rng)
            if self._on_retry is not None:
                why = f"HTTP {result.status}" if result.status else result.error
                text = f"{method} {url}: {why}; attempt {attempt + 1} in {wait:.1f} s"
                self._on_retry("retry", text, status=result.status, attempt=attempt)
            if retry_after is None:  # with Retry-After the shared gate does the waiting
                await self._sleep(wait)
            if is_unknown and (confirmed := await self._confirmed(result, verify)).is_ok:
                return confirmed

    async def _confirmed(self, result: CallResult, verify: Callable[[], Awaitable[bool]] | None) -> CallResult:
        """``result`` turned into a success if ``verify`` shows the write landed after all."""
        if verify is not None and await verify():
            return CallResult(
                200, attempts=result.attempts, message=f"confirmed by GET after {result.error or result.status}"
            )
        return result

    async def _attempt(self, method: str, url: str | URL, payload: bytes | None) -> tuple[CallResult, float | None]:
        assert self._session is not None, "use Client as an async context manager"
        self.stats.requests += 1
        try:
            async with self._session.request(method, url, data=payload) as resp:
                body = await resp.read()
                status = resp.status
                # Headers matter on errors (Retry-After) and to --rate auto; skip the look-ups otherwise.
                headers = resp.headers if status >= 400 or self._reads_ratelimit else None
        except TimeoutError:
            return CallResult(None, error="timeout", message=f"no answer within {self.config.timeout_s:g} s"), None
        except aiohttp.ClientError as exc:
            # str(exc) of aiohttp errors names host and port, never headers
            return CallResult(None, error="network", message=f"{type(exc).__name__}: {exc}"[:300]), None
        retry_after = None
        if headers is not None:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            ratelimit = parse_ratelimit(headers.get("Ratelimit"))
            self.pacer.on_response(
                status, retry_after, ratelimit, parse_ratelimit_policy(headers.get("Ratelimit-Policy"))
            )
        if 200 <= status < 300:
            try:
                doc = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError:
                return CallResult(status, error="api_error", message=error_message(status, body)), None
            if isinstance(doc, dict) and doc.get("success") is False:
                return CallResult(status, error="api_error", message=error_message(status, body)), None
            data = doc.get("data", doc.get("result")) if isinstance(doc, dict) else None
            envelope = doc if isinstance(doc, dict) else None
            return CallResult(status, data=data if isinstance(data, dict) else None, envelope=envelope), None
        return CallResult(status, error=_error_kind(status), message=error_message(status, body)), retry_after
