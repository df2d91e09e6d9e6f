"""Early stop on an operator mistake: the first rows sent all fail in a way no row can cause.

When the first ``EARLY_STOP_ROWS`` (20) rows sent by a run (or every row, if
the run has fewer, but at least ``EARLY_STOP_MIN_ROWS`` (3): one or two
failures say nothing about the set-up) all fail ``not_found``, or all fail
with network errors or timeouts after their retries, no row can be the cause:
the job halts (exit 3) naming the likely mistake (base URL without
``/client/v4``, account, app id, host). A failure of any other kind, or one
success, among them means no early stop.
"""

from __future__ import annotations

from ..errors import HaltError
from .config import JobConfig

EARLY_STOP_ROWS = 20
EARLY_STOP_MIN_ROWS = 3
_OPERATOR_KINDS = {"not_found": "not_found", "network": "network", "timeout": "network"}


class EarlyStop:
    """Watches the first rows a run sends; says when to halt."""

    def __init__(self, config: JobConfig) -> None:
        self.config = config
        self._early: list[str | None] = []  # operator-mistake kind of the first rows sent (None: anything else)

    def watch(self, outcome: str, error: str | None, total: int | None) -> HaltError | None:
        """Note one finished row (``total``: rows this run has to send, if known); the halt to raise, if any."""
        if len(self._early) >= EARLY_STOP_ROWS:
            return None
        self._early.append(_OPERATOR_KINDS.get(error or "") if outcome == "failed" else None)
        threshold = min(EARLY_STOP_ROWS, total) if total else EARLY_STOP_ROWS
        if (
            threshold < EARLY_STOP_MIN_ROWS
            or len(self._early) != threshold
            or self._early[0] is None
            or len(set(self._early)) != 1
        ):
            return None
        cfg, n = self.config, len(self._early)
        if self._early[0] == "not_found":
            why = (
                f"the first {n} rows all failed not_found: no meeting is where the job looks. Check --base-url "
                f"(now {cfg.base_url}; Cloudflare's ends in /client/v4), --account-id and --app-id"
            )
        else:
            why = (
                f"the first {n} rows all failed with network errors after their retries: "
                f"check --base-url (now {cfg.base_url}) and the network"
            )
        return HaltError(
            f"stopped early: {why}. Fix it, then re-run with --retry-failed "
            "(and --force if you changed --base-url, --account-id or --app-id)"
        )
