"""Group commits of merge mode's snapshots: durable before their PUT, not one commit each.

The rule is "a snapshot is durable before its PUT", not "one commit per
snapshot". Workers whose GET and decision are ready in the same turn of the
event loop hand their snapshots to ``SnapshotCommitter.save``; the first one
schedules a commit for the loop's next turn (``call_soon``), by which time
every worker woken in this turn has added its own. That commit writes them
all in one transaction (with the buffered row outcomes, as ``Store.flush``
does) and only then wakes the workers: a PUT never starts before the commit
that holds its snapshot has returned.

Nothing waits for more snapshots to arrive than are ready now, so a lone
worker pays one loop turn of latency, never a timer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..state.store import Store

# account_id, meeting_id, row number, before, after (the save_snapshot arguments)
Snapshot = tuple[str, str, int, dict[str, Any], dict[str, Any]]


class SnapshotCommitter:
    """Commits the snapshots handed in during one turn of the loop together, then wakes their senders."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._batch: list[tuple[Snapshot, asyncio.Future[None]]] = []

    async def save(
        self, account_id: str, meeting_id: str, row: int, before: dict[str, Any], after: dict[str, Any]
    ) -> None:
        """Return once this snapshot is committed (with those of every worker ready in the same turn).

        Raises what the commit raised (e.g. a full disk): the caller must then not send its write.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._commit)
        self._batch.append(((account_id, meeting_id, row, before, after), done))
        await done

    def _commit(self) -> None:
        batch, self._batch = self._batch, []
        waiting = [(snapshot, done) for snapshot, done in batch if not done.cancelled()]
        if not waiting:
            return
        error: BaseException | None = None
        try:
            if self.store.is_closed:  # the job ended (cancelled) before this turn came: nothing to send
                raise RuntimeError("the state file was closed before the snapshot was saved")
            self.store.save_snapshots([snapshot for snapshot, _done in waiting])
        except Exception as exc:
            error = exc
        for _snapshot, done in waiting:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
