"""``core.readings``: a read's identity and age, and what a fresh read decides after a wait."""

from __future__ import annotations

from typing import Any

import pytest

from batcher.core.readings import (
    Confirmed,
    Conflict,
    Foreign,
    Reading,
    Remerge,
    SendAgain,
    after_wait,
    grown_fields,
    read,
    touches,
)

MID = "6f1c5c6e-2b4e-4d8e-9a57-0d4f2f0c9b11"


def doc(**fields: Any) -> dict[str, Any]:
    base = {"id": MID, "updated_at": "2026-12-01T00:00:00Z", "title": "t", "record_on_start": False}
    return {**base, **fields}


def test_an_answer_about_the_meeting_asked_for_is_a_reading_with_its_stamp_and_time() -> None:
    got = read(MID.upper(), doc(), 12.5)
    assert isinstance(got, Reading)
    assert (got.updated_at, got.read_at, got.source, got.age_s(20.0)) == ("2026-12-01T00:00:00Z", 12.5, "get", 7.5)


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (doc(id="00000000-0000-0000-0000-000000000001"), "00000000-0000-0000-0000-000000000001's document"),
        ({"title": "no id"}, "carries no meeting id"),
        (["not", "a", "meeting"], "no meeting document"),
    ],
    ids=["another-meeting", "no-id", "not-an-object"],
)
def test_an_answer_that_is_not_the_meeting_asked_for_is_foreign(answer: Any, says: str) -> None:
    got = read(MID, answer, 0.0)
    assert isinstance(got, Foreign)
    assert says in got.message


@pytest.mark.parametrize("shown", ["AKIAREAL", "****", ""], ids=["real", "mask", "empty"])
def test_credentials_an_answer_shows_never_reach_the_reading(shown: str) -> None:
    storage = {"type": "aws", "bucket": "b", "access_key": shown, "secret": shown, "password": shown}
    got = read(MID, doc(recording_config={"storage_config": storage}), 0.0)
    assert isinstance(got, Reading)
    assert got.document["recording_config"]["storage_config"] == {"type": "aws", "bucket": "b"}


PATCH = {"title": "new"}


@pytest.mark.parametrize(
    ("now", "confirm", "expected"),
    [
        (doc(title="new"), doc(title="new"), Confirmed()),
        (doc(), doc(title="new"), SendAgain()),
        (doc(record_on_start=True), doc(title="new"), Remerge(doc(record_on_start=True), ("record_on_start",))),
        (doc(title="colleague"), doc(title="new"), Conflict(("title",), "")),
        (
            doc(title="new", record_on_start=True),
            doc(title="new"),
            Remerge(doc(title="new", record_on_start=True), ("record_on_start",)),
        ),
        (doc(noise_cancellation=False), doc(title="new"), SendAgain()),
        (
            doc(noise_cancellation=True),
            doc(title="new"),
            Remerge(doc(noise_cancellation=True), ("noise_cancellation",)),
        ),
    ],
    ids=[
        "own-write-shown",
        "old-document-still-there",
        "colleague-changed-another-field",
        "colleague-changed-the-rows-field",
        "own-write-landed-then-colleague-edit",
        "api-grew-a-field-at-its-default",
        "api-grew-a-field-someone-set",
    ],
)
def test_a_fresh_read_after_a_wait_decides_again(now: dict[str, Any], confirm: dict[str, Any], expected: Any) -> None:
    got = after_wait(PATCH, doc(), {k: v for k, v in confirm.items() if k not in ("id", "updated_at")}, now)
    if isinstance(expected, Conflict):
        assert isinstance(got, Conflict)
        assert got.paths == expected.paths
        assert "someone else changed title" in got.message
    else:
        assert got == expected


def test_a_write_that_sets_a_credential_is_sent_again_not_confirmed_by_a_read() -> None:
    patch = {"recording_config": {"storage_config": {"type": "aws", "access_key": "K", "secret": "S"}}}
    before = doc(recording_config={"storage_config": {"type": "aws"}})
    assert after_wait(patch, before, None, before) == SendAgain()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("title", True),
        ("ai_config", True),
        ("ai_config.transcription.language", True),
        ("ai_config.summarization", False),
        ("persist_chat", False),
    ],
)
def test_a_path_touches_a_patch_at_inside_or_above_what_it_sets(path: str, expected: bool) -> None:
    patch = {"title": "x", "ai_config": {"transcription": {"language": "fr"}}}
    assert touches(path, patch) is expected


def test_a_grown_field_is_one_no_document_had_holding_its_default() -> None:
    now = {
        "title": "t",
        "noise_cancellation": False,
        "beta": True,
        "recording_config": {"new_knob": None, "max_seconds": 60},
    }
    had = [{"title": "t", "recording_config": {"max_seconds": 60}}]
    assert grown_fields(now, had) == ["noise_cancellation", "recording_config.new_knob"]
