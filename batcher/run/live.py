"""What only the running job knows, published into the state for ``batcher status``.

Once a second (the engine's heartbeat): requests, retries, the pause the pacer holds, the
current rate over the last minute, the pid. ``status`` reads it back (``LIVE_KEY``).
"""

from __future__ import annotations

import os
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

from ..core.config import JobConfig
from ..http.client import Stats
from ..http.pacer import Pacer
from ..state.store import Store

LIVE_KEY = "live"
RECENT_S = 60.0  # the "current rate" is measured over the last minute


@dataclass
class _Live:
    started: float
    runs_before: int
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=512))


_LIVE: weakref.WeakKeyDictionary[Store, _Live] = weakref.WeakKeyDictionary()


def publish_live(store: Store, config: JobConfig, stats: Stats, pacer: Pacer) -> None:
    """Write what only the running job knows into the state (meta ``live``) for ``batcher status``."""
    now = time.time()
    live = _LIVE.get(store)
    if live is None:
        runs = (store.get_meta("run_stats") or {}).get("runs", 0)
        live = _LIVE[store] = _Live(now, runs)
    live.samples.append((now, stats.requests))
    while len(live.samples) > 2 and now - live.samples[0][0] > RECENT_S:
        live.samples.popleft()
    (t0, r0), (t1, r1) = live.samples[0], live.samples[-1]
    pause_s = pacer.held_s  # a pause inherited through the token's budget file too
    doc = {
        "pid": os.getpid(),
        "runs_before": live.runs_before,
        "started_at": live.started,
        "updated_at": now,
        "requests": stats.requests,
        "retries": stats.retries,
        "paused_until": now + pause_s if pause_s > 0 else None,
        "rate": str(config.rate) if config.rate else None,
        "rate_per_s": config.rate.max_requests / config.rate.window_s if config.rate else None,
        "current_rate_per_s": (r1 - r0) / (t1 - t0) if t1 > t0 else None,
    }
    store.set_meta(LIVE_KEY, doc)
