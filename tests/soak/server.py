"""The fake API served from a thread of the harness, so the harness can read its whole state."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson

from batcher.fake_api import FakeApi, start


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

    def applied_writes(self, meetings: set[str]) -> int:
        """How many writes to ``meetings`` (``account/id``) were applied so far (a cheap progress probe)."""
        return self.read(
            lambda api: sum(1 for e in api.log if e["applied"] and f"{e['account']}/{e['meeting']}" in meetings)
        )

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
