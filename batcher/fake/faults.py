"""The fake API's answers: its two error shapes, dropped connections and the faults tests script.

``FakeApi.faults`` (or ``POST /__faults``) holds scripted faults; each entry
answers the next matching request (``method``, ``meeting``; ``times``) with a
status, a dropped connection (before or after applying the write), a hang, a
truncated or non-JSON body (``apply_then_page``: a 2xx HTML page after the write was applied),
extra headers or a redirect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableSequence
from typing import Any

import orjson
from aiohttp import web

# The server's own answer to a request: a fault that lets the write happen calls it.
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON = "application/json"
DROPPED = web.RequestKey("dropped", bool)  # the request log reads it back once the answer is made


def json_response(status: int, doc: Any, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer."""
    return web.Response(status=status, body=orjson.dumps(doc), content_type=JSON, headers=headers)


def service_error(status: int, message: str) -> web.Response:
    """The meetings service's error shape."""
    return json_response(status, {"success": False, "error": {"code": status, "message": message}})


def gateway_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Cloudflare's gateway error shape (auth, rate limits)."""
    return json_response(
        status,
        {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None},
        headers,
    )


def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (the client sees a dropped connection)."""
    request[DROPPED] = True
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=599)  # never reaches the client


def next_fault(faults: MutableSequence[dict[str, Any]], request: web.Request) -> dict[str, Any] | None:
    """The first scripted fault matching the request (used up after its ``times``), or None."""
    for fault in faults:
        if fault.get("method") in (None, request.method) and fault.get("meeting") in (
            None,
            request.match_info.get("meeting"),
        ):
            fault["times"] = fault.get("times", 1) - 1
            if fault["times"] <= 0:
                faults.remove(fault)
            return fault
    return None


async def apply_fault(route: Route, request: web.Request, fault: dict[str, Any]) -> web.StreamResponse:
    """Answer ``request`` as the scripted ``fault`` says (a status, a drop, a hang, a bad body...).

    ``route`` is the server's normal handling, for the faults that apply the request first.
    """
    kind = fault.get("kind", "status")
    if kind == "drop":
        return drop(request)
    if kind == "apply_then_drop":
        await route(request)
        return drop(request)
    if kind == "apply_then_page":  # a proxy: the origin applied the write, the client gets its HTML page
        await route(request)
        return web.Response(
            status=fault.get("status", 200), text=fault.get("body", "<html>OK</html>"), content_type="text/html"
        )
    if kind == "hang":
        await asyncio.sleep(fault.get("seconds", 3600))
        return service_error(504, "hung")
    if kind == "truncated":
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Content-Length": "500"})
        await resp.prepare(request)
        await resp.write(b'{"success": true, "data": {')
        transport = request.transport
        assert transport is not None  # None only once the connection is gone
        transport.close()
        return resp
    if kind == "headers":  # answer normally, with extra headers (X-RateLimit-*, Ratelimit, ...)
        response = await route(request)
        response.headers.update(fault["headers"])
        return response
    if kind == "redirect":
        return web.Response(status=fault.get("status", 302), headers={"Location": fault["location"]})
    headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else None
    if "body" in fault:
        return web.Response(
            status=fault.get("status", 500),
            text=fault["body"],
            headers=headers,
            content_type=fault.get("content_type", "text/html"),
        )
    status = fault.get("status", 500)
    if status == 429:
        return gateway_error(429, 971, "Please wait and consider throttling your request speed", headers)
    if status == 401:
        return gateway_error(401, 10000, "Authentication error")
    return json_response(
        status,
        {
            "success": fault.get("success", status < 400),
            "error": {"code": status, "message": fault.get("message", "scripted fault")},
        },
        headers,
    )
