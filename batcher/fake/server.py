"""A local RealtimeKit-compatible API for demos, tests and rehearsals.

It behaves like the real one where it matters to batcher: both paths, GET /
PUT / PATCH with the real envelopes, PUT as *replace* (a field left out goes
back to its default), write-only storage credentials hidden on GET, 404 for
unknown meetings, 400 from the same schema, a rate limit answered with 429 and
``Retry-After``, random failures (``fail_rate``) and latency.

``extra_fields`` (dotted paths) are fields this server knows beyond batcher's
schema, as the real API grows: a PUT may carry them and they are stored.

Tests script faults through ``FakeApi.faults`` (or ``POST /__faults``): each
entry answers the next matching request with a status, a dropped connection,
a hang, a truncated or non-JSON body; ``chaos=ChaosSpec(...)`` draws such
faults at random from a seeded RNG. ``GET /__stats``, ``GET /__meetings``
(the whole state, secrets and unknown fields included) and ``GET /__log``
(every API request: wall-clock arrival, method, meeting, status, whether a
write was applied) let a test, or a test driving subprocesses, see what the
server saw.

Switches for the gaps between this model and the world: ``shows_secrets`` (answers that show
stored credentials, real or as ``"****"``), ``trims_titles`` (a server that normalises what it
stores), ``ignores_fields`` (paths a write is answered 200 for and that keep their old value);
``updated_at`` moves to the millisecond, always forward; fault entries may carry ``"edit": {...}`` (a colleague's change, applied to the meeting
as the fault answers) and ``{"kind": "foreign", "as": ID}`` (a proxy answering with another
meeting's document).

It answers exactly what its seed says: a meeting is served under its id as
seeded (exact match, as stored), with the seeded ``status``,
``created_at``/``updated_at`` and any fields the schema does not know. A PUT
may carry the unknown fields the server knows (``extra_fields``; by default
every unknown path seen in the seed); any other unknown field is a 400 naming
it.
"""

from __future__ import annotations

import asyncio
import calendar
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from ..core.documents import deep_merge, known_fields, strip_secrets, unknown_paths
from ..core.rows import check_account_id, check_meeting_id, validate_body
from ..core.schema import CARRIED_KEY, DEFAULT_DOCUMENT, SECRET_FIELDS
from .chaos import Chaos, ChaosSpec, is_known_extra
from .faults import DROPPED, apply_fault, drop, gateway_error, json_response, next_fault, service_error
from .listing import Listing, list_page

API_PREFIX = "/client/v4"
# per-request flags the request log reads back once the answer is made
APPLIED = web.RequestKey("applied", bool)


def _fresh(doc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy: merged documents share nested objects with DEFAULT_DOCUMENT."""
    copy: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return copy


class FakeApi:
    """The server's state and behaviour; ``app()`` makes the aiohttp application."""

    def __init__(
        self,
        *,
        token: str | None = None,
        rate_limit: tuple[int, float] | None = None,
        fail_rate: float = 0.0,
        latency_ms: float = 0.0,
        seed: int | None = None,
        record_arrivals: bool = False,
        ratelimit_headers: bool = True,
        x_ratelimit_headers: bool = False,
        extra_fields: Iterable[str] | None = None,
        chaos: ChaosSpec | None = None,
        log_requests: bool = True,
        listing: Listing | None = None,
        shows_secrets: str | None = None,
        trims_titles: bool = False,
        ignores_fields: Iterable[str] = (),
    ) -> None:
        self.token = token
        self.rate_limit = rate_limit
        self.ratelimit_headers = ratelimit_headers
        self.fail_rate = fail_rate
        self.latency_s = latency_ms / 1000
        self.rng = random.Random(seed)
        self.meetings: dict[tuple[str, str], dict[str, Any]] = {}
        self.meta: dict[tuple[str, str], dict[str, Any]] = {}
        self.faults: deque[dict[str, Any]] = deque()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.puts: Counter[str] = Counter()  # applied PUTs per meeting id
        self.arrivals: list[float] | None = [] if record_arrivals else None
        self._window: deque[float] = deque()
        self.on_request: Any = None  # tests: called with the running request total
        # the older X-RateLimit-Limit / -Remaining (every answer) and -Reset (an HTTP date, on 429)
        self.x_ratelimit_headers = x_ratelimit_headers
        # None: learn them from the seed (every unknown path a seeded meeting carries)
        self.extra_fields: set[str] = set(extra_fields or ())
        self.learns_extra_fields = extra_fields is None
        self.chaos = Chaos(chaos, seed) if chaos is not None else None
        # wall clock (time.time), so the arrivals of several client processes compare
        self.log: list[dict[str, Any]] | None = [] if log_requests else None
        self.listing = listing or Listing()
        # Gaps between the model and the world, one switch each:
        # a GET (and every answer) that shows stored credentials: "real" values or "mask" ("****")
        if shows_secrets not in (None, "real", "mask"):
            raise ValueError(f"shows_secrets must be None, 'real' or 'mask', not {shows_secrets!r}")
        self.shows_secrets = shows_secrets
        self.trims_titles = trims_titles  # a server that normalises what it stores: titles trimmed
        # dotted paths a write is answered 200 for and that keep their old value (a field this account
        # does not support): the gap the canary (run --canary) exists to find
        self.ignores_fields = tuple(ignores_fields)

    # -- data -----------------------------------------------------------------

    def add_meeting(self, account_id: str, meeting_id: str | None = None, **fields: Any) -> str:
        """Create a meeting from body fields (defaults for the rest); returns its id."""
        meeting_id = meeting_id or str(uuid.uuid4())
        self.meetings[(account_id, meeting_id)] = _fresh(deep_merge(DEFAULT_DOCUMENT, fields))
        now = _stamp()
        self.meta[(account_id, meeting_id)] = {"created_at": now, "updated_at": now, "status": "ACTIVE"}
        if self.learns_extra_fields:
            self.extra_fields.update(unknown_paths(fields))
        return meeting_id

    def load_seed(self, lines: Iterable[bytes]) -> int:
        """Add meetings from JSONL lines ``{"account_id", "id" (or "meeting_id"), ...fields}``.

        ``status``, ``created_at`` and ``updated_at`` are kept as seeded; the id
        is kept exactly as written (and served only under that spelling).
        """
        count = 0
        for line in lines:
            if line.strip():
                doc = orjson.loads(line)
                account = doc.pop("account_id")
                meeting = doc.pop("id", None) or doc.pop("meeting_id")
                doc.pop("meeting_id", None)
                doc.pop(CARRIED_KEY, None)  # an export's note on its unknown fields, not a field
                meta = {k: doc.pop(k) for k in ("status", "created_at", "updated_at") if k in doc}
                self.add_meeting(account, meeting, **doc)
                self.meta[(account, meeting)].update(meta)
                count += 1
        return count

    def public(self, account_id: str, meeting_id: str) -> dict[str, Any]:
        """A meeting as GET shows it: no write-only credentials, plus read-only fields."""
        stored = self.meetings[(account_id, meeting_id)]
        doc = strip_secrets(stored) if self.shows_secrets != "real" else stored
        if self.shows_secrets == "mask":
            doc = _masked(stored)
        return {"id": meeting_id, **doc, **self.meta[(account_id, meeting_id)]}

    def edit(self, account_id: str, meeting_id: str, fields: dict[str, Any]) -> None:
        """Someone else's change (a colleague in the dashboard): merged in, ``updated_at`` moves."""
        key = (account_id, meeting_id)
        self.meetings[key] = _fresh(deep_merge(self.meetings[key], fields))
        self._touch_stamp(key)

    # -- the application ----------------------------------------------------------

    def app(self) -> web.Application:
        """The aiohttp application serving both API paths and the test endpoints."""
        app = web.Application(middlewares=[self._gate], client_max_size=8 << 20)
        for prefix in (
            "/accounts/{account}/realtimekit/meetings/{meeting}",
            "/accounts/{account}/realtime/kit/{app_id}/meetings/{meeting}",
        ):
            app.router.add_route("GET", prefix, self.get_meeting)
            app.router.add_route("PUT", prefix, self.put_meeting)
            app.router.add_route("PATCH", prefix, self.patch_meeting)
        app.router.add_get("/accounts/{account}/realtime/kit/{app_id}/meetings", self.list_meetings)
        # Every API route also under /client/v4, so a base URL copied from Cloudflare's docs works here.
        for route in list(app.router.routes()):
            if route.resource is not None and route.resource.canonical.startswith("/accounts/"):
                app.router.add_route(route.method, API_PREFIX + route.resource.canonical, route.handler)
        app.router.add_get("/__stats", self.stats)
        app.router.add_get("/__meetings", self.dump)
        app.router.add_get("/__arrivals", self.take_arrivals)
        app.router.add_get("/__log", self.take_log)
        app.router.add_post("/__faults", self.add_faults)
        return app

    def _is_api(self, request: web.Request) -> bool:
        return request.path.startswith(("/accounts/", API_PREFIX + "/accounts/"))

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._is_api(request):
            return await handler(request)
        self.requests[request.method] += 1
        number = sum(self.requests.values())
        if self.on_request is not None:
            self.on_request(number)
        entry = {
            "t": time.time(),
            "method": request.method,
            "account": request.match_info.get("account"),
            "meeting": request.match_info.get("meeting"),
            "status": None,  # None: no answer yet (a hang); 0: the connection was dropped
            "applied": False,
        }
        if self.log is not None:
            self.log.append(entry)
        now = time.monotonic()
        if self.arrivals is not None:
            self.arrivals.append(now)
        try:
            response = await self._screen(request, now, number)
            if response is None:
                response = await handler(request)
                self._ratelimit_headers(response, now)
            elif response.status == 429 and self.x_ratelimit_headers and self.rate_limit is not None:
                response.headers["X-RateLimit-Reset"] = formatdate(time.time() + self.rate_limit[1], usegmt=True)
        finally:
            entry["applied"] = request.get(APPLIED, False)
        entry["status"] = 0 if request.get(DROPPED) else response.status
        self.statuses[response.status] += 1
        return response

    def _ratelimit_headers(self, response: web.StreamResponse, now: float) -> None:
        """Like Cloudflare: say what is left of the budget (either header style)."""
        if self.rate_limit is None:
            return
        limit, window_s = self.rate_limit
        remaining = max(0, limit - len(self._window))
        if self.ratelimit_headers:
            reset = self._window[0] + window_s - now if self._window else window_s
            response.headers["Ratelimit"] = f'"default";r={remaining};t={max(0, int(reset + 0.999))}'
            response.headers["Ratelimit-Policy"] = f'"default";q={limit};w={window_s:g}'
        if self.x_ratelimit_headers:
            response.headers["X-RateLimit-Limit"] = str(limit)
            response.headers["X-RateLimit-Remaining"] = str(remaining)

    async def _screen(self, request: web.Request, now: float, number: int = 0) -> web.StreamResponse | None:
        """Auth, rate limit, scripted faults, random faults, latency: None lets the request through."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip() or (self.token and auth[7:] != self.token):
            return gateway_error(401, 10000, "Authentication error")
        if self.rate_limit is not None:
            limit, window_s = self.rate_limit
            while self._window and now - self._window[0] >= window_s:
                self._window.popleft()
            if len(self._window) >= limit:
                wait = max(1, int(self._window[0] + window_s - now + 0.999))
                return gateway_error(
                    429, 971, "Please wait and consider throttling your request speed", {"Retry-After": str(wait)}
                )
            self._window.append(now)
        fault = next_fault(self.faults, request)
        if fault is None and self.chaos is not None:
            fault = self.chaos.draw(number)
        if fault is not None:
            if fault.get("edit") is not None:  # a colleague's edit, made while this request is answered
                self.edit(request.match_info["account"], request.match_info["meeting"], fault["edit"])
            if fault.get("kind") == "foreign":  # a caching proxy or router: another meeting's document
                other = (request.match_info["account"], fault["as"])
                return json_response(200, {"success": True, "data": self.public(*other)})
            return await apply_fault(self.route, request, fault)
        if self.fail_rate and self.rng.random() < self.fail_rate:
            failures: list[int | str] = [500, 502, 503, "drop"]
            choice = self.rng.choice(failures)
            if isinstance(choice, str):  # "drop"
                return drop(request)
            return (
                service_error(choice, "injected failure")
                if choice == 500
                else web.Response(
                    status=choice, text="<html><body><h1>Bad gateway</h1></body></html>", content_type="text/html"
                )
            )
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return None

    async def route(self, request: web.Request) -> web.StreamResponse:
        """Dispatch to the handler for the request's method (used by apply_then_drop)."""
        handler = {"GET": self.get_meeting, "PUT": self.put_meeting, "PATCH": self.patch_meeting}[request.method]
        return await handler(request)

    def _find(self, request: web.Request) -> tuple[str, str] | web.Response:
        """The stored meeting's key, or the error answer."""
        account, meeting = request.match_info["account"], request.match_info["meeting"]
        if check_account_id(account) or check_meeting_id(meeting):
            return service_error(400, "invalid account or meeting id")
        key = (account, meeting)  # exact match: the id as stored
        if key not in self.meetings:
            return service_error(404, f"Meeting {meeting} not found")
        return key

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The request's JSON object, or the error answer."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return service_error(400, "body is not JSON")
        if not isinstance(body, dict):
            return service_error(400, "body must be a JSON object")
        return body

    async def get_meeting(self, request: web.Request) -> web.Response:
        """GET: the meeting without write-only fields."""
        key = self._find(request)
        if isinstance(key, web.Response):
            return key
        return json_response(200, {"success": True, "data": self.public(*key)})

    async def put_meeting(self, request: web.Request) -> web.Response:
        """PUT: validate, then *replace*: everything not named returns to its default."""
        return await self._write(request, lambda current, body: deep_merge(DEFAULT_DOCUMENT, body))

    async def patch_meeting(self, request: web.Request) -> web.Response:
        """PATCH: merge the body into the meeting (``status`` is settable only here)."""
        return await self._write(request, deep_merge)

    async def _write(self, request: web.Request, apply: Any) -> web.Response:
        key = self._find(request)
        body = await self._body(request)
        if isinstance(key, web.Response):
            return key
        if isinstance(body, web.Response):
            return body
        status = body.pop("status", None) if request.method == "PATCH" else None
        if status not in (None, "ACTIVE", "INACTIVE"):
            return service_error(400, "status: must be ACTIVE or INACTIVE")
        unknown = [p for p in unknown_paths(body) if not is_known_extra(p, self.extra_fields)]
        if unknown:
            return service_error(400, f"unknown field: {', '.join(sorted(unknown))}")
        problems = validate_body(known_fields(body))
        if problems:
            return service_error(400, "; ".join(str(p) for p in problems))
        before = self.meetings[key]
        self.meetings[key] = _fresh(apply(before, body))
        for path in self.ignores_fields:  # answered 200, kept as it was
            _keep_path(self.meetings[key], before, path.split("."))
        if self.trims_titles and isinstance(self.meetings[key].get("title"), str):
            self.meetings[key]["title"] = self.meetings[key]["title"].strip()
        if status:
            self.meta[key]["status"] = status
        self._touch(key)
        request[APPLIED] = True
        return json_response(200, {"success": True, "data": self.public(*key)})

    def _touch(self, key: tuple[str, str]) -> None:
        self.puts[key[1]] += 1
        self._touch_stamp(key)

    def _touch_stamp(self, key: tuple[str, str]) -> None:
        """A change moves ``updated_at`` (milliseconds, and always forward: two changes in one
        millisecond still differ, so a stamp compared by ``verify`` always shows a change)."""
        old, now = self.meta[key].get("updated_at"), _stamp()
        if isinstance(old, str) and now <= old and len(old) == len(now):
            now = _stamp(_parse_stamp(old) + 0.001)
        self.meta[key]["updated_at"] = now

    async def list_meetings(self, request: web.Request) -> web.Response:
        """GET the list endpoint: paged and filtered as ``self.listing`` says (see ``fake/listing.py``)."""
        account = request.match_info["account"]
        if check_account_id(account):
            return service_error(400, "invalid account id")
        meetings = [self.public(a, m) for (a, m) in self.meetings if a == account]
        status, doc = list_page(meetings, request.query, self.listing)
        return json_response(status, doc)

    async def stats(self, request: web.Request) -> web.Response:
        """Test endpoint: what the server has seen."""
        return json_response(
            200,
            {
                "requests": sum(self.requests.values()),
                "by_method": self.requests,
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "puts": self.puts,
            },
        )

    async def take_arrivals(self, request: web.Request) -> web.Response:
        """Bench endpoint: monotonic arrival times and statuses since the last call (then cleared)."""
        arrivals, self.arrivals = self.arrivals or [], [] if self.arrivals is not None else None
        statuses, self.statuses = dict(self.statuses), Counter()
        return json_response(200, {"arrivals": arrivals, "statuses": {str(k): v for k, v in statuses.items()}})

    async def dump(self, request: web.Request) -> web.Response:
        """Test endpoint: every stored meeting (secrets included: this is the test's view of the server)."""
        return json_response(
            200,
            [{"account_id": a, "id": m, **doc, **self.meta[(a, m)]} for (a, m), doc in self.meetings.items()],
        )

    async def take_log(self, request: web.Request) -> web.Response:
        """Test endpoint: the request log from entry ``?since=N`` on (not cleared; ``next`` to continue)."""
        log = self.log or []
        since = int(request.query.get("since", "0"))
        return json_response(
            200, {"entries": log[since:], "next": len(log), "chaos": self.chaos.drawn if self.chaos else {}}
        )

    async def add_faults(self, request: web.Request) -> web.Response:
        """Test endpoint: queue scripted faults (a JSON list)."""
        faults = orjson.loads(await request.read())
        self.faults.extend(faults)
        return json_response(200, {"queued": len(self.faults)})


async def start(api: FakeApi, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve ``api``; returns the runner (``await runner.cleanup()`` to stop) and the bound port."""
    runner = web.AppRunner(api.app(), access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]  # public API (BaseRunner.addresses): (host, port) of each bound socket
    return runner, bound


def _stamp(at: float | None = None) -> str:
    """An ``updated_at`` as the API writes it, to the millisecond."""
    ms = round((time.time() if at is None else at) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _parse_stamp(stamp: str) -> float:
    """The Unix time of a ``_stamp`` string."""
    return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + int(stamp[20:23]) / 1000


def _keep_path(new: dict[str, Any], old: dict[str, Any], keys: list[str]) -> None:
    """Put ``old``'s value at the dotted path ``keys`` back into ``new`` (absent there: absent)."""
    head, rest = keys[0], keys[1:]
    if not rest:
        if head in old:
            new[head] = _fresh({"v": old[head]})["v"]
        else:
            new.pop(head, None)
        return
    sub_new, sub_old = new.get(head), old.get(head)
    if isinstance(sub_new, dict) and isinstance(sub_old, dict):
        _keep_path(sub_new, sub_old, rest)
    elif isinstance(sub_new, dict) and head not in old:
        _keep_path(sub_new, {}, rest)


def _masked(document: dict[str, Any]) -> dict[str, Any]:
    """The document with each stored credential shown as ``"****"`` (a gateway's mask)."""
    storage = (document.get("recording_config") or {}).get("storage_config")
    if not isinstance(storage, dict):
        return document
    masked = {k: ("****" if k in SECRET_FIELDS and v is not None else v) for k, v in storage.items()}
    return {**document, "recording_config": {**document["recording_config"], "storage_config": masked}}
