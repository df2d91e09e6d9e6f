"""One logical call's attempts as a sans-I/O flow: commands out, answers in.

As httpx's ``Auth.auth_flow`` yields requests and is sent the responses,
``WriteAttempts.commands()`` yields what to do next and is sent what came of it:

    Send(attempt)       send the request once more        -> send it an ``Outcome``
    PauseAll(seconds)   every worker pauses (a lockout)   -> send None
    Wait(seconds, ...)  a retry follows after ``seconds`` -> send None
    Verify()            does a GET show the write landed? -> send True / False / None
    Refresh()           read again and decide again       -> send a ``Fresh``
    Done(...)           the call is over: stop driving it

``http.client.Client.call`` only carries the commands out; after each attempt
``retry.decide`` says what next. The rule for writes whose outcome is unknown
lives here, and nowhere else:

- After a failure that leaves it unknown whether a write landed (a drop, a
  timeout, a 408 or 5xx), and only when the caller can verify, a GET is asked
  before the write is sent again (or, with no attempts left, before giving
  up): "landed" ends the call as a success, not repeated; "not landed" makes
  the next send a clean one; a failed GET sends again all the same (the body
  is idempotent) but the outcome stays unknown.
- Once any attempt ended unknown, the call's final failure is unknown ("may
  have been applied") unless a GET after the last such attempt showed the
  write had not landed - whatever the last attempt got (a 409 or 400 for the
  re-send, even a 401/403, which still halts the job). Without verifying
  (a body with a secret GET cannot show) it always is.
- A write built from a read (merge mode, rollback's restores) is never re-sent from a read made
  before a wait: when the caller can refresh, every wait (a backoff, a pause of every worker) and
  every unknown outcome is followed by ``Refresh``, a new read and a new decision, instead of
  ``Verify``. Its answer (``Fresh``) says the write landed (the call succeeded), that it did not
  (send what the caller now holds: the same body, or one merged onto someone else's change),
  that nothing can tell (a body with a secret: send again, the outcome stays unknown), or to stop
  (a conflict, a foreign or failed read: the caller records why; nothing more is sent).
- A *timeout* is stricter: the request may still be queued at the origin, so
  an answer to a later attempt (even a quick 503 from the edge) or a GET
  saying "not landed" proves nothing about it; only a 2xx or a GET showing
  the write settles the call once one attempt timed out.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Generator
from dataclasses import dataclass

from .retry import Action, decide


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as ``decide`` needs it."""

    status: int | None  # None: no HTTP answer (a drop, a timeout)
    error: str | None = None  # the client's error kind: timeout, network, api_error, ...; None on a 2xx
    retry_after_s: float | None = None  # a usable ``Retry-After``, or None


@dataclass(frozen=True, slots=True)
class Send:
    """Send the request (after the pacer); this is attempt number ``attempt``, from 1."""

    attempt: int


@dataclass(frozen=True, slots=True)
class PauseAll:
    """Every worker (and process of the token) waits ``seconds``: a 429, or a 503 with Retry-After."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Wait:
    """A retry: the next attempt goes ``seconds`` from now.

    ``is_paused``: the ``PauseAll`` just before does the waiting (the pacer
    holds the next ``Send``); otherwise this call sleeps alone.
    """

    seconds: float
    is_paused: bool = False


@dataclass(frozen=True, slots=True)
class Verify:
    """Ask a GET whether the write landed: answer True (it did), False (it did not), None (GET failed)."""


@dataclass(frozen=True, slots=True)
class Done:
    """The call is over. Its result is the last attempt's, except:

    ``is_confirmed``: a GET showed the write landed, so the call succeeded;
    ``is_unknown``: it failed, and the write may have been applied.
    """

    is_confirmed: bool = False
    is_unknown: bool = False


@dataclass(frozen=True, slots=True)
class Refresh:
    """Read the meeting again and decide again (answer a ``Fresh``): the next send, if any, is built
    from that read."""


class Fresh(enum.Enum):
    """What a read made after a wait decided."""

    LANDED = "landed"  # it shows the write: the call succeeded
    NOT_LANDED = "not_landed"  # it shows the write did not land: send (the caller's body, maybe new)
    RESEND = "resend"  # it cannot tell (the body sets a secret no read shows): send again, still unknown
    STOP = "stop"  # a conflict, or no usable read: send nothing more (the caller says why)


Command = Send | PauseAll | Wait | Verify | Refresh | Done
Feed = Outcome | bool | Fresh | None
_ANSWERED, _UNKNOWN, _CONFIRMED, _VERIFY = Done(), Done(is_unknown=True), Done(is_confirmed=True), Verify()
_REFRESH = Refresh()


class WriteAttempts:
    """The attempts policy of a client: ``commands()`` is one call's flow (a read is a call where
    nothing is ever unknown)."""

    __slots__ = ("_rng", "max_attempts")

    def __init__(self, max_attempts: int, rng: random.Random | None = None) -> None:
        self.max_attempts = max_attempts  # --max-attempts: sends, the first included
        self._rng = rng  # the backoff's jitter (injected for tests)

    def commands(
        self, *, is_write: bool, can_verify: bool = False, can_refresh: bool = False
    ) -> Generator[Command, Feed, None]:
        """One call's flow: yields commands, is sent each one's answer (see the module docstring).

        ``is_write``: PUT / PATCH (/ POST / DELETE), which may have landed unanswered;
        ``can_verify``: the caller can GET what the write sets; ``can_refresh``: the write was built
        from a read, and the caller reads and decides again after every wait (``Refresh``).
        """
        is_unknown = False  # an unknown-outcome failure no GET has ruled out
        is_timeout_open = False  # an attempt timed out: "not landed" no longer rules anything out
        attempt = 0
        while True:
            attempt += 1
            outcome = yield Send(attempt)
            assert isinstance(outcome, Outcome), "Send is answered with an Outcome"
            decision = decide(
                outcome.status,
                outcome.error,
                outcome.retry_after_s,
                attempt,
                self.max_attempts,
                is_write,
                self._rng,
            )
            if decision.pauses_everyone:  # also when giving up: a lockout is a lockout
                yield PauseAll(decision.pause_s)
            if decision.action is Action.DONE:
                yield _ANSWERED
                return
            if decision.is_unknown:
                is_unknown = True
                is_timeout_open = is_timeout_open or outcome.error == "timeout"
            if decision.action in (Action.FAIL, Action.FATAL):  # no retry can fix it
                yield _UNKNOWN if is_unknown else _ANSWERED
                return
            if decision.action is Action.RETRY:
                yield Wait(decision.wait_s, decision.pauses_everyone)
            if can_refresh and (decision.action is Action.RETRY or decision.is_unknown):
                fresh = yield _REFRESH
                if fresh is Fresh.LANDED:
                    yield _CONFIRMED
                    return
                if fresh is Fresh.STOP or fresh is None:
                    yield _UNKNOWN if is_unknown else _ANSWERED
                    return
                if fresh is Fresh.NOT_LANDED and not is_timeout_open:
                    is_unknown = False  # a read showed it did not land: a clean re-send
            elif decision.is_unknown and can_verify:
                seen = yield _VERIFY
                if seen:
                    yield _CONFIRMED
                    return
                if seen is False and not is_timeout_open:
                    is_unknown = False  # a GET showed it did not land: a clean re-send
            if decision.action is Action.GIVE_UP:  # retryable, but the attempts are spent
                yield _UNKNOWN if is_unknown else _ANSWERED
                return
