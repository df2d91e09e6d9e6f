"""A write built from a read: never re-sent from a read made before a wait, never built from a foreign one.

The PUT replaces the whole meeting, so what it carries is only as good as the read it was merged
from. Three rules hold here, for ``run`` (merge mode) and rollback's restores alike:

1. A read is used only when it is the meeting asked for (``core.readings.read``: the answer's ``id``
   is the row's meeting id); its write-only credentials are dropped at that door.
2. After every wait (a retry's backoff, a pause of every worker, an unknown outcome) the meeting is
   read again and the row decided again (``Fresh``, the client's ``refresh``): the read shows the
   job's own write (confirmed, nothing sent), or the document the write was built from (the same
   body again), or someone else's change, which the row is merged onto (a new snapshot is durable
   before the new body goes) or refused as ``conflict`` where it touches what the row sets.
3. What the job left on the server is the server's answer to its write (its ``data`` and
   ``updated_at``), not the body sent: a server may normalise what it stores.

``Pending`` is one such write in flight; the engine and rollback make one per write and hand the
client ``refresher(...)``; what they decide on a fresh read is theirs (``Redecide``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..core.attempts import Fresh
from ..core.decide import Options, Refuse, Send, Unchanged, decide
from ..core.documents import deep_merge, mask_secrets, project, secret_masks
from ..core.readings import Confirmed, Conflict, Foreign, Reading, SendAgain, after_wait, read
from ..core.rows import Row
from ..http.client import CallResult, Client

__all__ = ["Pending", "Redecide", "after_of", "merge_redecider", "reading_of", "refresher"]


@dataclass(slots=True)
class Pending:
    """One write built from a read, as it stands now (the client may rebuild it after a wait)."""

    meeting_id: str
    built_from: dict[str, Any]  # the document (as read) the body was decided from
    body: dict[str, Any]
    confirm: dict[str, Any] | None  # what a read must show for the write to have landed (None: it cannot)
    refused: Refuse | None = None  # why the write stopped after a fresh read (conflict, foreign, no read)
    failed_read: CallResult | None = None  # the fresh read that failed (a 401 there still halts the job)
    landed: Reading | None = None  # the fresh read that showed the write landed


# Decides again on a fresh read: Unchanged (it is as wanted: landed), Refuse, or a Send built from it.
# ``Pending`` says what the write was; the callee may save a snapshot before returning a new Send.
Redecide = Callable[[Reading, Pending], Awaitable[Unchanged | Refuse | Send | None]]


# Saves a snapshot (account, meeting, row, before, after), durable on return: ``SnapshotCommitter.save``.
SaveSnapshot = Callable[[str, str, int, dict[str, Any], dict[str, Any]], Awaitable[None]]


def merge_redecider(row: Row, mode: str, options: Options, save_snapshot: SaveSnapshot) -> Redecide:
    """``run``'s decision on a fresh read (``core.readings.after_wait``): the job's own write shows
    (Unchanged: it landed), the old document (None: the same body), someone else's change to what
    the row sets (``conflict``), or to something else: the row merged onto it, whose snapshot is
    durable before it is sent."""
    account = row.account_id or ""

    async def redecide(fresh: Reading, pending: Pending) -> Unchanged | Refuse | Send | None:
        verdict = after_wait(row.patch, pending.built_from, pending.confirm, fresh.document)
        if isinstance(verdict, Confirmed):
            return Unchanged()
        if isinstance(verdict, SendAgain):
            return None
        if isinstance(verdict, Conflict):
            return Refuse("conflict", verdict.message)
        decision = decide(mode, fresh.document, row.patch, options)  # merged onto theirs
        if isinstance(decision, Send):  # its way back, durable before it is sent
            await save_snapshot(
                account, row.meeting_id, row.number, project(fresh.document), mask_secrets(decision.body)
            )
        return decision

    return redecide


def reading_of(meeting_id: str, got: CallResult, now: float) -> Reading | CallResult:
    """The ``Reading`` a GET gave, or the failed ``CallResult`` to record (a foreign answer fails ``api_error``)."""
    if not got.is_ok:
        return got
    if got.data is None:
        got.error, got.message = "api_error", "GET returned no meeting object"
        return got
    reading = read(meeting_id, got.data, now)
    if isinstance(reading, Foreign):
        got.error, got.message = "api_error", reading.message
        return got
    return reading


def refresher(
    client: Client,
    url: str,
    pending: Pending,
    redecide: Redecide,
    clock: Callable[[], float],
) -> Callable[[], Awaitable[tuple[Fresh, dict[str, Any] | None]]]:
    """The client's ``refresh`` for ``pending``: GET, check identity, decide again (see the module doc)."""

    async def refresh() -> tuple[Fresh, dict[str, Any] | None]:
        got = await client.call("GET", url)
        fresh = reading_of(pending.meeting_id, got, clock())
        if isinstance(fresh, CallResult):
            pending.failed_read = fresh
            pending.refused = Refuse(
                fresh.error or "api_error",
                f"could not read the meeting again after the wait, so nothing was sent again from the read "
                f"made before it: {fresh.message}",
            )
            return Fresh.STOP, None
        decision = await redecide(fresh, pending)
        if decision is None:  # the fresh read shows the document the write was built from
            return (Fresh.RESEND if pending.confirm is None else Fresh.NOT_LANDED), None
        if isinstance(decision, Unchanged):
            pending.landed = fresh
            return Fresh.LANDED, None
        if isinstance(decision, Refuse):
            pending.refused = decision
            return Fresh.STOP, None
        pending.built_from, pending.body, pending.confirm = fresh.document, decision.body, decision.confirm
        return (Fresh.RESEND if decision.confirm is None else Fresh.NOT_LANDED), decision.body

    return refresh


def after_of(pending: Pending, result: CallResult, now: float) -> tuple[dict[str, Any], str | None]:
    """What the job left on the meeting, and its ``updated_at``: the server's answer to the write when
    it is the meeting's (else the fresh read that showed it landed, else the body sent), with the
    credentials the write set shown as ``"***"`` (no answer ever shows them)."""
    shown: Reading | None = pending.landed
    if result.data is not None:
        answer = read(pending.meeting_id, result.data, now)
        if isinstance(answer, Reading):
            shown = answer
    masks = secret_masks(pending.body)
    if shown is None:
        return deep_merge(project(pending.body), masks), None
    return deep_merge(project(shown.document), masks), shown.updated_at
