"""What we know about a meeting: which read showed it, when, and whether it is the meeting asked for.

A write is built from a read, and the PUT replaces everything: so a read must have an *identity*
(the ``id`` its answer carries is the meeting asked for), an *age* (when it was made, on the job's
clock) and a *version* (the server's ``updated_at``). ``Reading`` holds the three with the document.

Rules that live here, because every command (run, plan, rollback, verify) needs the same ones:

- ``read(...)`` is the one door from an answer to a ``Reading``. An answer about another meeting
  (a caching proxy, a router bug) is refused as ``Foreign``: nothing is merged from it. The
  write-only credentials are dropped at this door whatever the answer shows (the real value, or a
  mask such as ``"****"``): only a row or ``--set`` ever supplies them, so none reaches a write or
  the state from a server.
- ``after_wait(...)`` decides again after any wait (a retry's backoff, a Retry-After pause, an
  unknown outcome, a resume): the fresh read shows the job's own write (``Confirmed``), or the
  document the row was merged from (``SendAgain``), or someone else's change: merged onto
  (``Remerge``), or refused (``Conflict``) where that change touches a path the row sets.
- ``grown_fields(...)``: a field that appears now, was in neither of two documents, and holds its
  default (for a field the schema knows, the spec's default; otherwise false, null, 0, "" or an
  empty array, or an object all of whose fields are so) is a field the API added, not an edit.

Pure: plain values in and out; time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .documents import diff, project, same, shows, strip_secrets
from .schema import DEFAULT_DOCUMENT

__all__ = [
    "Confirmed",
    "Conflict",
    "Foreign",
    "Reading",
    "Remerge",
    "SendAgain",
    "after_wait",
    "grown_fields",
    "read",
    "touches",
    "without_grown",
]


@dataclass(frozen=True, slots=True)
class Reading:
    """One meeting as one read showed it."""

    meeting_id: str  # the meeting asked for (the answer's own id agreed with it)
    document: dict[str, Any]  # as the server showed it, write-only credentials removed
    updated_at: str | None  # the server's change stamp (None: the answer carried none)
    read_at: float  # when the read was made, on the caller's clock (seconds)
    source: str = "get"  # "get" | "list" | "write" (the answer to the job's own write)

    def age_s(self, now: float) -> float:
        """Seconds since the read, on the same clock as ``read_at``."""
        return max(0.0, now - self.read_at)


@dataclass(frozen=True, slots=True)
class Foreign:
    """An answer that is not about the meeting asked for: never used."""

    message: str


def read(meeting_id: str, answer: Any, read_at: float, source: str = "get") -> Reading | Foreign:
    """The ``Reading`` an answer's ``data`` gives for ``meeting_id``, or ``Foreign`` when it is not that meeting.

    Ids compare ignoring case (UUIDs are case-insensitive; servers answer in lower case).
    """
    if not isinstance(answer, dict):
        return Foreign(f"the server answered for meeting {meeting_id} with no meeting document")
    shown = answer.get("id")
    if not isinstance(shown, str):
        return Foreign(
            f"the answer for meeting {meeting_id} carries no meeting id, so it cannot be told apart from another meeting's"
        )
    if shown.lower() != meeting_id.lower():
        return Foreign(
            f"the server answered for meeting {meeting_id} with meeting {shown}'s document (a caching proxy or "
            "router fault?): nothing was written from it"
        )
    stamp = answer.get("updated_at")
    return Reading(meeting_id, strip_secrets(answer), stamp if isinstance(stamp, str) else None, read_at, source)


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The fresh read shows the job's own write: it landed; nothing more is sent."""


@dataclass(frozen=True, slots=True)
class SendAgain:
    """The fresh read shows the document the write was built from: the same body is sent again."""


@dataclass(frozen=True, slots=True)
class Remerge:
    """Someone else changed other fields: the row is merged onto ``base`` (what the server holds now)."""

    base: dict[str, Any]
    changed: tuple[str, ...]  # the paths someone else changed (for the log)


@dataclass(frozen=True, slots=True)
class Conflict:
    """Someone else changed a path the row sets: the row fails ``conflict``, nothing is sent."""

    paths: tuple[str, ...]
    message: str


AfterWait = Confirmed | SendAgain | Remerge | Conflict


def after_wait(
    patch: dict[str, Any],
    built_from: dict[str, Any],
    confirm: dict[str, Any] | None,
    now: dict[str, Any],
) -> AfterWait:
    """Decide again with a read made after the wait.

    ``patch``: the row's patch; ``built_from``: the document the pending write was merged from;
    ``confirm``: what the write makes a GET show (None when it sets a write-only credential, which
    no GET shows: such a write is never confirmed by a read, only sent again); ``now``: the fresh
    read's document.

    A change between ``built_from`` and ``now`` at a path the row sets, to the value the row sets,
    is the job's own write (or the same edit made by someone else): it is no conflict.
    """
    base, fresh = without_grown(project(built_from), project(now), [])
    changes = [c["path"] for c in diff(base, fresh)]
    others = tuple(p for p in changes if not _sets_same(patch, fresh, p))
    if not others:
        if confirm is not None and shows(now, confirm):
            return Confirmed()
        if not changes:
            return SendAgain()
        return Remerge(now, ())  # only the job's values moved (a part of them): merge onto what is there
    if hit := tuple(p for p in others if touches(p, patch)):
        return Conflict(
            hit,
            f"someone else changed {', '.join(hit)} while the job waited, and the row sets "
            f"{'it' if len(hit) == 1 else 'them'}: not overwritten (check the meeting, then --retry-failed)",
        )
    return Remerge(now, others)


def _sets_same(patch: dict[str, Any], now: dict[str, Any], path: str) -> bool:
    """Whether the row sets ``path`` (or an object above it) to exactly what ``now`` holds there."""
    want: Any = patch
    have: Any = now
    for key in path.split("."):
        if not isinstance(want, dict) or key not in want:
            return False
        want, have = want[key], (have.get(key) if isinstance(have, dict) else None)
        if not isinstance(want, dict):
            return same(want, have)
    return shows(have, want) if isinstance(have, dict) else False


def touches(path: str, patch: dict[str, Any]) -> bool:
    """Whether the dotted ``path`` is a path the patch sets, inside one, or holds one."""
    node: Any = patch
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
        if not isinstance(node, dict):
            return True  # the patch sets a value at or above ``path``
    return True  # ``path`` is an object the patch sets something inside


def grown_fields(now: dict[str, Any], had: Iterable[dict[str, Any]], prefix: str = "") -> list[str]:
    """Paths of ``now`` that none of the ``had`` documents has, holding their default (see the module doc)."""
    had = [h for h in had if isinstance(h, dict)]
    out = []
    for key, value in now.items():
        path = prefix + key
        subs = [h[key] for h in had if key in h]
        if not subs:
            if _is_default(path, value):
                out.append(path)
        elif isinstance(value, dict):
            out.extend(grown_fields(value, [s for s in subs if isinstance(s, dict)], path + "."))
    return out


def without_grown(
    before: dict[str, Any], now: dict[str, Any], others: Iterable[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(before, now)`` with the fields the API grew since (``grown_fields``) taken out of ``now``."""
    grown = grown_fields(now, [before, *others])
    if not grown:
        return before, now
    trimmed = _drop(now, [p.split(".") for p in grown])
    return before, trimmed


def _drop(doc: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
    here = {p[0] for p in paths if len(p) == 1}
    deeper: dict[str, list[list[str]]] = {}
    for p in paths:
        if len(p) > 1:
            deeper.setdefault(p[0], []).append(p[1:])
    out = {}
    for key, value in doc.items():
        if key in here:
            continue
        out[key] = _drop(value, deeper[key]) if key in deeper and isinstance(value, dict) else value
    return out


_NO_DEFAULT = object()


def _is_default(path: str, value: Any) -> bool:
    known: Any = DEFAULT_DOCUMENT
    for key in path.split("."):
        known = known.get(key, _NO_DEFAULT) if isinstance(known, dict) else _NO_DEFAULT
    if known is not _NO_DEFAULT:
        return same(value, known)
    if isinstance(value, dict):  # a grown object: default when everything inside it is
        return all(_is_default(f"{path}.{key}", sub) for key, sub in value.items())
    return value is None or value is False or (value == 0 and not isinstance(value, bool)) or value in ("", [])
