"""The decision core, as a table: (mode, current, patch, options) -> Unchanged | Send | Refuse."""

from __future__ import annotations

import pytest

from batcher.core.decide import Options, Refuse, Send, Unchanged, decide, restore
from batcher.core.documents import same, shows
from batcher.core.schema import DEFAULT_DOCUMENT

GET = {"id": "m", "created_at": "t", "updated_at": "t", "status": "ACTIVE", "title": "a", "beta_flag": True}
STORED = {**GET, "recording_config": {"storage_config": {"type": "aws", "bucket": "b"}}}
KEYS = {"recording_config": {"storage_config": {"access_key": "AK", "secret": "S"}}}
NO = Options()

CASES = [
    # id, mode, current, patch, options, expected
    ("merge: a change is a PUT of every field GET showed but the read-only ones",
     "merge", GET, {"title": "b"}, NO, Send("PUT", {"title": "b", "beta_flag": True}, {"title": "b", "beta_flag": True})),
    ("merge: nothing new is unchanged",
     "merge", GET, {"title": "a"}, NO, Unchanged()),
    ("merge: 60 and 60.0 are the same number",
     "merge", {**GET, "session_keep_alive_time_in_secs": 60}, {"session_keep_alive_time_in_secs": 60.0}, NO, Unchanged()),
    ("merge: true is not 1",
     "merge", {**GET, "x": 1}, {"x": True}, NO, Send("PUT", {"title": "a", "beta_flag": True, "x": True},
                                                       {"title": "a", "beta_flag": True, "x": True})),
    ("merge: a PUT that would erase stored secrets is refused",
     "merge", STORED, {"title": "b"}, NO, Refuse("credential_guard", "")),
    ("merge: unless --allow-credential-reset",
     "merge", STORED, {"title": "b"}, Options(allow_credential_reset=True),
     Send("PUT", {"title": "b", "beta_flag": True, "recording_config": STORED["recording_config"]},
          {"title": "b", "beta_flag": True, "recording_config": STORED["recording_config"]})),
    ("merge: a write that sets a secret cannot be confirmed by GET",
     "merge", STORED, KEYS, NO,
     Send("PUT", {"title": "a", "beta_flag": True,
                  "recording_config": {"storage_config": {"type": "aws", "bucket": "b", "access_key": "AK", "secret": "S"}}},
          None)),
    ("merge: key rotation needs no type when the meeting has one",
     "merge", STORED, KEYS, NO, Send),
    ("merge: still missing on the merged document is invalid_merged",
     "merge", GET, KEYS, NO, Refuse("invalid_merged", "")),
    ("replace: always a PUT of the row, confirmed against the defaults",
     "replace", None, {"title": "b"}, NO, Send("PUT", {"title": "b"}, {**DEFAULT_DOCUMENT, "title": "b"})),
    ("replace: with secrets, no confirmation",
     "replace", None, {"recording_config": {"storage_config": {"type": "aws", "access_key": "A", "secret": "S"}}}, NO,
     Send("PUT", {"recording_config": {"storage_config": {"type": "aws", "access_key": "A", "secret": "S"}}}, None)),
    ("replace: a storage without its secrets would erase the stored ones: guard",
     "replace", None, {"recording_config": {"storage_config": {"type": "aws", "bucket": "b"}}}, NO,
     Refuse("credential_guard", "")),
    ("replace: the guard yields to --allow-credential-reset",
     "replace", None, {"recording_config": {"storage_config": {"type": "aws", "bucket": "b"}}},
     Options(allow_credential_reset=True), Send),
    ("merge: a carried integer beyond 64 bits (read as a float) cannot travel back exactly",
     "merge", {**GET, "ticket_no": 1.8446744073709552e19}, {"title": "b"}, NO, Refuse("inexact_number", "")),
    ("patch: the patch alone, confirmed by its own values",
     "patch", None, {"title": "b"}, NO, Send("PATCH", {"title": "b"}, {"title": "b"})),
    ("patch: with secrets, no confirmation",
     "patch", None, KEYS, NO, Send("PATCH", KEYS, None)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "current", "patch", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(mode, current, patch, options, expected):
    got = decide(mode, current, patch, options)
    if expected is Send:
        assert isinstance(got, Send)
    elif isinstance(expected, Refuse):
        assert isinstance(got, Refuse) and got.error == expected.error and got.message
    else:
        assert got == expected


def test_the_refusal_of_a_still_missing_type_names_the_field():
    got = decide("merge", GET, KEYS, NO)
    assert isinstance(got, Refuse) and "recording_config.storage_config.type" in got.message


def test_a_merge_without_the_current_document_is_a_programming_error():
    with pytest.raises(ValueError):
        decide("merge", None, {"title": "b"}, NO)


BEFORE = {"title": "before", "beta_flag": True}
AFTER = {"title": "after", "beta_flag": True}
RESTORE = [
    ("already as before", {**GET, **BEFORE}, BEFORE, NO, Unchanged()),
    ("still what the job made it: PUT before back", {**GET, **AFTER}, BEFORE, NO, Send("PUT", BEFORE, BEFORE)),
    ("changed again since: conflict", {**GET, "title": "someone else"}, BEFORE, NO, Refuse("conflict", "")),
    ("changed again, --force: PUT", {**GET, "title": "someone else"}, BEFORE, Options(force=True), Send),
    ("before had storage: guard", {**GET, **AFTER}, {**BEFORE, "recording_config": STORED["recording_config"]}, NO,
     Refuse("credential_guard", "")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "before", "options", "expected"), [c[1:] for c in RESTORE], ids=[c[0] for c in RESTORE]
)
def test_restore(current, before, options, expected):
    got = restore("landed", before, AFTER, current, options)
    if expected is Send:
        assert isinstance(got, Send)
    elif isinstance(expected, Refuse):
        assert isinstance(got, Refuse) and got.error == expected.error
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(60, 60.0, True), (True, 1, False), (0, False, False), ({"a": [1, 2.0]}, {"a": [1.0, 2]}, True),
     ({"a": 1}, {"a": 1, "b": None}, False), ("1", 1, False), (None, None, True)],
)  # fmt: skip
def test_same_compares_as_json_does(a, b, expected):
    assert same(a, b) is expected


def test_shows_checks_every_value_the_write_sets_and_ignores_the_rest():
    now = {"title": "b", "ai_config": {"transcription": {"language": "fr", "keywords": []}}, "extra": 1}
    assert shows(now, {"title": "b", "ai_config": {"transcription": {"language": "fr"}}})
    assert not shows(now, {"ai_config": {"transcription": {"language": "de"}}})
    assert not shows(now, {"missing": 1}), "a value GET does not show is not shown"
    assert shows(now, {"missing": None}), "a field GET leaves out reads as null"
    assert not shows(now, {"title": None}) and not shows(now, {"extra": True})


def test_carried_unknown_names_fields_from_get_that_the_row_did_not_set():
    from batcher.core.documents import carried_unknown

    body = {"title": "b", "beta_flag": True, "row_extra": 1, "ai_config": {"future": {"x": 1}, "transcription": {}}}
    assert sorted(carried_unknown(body, {"title": "b", "row_extra": 1})) == ["ai_config.future", "beta_flag"]


def test_restore_puts_the_before_state_back_over_the_last_write_that_landed():
    """Guards restore: a meeting showing the job's last landed write (not its failed later one) is restored."""
    before, landed, failed = {"title": "orig"}, {"title": "new"}, {"title": "newer"}
    got = restore("earlier", before, failed, {"title": "new"}, Options(), landed)
    assert isinstance(got, Send) and got.body == before


def test_restore_still_refuses_a_meeting_showing_neither_write_of_the_job():
    """Guards restore: a meeting showing neither of the job's writes is a conflict, even with --force."""
    before, landed, failed = {"title": "orig"}, {"title": "new"}, {"title": "newer"}
    got = restore("earlier", before, failed, {"title": "a colleague's"}, Options(force=True), landed)
    assert isinstance(got, Refuse) and got.error == "conflict"
