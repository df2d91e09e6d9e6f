"""The schema: every rule of the spec and api-facts, and messages that show the fix."""

from __future__ import annotations

import pytest

from batcher.core.config import JobConfig
from batcher.core.rows import Row, RowError, parse_row, validate_body
from batcher.core.schema import FIELDS, closest_path
from batcher.errors import UsageError

MID = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"

VALID = {
    "language fr": {"ai_config": {"transcription": {"language": "fr"}}},
    "keywords": {"ai_config": {"transcription": {"keywords": ["a", "b"]}}},
    "word limit bounds": {"ai_config": {"summarization": {"word_limit": 150}}},
    "keep alive max": {"session_keep_alive_time_in_secs": 600},
    "keep alive float": {"session_keep_alive_time_in_secs": 90.5},
    "max_seconds max": {"recording_config": {"max_seconds": 86400}},
    "transcribe_on_end": {"transcribe_on_end": True},
    "title null": {"title": None},
    "record_on_start null": {"record_on_start": None},
    "live_stream null": {"live_stream_on_start": None},
    "storage null": {"recording_config": {"storage_config": None}},
    "region null": {"preferred_region": None},
    "vp9 from newer docs": {"recording_config": {"video_config": {"codec": "VP9"}}},
    "storage with type": {"recording_config": {"storage_config": {"type": "sftp", "host": "h", "port": 22}}},
    "bucket enabled": {"recording_config": {"realtimekit_bucket_config": {"enabled": False}}},
    "watermark": {
        "recording_config": {
            "video_config": {
                "watermark": {"url": "https://x/y.png", "size": {"width": 10, "height": 5}, "position": "left top"}
            }
        }
    },
    "rtmp": {"recording_config": {"live_streaming_config": {"rtmp_url": "rtmp://live/app/key"}}},
    "empty patch": {},
}

INVALID = {
    "string boolean": ({"persist_chat": "true"}, "persist_chat", "true or false"),
    "int for boolean": ({"summarize_on_end": 1}, "summarize_on_end", "true or false"),
    "bad enum": (
        {"ai_config": {"transcription": {"language": "xx"}}},
        "ai_config.transcription.language",
        "must be one of",
    ),
    "word limit low": (
        {"ai_config": {"summarization": {"word_limit": 149}}},
        "ai_config.summarization.word_limit",
        "between 150 and 1000",
    ),
    "word limit float": (
        {"ai_config": {"summarization": {"word_limit": 200.5}}},
        "ai_config.summarization.word_limit",
        "whole number",
    ),
    "keep alive low": (
        {"session_keep_alive_time_in_secs": 59},
        "session_keep_alive_time_in_secs",
        "between 60 and 600",
    ),
    "max_seconds high": (
        {"recording_config": {"max_seconds": 86401}},
        "recording_config.max_seconds",
        "between 60 and 86400",
    ),
    "width high": (
        {"recording_config": {"video_config": {"width": 1921}}},
        "recording_config.video_config.width",
        "between 1 and 1920",
    ),
    "watermark size zero": (
        {"recording_config": {"video_config": {"watermark": {"size": {"width": 0}}}}},
        "recording_config.video_config.watermark.size.width",
        "between 1 and 9007199254740991",
    ),
    "storage without type": (
        {"recording_config": {"storage_config": {"bucket": "b"}}},
        "recording_config.storage_config.type",
        "required",
    ),
    "bucket config without enabled": (
        {"recording_config": {"realtimekit_bucket_config": {}}},
        "recording_config.realtimekit_bucket_config.enabled",
        "required",
    ),
    "null not nullable": ({"persist_chat": None}, "persist_chat", "null is not allowed"),
    "null object": ({"ai_config": None}, "ai_config", "null is not allowed"),
    "unknown field": (
        {"ai_config": {"transcription": {"langauge": "fr"}}},
        "ai_config.transcription.langauge",
        "ai_config.transcription.language",
    ),
    "status is not a PUT field": ({"status": "INACTIVE"}, "status", "unknown field"),
    "rtmp not uri": (
        {"recording_config": {"live_streaming_config": {"rtmp_url": "nope"}}},
        "recording_config.live_streaming_config.rtmp_url",
        "URI",
    ),
    "keywords not list": (
        {"ai_config": {"transcription": {"keywords": "a,b"}}},
        "ai_config.transcription.keywords",
        "array",
    ),
    "video codec": (
        {"recording_config": {"video_config": {"codec": "AV1"}}},
        "recording_config.video_config.codec",
        "VP9",
    ),
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_valid_bodies_pass(body):
    assert validate_body(body) == []


@pytest.mark.parametrize(("body", "field", "text"), INVALID.values(), ids=INVALID.keys())
def test_invalid_bodies_name_field_and_fix(body, field, text):
    errors = validate_body(body)
    assert [e.field for e in errors] == [field]
    assert text in errors[0].reason


def test_secret_values_never_appear_in_messages():
    errors = validate_body({"recording_config": {"storage_config": {"type": "aws", "secret": 12345678}}})
    assert errors and "12345678" not in str(errors)


def test_fields_cover_seed_page_and_api_facts():
    for path in (
        "recording_config.video_config.watermark.size.width",
        "recording_config.storage_config.private_key",
        "transcribe_on_end",
        "ai_config.transcription.keywords",
    ):
        assert path in FIELDS
    assert FIELDS["recording_config.storage_config.secret"].is_secret
    assert FIELDS["title"].is_nullable and not FIELDS["persist_chat"].is_nullable


def test_parse_row_gives_row_with_default_account_and_the_id_as_spelt():
    row = parse_row(3, {"meeting_id": MID.upper(), "title": "x"}, "acct", [])
    assert isinstance(row, Row)
    assert (row.number, row.meeting_id, row.account_id, row.patch) == (3, MID.upper(), "acct", {"title": "x"})


def test_row_account_wins_over_default():
    row = parse_row(1, {"meeting_id": MID, "account_id": "own"}, "default", [])
    assert isinstance(row, Row) and row.account_id == "own"


@pytest.mark.parametrize(
    ("meeting_id", "account_id", "field"),
    [
        ("../" + MID, None, "meeting_id"),
        ("%2e%2e", None, "meeting_id"),
        (MID + "/x", None, "meeting_id"),
        (None, None, "meeting_id"),
        (42, None, "meeting_id"),
        (MID + "\n", None, "meeting_id"),
        (MID, "acct\n", "account_id"),
        (MID, "a" * 33, "account_id"),
        (MID, "acct/../x", "account_id"),
    ],
    ids=[
        "dotdot",
        "encoded",
        "slash",
        "missing",
        "number",
        "trailing newline",
        "account newline",
        "long account",
        "account slash",
    ],
)
def test_ids_that_could_escape_the_url_are_invalid(meeting_id, account_id, field):
    data = {"meeting_id": meeting_id}
    if account_id:
        data["account_id"] = account_id
    result = parse_row(7, data, "acct", [])
    assert isinstance(result, RowError)
    assert result.number == 7 and field in [e.field for e in result.errors]


def test_closest_path_finds_misspelt_column():
    assert closest_path("ai_config.transcription.langauge") == "ai_config.transcription.language"
    assert closest_path("max_seconds") == "recording_config.max_seconds"


def test_default_account_and_app_id_are_checked_before_reaching_a_url():
    with pytest.raises(UsageError, match="--account-id"):
        JobConfig(input="x.csv", account_id="../other")
    with pytest.raises(UsageError, match="--app-id"):
        JobConfig(input="x.csv", app_id="app\n")
