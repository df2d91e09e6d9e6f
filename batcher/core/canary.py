"""The canary's judgement and the run's normalised values: what a meeting should hold after a write.

An API can answer 200 and still not do what was asked: a field the account does not support is
kept at its old value, a value is normalised, a write resets a neighbour. Two questions, both pure:

- ``expected_after``: what the meeting must hold after the row's write. Merge and patch jobs: the
  document read before the write with the row's patch applied (``deep_merge``: objects key by key,
  the rest replaced), read-only ``id``/``created_at``/``status`` included as they were (a PATCH
  row may set ``status``). Replace jobs read nothing first: the row over the spec's defaults.
- ``judge``: every path where the meeting read back differs from that, with what was sent and what
  the server holds; ``updated_at`` aside (it moves with every write). Write-only credentials are
  never compared (no answer shows them; a mask is not a value). Replace jobs judge only what the
  row and the schema know; any other field the server shows is listed, unjudged.
- ``normalised``: the paths the row set where the server's answer to the write holds another value
  than the one sent (a trimmed title): the row still ``succeeded``; the run counts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .documents import deep_merge, diff, same, strip_secrets
from .schema import DEFAULT_DOCUMENT

IGNORED = frozenset({"updated_at"})  # moves with every write: never a difference
READ_ONLY_SHOWN = frozenset({"id", "created_at", "updated_at", "status"})  # what a replace's row cannot say


@dataclass(frozen=True)
class Difference:
    """One path where the meeting does not hold what the write asked for."""

    path: str
    sent: Any  # what the meeting should hold there (what the write sent, or kept from before)
    held: Any  # what the server holds there now

    def text(self) -> str:
        """``path: sent X, the server holds Y`` (values as JSON)."""
        return f"{self.path}: sent {_json(self.sent)}, the server holds {_json(self.held)}"


@dataclass(frozen=True)
class Verdict:
    """The canary's judgement of one meeting read back after its write."""

    differences: tuple[Difference, ...]
    unjudged: tuple[str, ...] = ()  # replace jobs: fields the server shows that neither row nor schema know

    @property
    def is_clean(self) -> bool:
        """True when the meeting holds exactly what was expected."""
        return not self.differences


def expected_after(mode: str, before: dict[str, Any] | None, patch: dict[str, Any]) -> dict[str, Any]:
    """What the meeting must hold after the row's write (see the module doc)."""
    if mode == "replace" or before is None:
        return deep_merge(DEFAULT_DOCUMENT, patch)
    return deep_merge(before, patch)


def judge(mode: str, expected: dict[str, Any], now: dict[str, Any]) -> Verdict:
    """Compare the meeting read back (``now``) with ``expected`` on every field (module doc)."""
    want, have = strip_secrets(expected), strip_secrets(now)
    unjudged: list[str] = []
    if mode == "replace":
        unjudged = sorted(k for k in have if k not in want and k not in READ_ONLY_SHOWN)
        have = {k: v for k, v in have.items() if k in want}
    found = [
        Difference(change["path"], change["before"], change["after"])
        for change in diff(want, have)
        if change["path"].split(".", 1)[0] not in IGNORED
    ]
    return Verdict(tuple(sorted(found, key=lambda d: d.path)), tuple(unjudged))


def normalised(patch: dict[str, Any], answer: dict[str, Any] | None) -> list[Difference]:
    """Paths the row set where the write's answer holds another value than the one sent
    (credentials aside: no answer shows them). An answer that is not a meeting says nothing."""
    if answer is None:
        return []
    out: list[Difference] = []
    for path, sent in _leaves(strip_secrets(patch)):
        held = _at(answer, path)
        if held is _MISSING:
            if sent is None:
                continue  # an answer that leaves a null out shows it
            held = None
        if not same(sent, held):
            out.append(Difference(".".join(path), sent, held))
    return out


def _leaves(doc: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of every non-object value of ``doc`` (an empty object is a value)."""
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, (*prefix, key)))
        else:
            out.append(((*prefix, key), value))
    return out


_MISSING = object()


def _at(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
