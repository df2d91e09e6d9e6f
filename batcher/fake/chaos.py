"""Seeded random faults and unknown-field rules for the fake API (used by ``fake_api``).

``ChaosSpec`` says how often each kind of fault answers a request; ``Chaos``
draws them from its own seeded RNG, so an episode of the soak replays the same
schedule for the same seed and the same request order. Every fault is a dict
in the shape ``FakeApi.faults`` already takes (``kind``, ``status``,
``retry_after``, ``seconds``, ``body``), so scripted and random faults share
one code path in the server.

The unknown-field helpers let the fake behave like an API that grew: a seeded
meeting may carry fields the schema does not know; GET shows them and a PUT
may send back the ones the server knows, while any other unknown field is a
400 naming it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, fields
from typing import Any

from ..core.documents import is_under
from ..errors import UsageError


@dataclass(frozen=True)
class ChaosSpec:
    """Probabilities (0..1, per API request) of each fault kind, and their parameters.

    ``hang_s`` should exceed the client's ``--timeout``: a hang is a request
    the client must give up on. ``auth_window`` answers 401 to every request
    whose running number is in ``[start, start + count)`` ("401 for a while").
    """

    p_429: float = 0.0  # 429 with Retry-After
    p_429_bare: float = 0.0  # 429 without Retry-After
    p_5xx_retry_after: float = 0.0  # 503 with Retry-After
    p_5xx_html: float = 0.0  # 502 with an HTML body, as a proxy answers
    p_drop: float = 0.0  # connection dropped before the request is applied
    p_apply_then_drop: float = 0.0  # applied (writes), then the connection dropped
    p_hang: float = 0.0  # no answer until hang_s
    p_truncated: float = 0.0  # 200 with a cut JSON body (not applied)
    retry_after_s: int = 1
    hang_s: float = 3.0
    auth_window: tuple[int, int] | None = None

    def total(self) -> float:
        """The chance that a request outside the auth window meets some fault."""
        return (
            self.p_429
            + self.p_429_bare
            + self.p_5xx_retry_after
            + self.p_5xx_html
            + self.p_drop
            + self.p_apply_then_drop
            + self.p_hang
            + self.p_truncated
        )

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ChaosSpec:
        """From JSON (``auth_window`` as a two-item list)."""
        doc = dict(doc)
        if doc.get("auth_window") is not None:
            doc["auth_window"] = tuple(doc["auth_window"])
        return cls(**doc)


def parse_chaos(text: str) -> ChaosSpec:
    """``--chaos JSON`` as a ``ChaosSpec``; a usage error naming the valid keys otherwise."""
    names = sorted(f.name for f in fields(ChaosSpec))
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise TypeError
        return ChaosSpec.from_dict(doc)
    except (ValueError, TypeError):
        raise UsageError(f"--chaos wants a JSON object with keys among {', '.join(names)}") from None


@dataclass
class Chaos:
    """A ``ChaosSpec`` with its RNG and counters: ``draw()`` once per API request."""

    spec: ChaosSpec
    seed: int | None = None
    drawn: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def draw(self, number: int) -> dict[str, Any] | None:
        """The fault for the ``number``-th API request (1-based), or None."""
        spec = self.spec
        if spec.auth_window is not None:
            start, count = spec.auth_window
            if start <= number < start + count:
                return self._count({"kind": "status", "status": 401, "name": "auth"})
        roll = self.rng.random()
        for name, p, fault in (
            ("429", spec.p_429, {"status": 429, "retry_after": spec.retry_after_s}),
            ("429_bare", spec.p_429_bare, {"status": 429}),
            ("5xx_retry_after", spec.p_5xx_retry_after, {"status": 503, "retry_after": spec.retry_after_s}),
            (
                "5xx_html",
                spec.p_5xx_html,
                {"status": 502, "body": "<html><body><h1>502 Bad gateway</h1></body></html>"},
            ),
            ("drop", spec.p_drop, {"kind": "drop"}),
            ("apply_then_drop", spec.p_apply_then_drop, {"kind": "apply_then_drop"}),
            ("hang", spec.p_hang, {"kind": "hang", "seconds": spec.hang_s}),
            ("truncated", spec.p_truncated, {"kind": "truncated"}),
        ):
            if roll < p:
                return self._count({"kind": "status", **fault, "name": name})
            roll -= p
        return None

    def _count(self, fault: dict[str, Any]) -> dict[str, Any]:
        self.drawn[fault["name"]] = self.drawn.get(fault["name"], 0) + 1
        return fault


# -- fields the schema does not know ---------------------------------------------------


def is_known_extra(path: str, extra_fields: set[str]) -> bool:
    """Whether the server knows ``path`` (or an object above it) as an extra field."""
    return is_under(path, extra_fields)
