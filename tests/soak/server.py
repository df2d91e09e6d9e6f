"""The fake API served from a thread of the harness, so the harness can read its whole state."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson

from batcher.fake.server import FakeApi, start


class ServerThread:
    """A ``FakeApi`` on its own event loop in a daemon thread; reads are copies made on that loop."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-api", daemon=True)
        self.thread.start()
        self.runner, self.port = self._call(start(api))
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def read(self, fn: Any) -> Any:
        """``fn(api)`` evaluated on the server's loop, returned as a deep copy."""

        async def go() -> bytes:
            return orjson.dumps(fn(self.api))

        return orjson.loads(self._call(go()))

    def meetings(self) -> dict[str, dict[str, Any]]:
        """Every stored meeting (secrets, unknown fields and status included), keyed ``account/id``."""
        return self.read(lambda api: {f"{a}/{m}": {**doc, **api.meta[(a, m)]} for (a, m), doc in api.meetings.items()})

    def log(self) -> list[dict[str, Any]]:
        """The request log so far (entries still waiting for an answer show ``status`` None)."""
        return self.read(lambda api: api.log)

    def edit(self, key: str, fields: dict[str, Any]) -> float:
        """A colleague's change to meeting ``key`` ("account/id"), made on the server's loop; returns
        the server's wall-clock time of it (the request log's clock)."""

        async def go() -> float:
            account, meeting = key.split("/", 1)
            self.api.edit(account, meeting, fields)
            return time.time()

        result: float = self._call(go())
        return result

    def write_counter(self, meetings: set[str]) -> WriteCounter:
        """A progress probe that reads only the log entries it has not seen yet."""
        return WriteCounter(self, meetings)

    def set_chaos(self, chaos: Any) -> None:
        """Replace (or with None remove) the random fault schedule."""

        async def go() -> None:
            self.api.chaos = chaos

        self._call(go())

    def chaos_drawn(self) -> dict[str, int]:
        """How many faults of each kind were drawn so far."""
        return self.read(lambda api: api.chaos.drawn if api.chaos else {})

    def stop(self) -> None:
        """Stop serving and end the thread."""
        self._call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class WriteCounter:
    """Counts applied writes to some meetings, reading the log incrementally.

    An entry is final once answered (``status`` set); the counter advances over
    the answered prefix only, so a hanging request is counted when it ends.
    """

    def __init__(self, server: ServerThread, meetings: set[str]) -> None:
        self.server, self.meetings = server, meetings
        self.since = 0
        self.times: list[float] = []  # arrival of each applied write

    def poll(self, after: float = 0.0) -> int:
        """Applied writes that arrived at or after ``after`` (wall clock), final entries only."""

        def take(api: FakeApi) -> list[Any]:
            return [
                (e["status"] is not None, e["applied"], f"{e['account']}/{e['meeting']}", e["t"])
                for e in api.log[self.since :]
            ]

        for is_final, applied, key, t in self.server.read(take):
            if not is_final:
                break
            self.since += 1
            if applied and key in self.meetings:
                self.times.append(t)
        return sum(1 for t in self.times if t >= after)
