"""The attempts of one call as a table: what the flow commands, given what each attempt got (no server).

Each row drives ``WriteAttempts.commands()`` with scripted attempt outcomes and GET answers and
compares every command it yields. The backoff's jitter is pinned to its upper bound, so the first
retry waits 0.5 s, the second 1 s.
"""

from __future__ import annotations

import random

import pytest

from batcher.core.attempts import Command, Done, Outcome, PauseAll, Send, Verify, Wait, WriteAttempts

OK = Outcome(200)
TIMEOUT = Outcome(None, "timeout")
DROP = Outcome(None, "network")
UNAVAILABLE = Outcome(503, "http_error")


class UpperJitter(random.Random):
    """Backoff at its bound: readable waits."""

    def uniform(self, a: float, b: float) -> float:
        return b


def drive(
    outcomes: list[Outcome], seen: list[bool | None], *, is_write: bool, can_verify: bool, max_attempts: int
) -> list[Command]:
    """Every command of one call, feeding ``outcomes`` to the sends and ``seen`` to the GETs in turn."""
    flow = WriteAttempts(max_attempts, UpperJitter()).commands(is_write=is_write, can_verify=can_verify)
    outcomes_left, seen_left = list(outcomes), list(seen)
    commands = [next(flow)]
    while not isinstance(commands[-1], Done):
        match commands[-1]:
            case Send():
                feed: Outcome | bool | None = outcomes_left.pop(0)
            case Verify():
                feed = seen_left.pop(0)
            case _:
                feed = None
        commands.append(flow.send(feed))
    assert not outcomes_left and not seen_left, "every scripted answer was asked for"
    return commands


# Rows: (what it shows, the call, each attempt's outcome, each GET's answer, every command[, max attempts: 5]).
READ = {"is_write": False, "can_verify": False}
WRITE = {"is_write": True, "can_verify": True}
SECRET_WRITE = {"is_write": True, "can_verify": False}  # GET cannot show a secret: never verified

ROWS = [
    ("a 200 the first time is done", READ, [OK], [], [Send(1), Done()]),
    (
        "a 503 then a 200 waits the backoff and sends again",
        READ,
        [UNAVAILABLE, OK],
        [],
        [Send(1), Wait(0.5), Send(2), Done()],
    ),
    (
        "a 429 with Retry-After 7 pauses every worker 7 s and the pause does the waiting",
        READ,
        [Outcome(429, "rate_limited", 7.0), OK],
        [],
        [Send(1), PauseAll(7.0), Wait(7.0, is_paused=True), Send(2), Done()],
    ),
    (
        "a 503 with Retry-After pauses every worker",
        READ,
        [Outcome(503, "http_error", 2.0), OK],
        [],
        [Send(1), PauseAll(2.0), Wait(2.0, is_paused=True), Send(2), Done()],
    ),
    (
        "a 500 with Retry-After waits alone",
        READ,
        [Outcome(500, "http_error", 3.0), OK],
        [],
        [Send(1), Wait(3.0), Send(2), Done()],
    ),
    (
        "a timed-out write that a GET shows landed is a success, not sent again",
        WRITE,
        [TIMEOUT],
        [True],
        [Send(1), Wait(0.5), Verify(), Done(is_confirmed=True)],
    ),
    (
        "a timed-out write that sets a secret is sent again, not verified",
        SECRET_WRITE,
        [TIMEOUT, OK],
        [],
        [Send(1), Wait(0.5), Send(2), Done()],
    ),
    (
        "a write that a GET shows did not land is sent again cleanly",
        WRITE,
        [DROP, Outcome(409, "http_error")],
        [False],
        [Send(1), Wait(0.5), Verify(), Send(2), Done()],
    ),
    (
        "a write that failed unknown and then met a 409 may have been applied",
        SECRET_WRITE,
        [UNAVAILABLE, Outcome(409, "http_error")],
        [],
        [Send(1), Wait(0.5), Send(2), Done(is_unknown=True)],
    ),
    (
        "after a timeout a GET saying not landed proves nothing: the write may still land",
        WRITE,
        [TIMEOUT, Outcome(409, "http_error")],
        [False],
        [Send(1), Wait(0.5), Verify(), Send(2), Done(is_unknown=True)],
    ),
    (
        "a GET that fails leaves the write unknown",
        WRITE,
        [UNAVAILABLE, Outcome(422, "http_error")],
        [None],
        [Send(1), Wait(0.5), Verify(), Send(2), Done(is_unknown=True)],
    ),
    (
        "a read whose attempts are spent fails with its last answer",
        READ,
        [UNAVAILABLE] * 3,
        [],
        [Send(1), Wait(0.5), Send(2), Wait(1.0), Send(3), Done()],
        3,
    ),
    (
        "a write whose attempts are spent asks a GET once more before giving up",
        WRITE,
        [UNAVAILABLE] * 2,
        [None, True],
        [Send(1), Wait(0.5), Verify(), Send(2), Verify(), Done(is_confirmed=True)],
        2,
    ),
    (
        "an unverifiable write whose attempts are spent may have been applied",
        SECRET_WRITE,
        [TIMEOUT] * 2,
        [],
        [Send(1), Wait(0.5), Send(2), Done(is_unknown=True)],
        2,
    ),
    (
        "a 429 with no attempts left still pauses every worker",
        READ,
        [Outcome(429, "rate_limited", 7.0)],
        [],
        [Send(1), PauseAll(7.0), Done()],
        1,
    ),
    (
        "a 429 on a write is not unknown: the server refused it before the origin saw it",
        WRITE,
        [Outcome(429, "rate_limited", 7.0), OK],
        [],
        [Send(1), PauseAll(7.0), Wait(7.0, is_paused=True), Send(2), Done()],
    ),
    ("a 401 stops at once", WRITE, [Outcome(401, "auth")], [], [Send(1), Done()]),
    (
        "a 401 after an unknown attempt still says the write may have been applied",
        SECRET_WRITE,
        [DROP, Outcome(403, "auth")],
        [],
        [Send(1), Wait(0.5), Send(2), Done(is_unknown=True)],
    ),
    ("a non-retryable 4xx fails at once", WRITE, [Outcome(422, "http_error")], [], [Send(1), Done()]),
    ("a redirect fails at once", READ, [Outcome(301, "redirect")], [], [Send(1), Done()]),
    ("a 2xx whose body says it failed is not retried", WRITE, [Outcome(200, "api_error")], [], [Send(1), Done()]),
    (
        "a read is never unknown, whatever it met",
        READ,
        [TIMEOUT, DROP],
        [],
        [Send(1), Wait(0.5), Send(2), Done()],
        2,
    ),
]


@pytest.mark.parametrize(
    ("kind", "outcomes", "seen", "expected", "max_attempts"),
    [(*row[1:], 5) if len(row) == 5 else row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_the_attempts_flow_commands_what_the_client_must_do(kind, outcomes, seen, expected, max_attempts):
    assert drive(outcomes, seen, **kind, max_attempts=max_attempts) == expected
