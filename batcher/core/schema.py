"""The PUT body schema and the field paths derived from it.

The schema is the single source of truth for field paths: CSV column names,
JSONL keys, the fake API's validation and merge-mode projection all derive
from the pydantic models below, so a field added here is known everywhere.

Models validate *patches* as well as whole documents: every field is optional
(PUT has no required top-level field), but inside an object the spec's
required-if rules hold (``storage_config.type``, ``realtimekit_bucket_config
.enabled``). ``null`` is accepted only where the spec says a field is nullable;
elsewhere a field is optional by having a default that is never validated.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# -- the PUT body -----------------------------------------------------------

# RFC 3986 (the schema's ``format: uri``): scheme "://" authority, then only the characters a URI
# may hold: unreserved, reserved (gen-delims and sub-delims) and "%" starting a two-hex-digit escape.
# Anything else (a space, '"', "^", "|", "{", "}", "<", ">", "\\", a non-ASCII letter) is refused
# here, before anything is sent, because the API's validator refuses it there.
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def uri_problem(value: str) -> str | None:
    """Why ``value`` is not an RFC 3986 URI with a host (``rtmp://host/app``), or None."""
    scheme, sep, rest = value.partition("://")
    if not sep or not _URI_SCHEME.fullmatch(scheme):
        return "must be a URI (scheme://host/...)"
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    if not host or host.startswith(":"):
        return "must be a URI with a host (scheme://host/...)"
    if not host.isascii():
        return "the host must be written in its punycode form (xn--...): a URI holds only ASCII"
    if not _URI_CHARS.fullmatch(rest):
        bad = next(c for c in rest if not _URI_CHARS.fullmatch(c))
        return f"holds {bad!r}, which a URI cannot hold: percent-encode it ({_escape(bad)})"
    if match := _BAD_ESCAPE.search(rest):
        return f"has a '%' not followed by two hex digits (at {rest[match.start() : match.start() + 3]!r}): write %25 for a literal %"
    if "[" in rest.split("/", 1)[0].replace(host, "", 1) or ("[" in host) != host.startswith("["):
        return "brackets belong only around an IPv6 host"
    return None


def _escape(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode())


def _check_uri(value: str) -> str:
    if problem := uri_problem(value):
        raise ValueError(problem)
    return value


Uri = typing.Annotated[str, AfterValidator(_check_uri)]
# "Number" fields accept ints and floats (strict mode still lets int -> float).
Number = float
# The largest integer every JSON reader keeps exactly (2^53 - 1: JavaScript's and any float64
# parser's limit; orjson itself stops at 64 bits). An integer field with no upper bound in the
# spec gets this one, so `validate` refuses what serialisation or the API could not carry.
MAX_JSON_INT = 2**53 - 1

Language = Literal["en-US", "nl", "pl", "fr", "el", "en-IN", "sv", "ru", "hi", "de"]
SummaryType = Literal[
    "general",
    "lecture",
    "client_check_in",
    "daily_standup",
    "one_on_one_meeting",
    "team_meeting",
    "sales_call",
    "code_review",
    "interview",
]
Region = Literal["ap-south-1", "eu-central-1", "ap-southeast-1", "us-east-1"]
StorageType = Literal["gcs", "sftp", "aws", "azure", "digitalocean"]


# The default of a field a body may leave out but may not send as null. pydantic never validates a
# default, so an absent field stays absent while ``null`` is still checked against the annotation, which
# has no ``| None`` (``FIELDS`` reads nullability off it). No annotation says "absent, never null": the
# default is typed Any, once here, instead of each field's annotation lying about None.
_ABSENT: Any = None


class _Model(BaseModel):
    # strict: "true" is not a boolean and 1.0 is not an integer; forbid: a typo
    # must be an error, not a field the API silently ignores.
    model_config = ConfigDict(extra="forbid", strict=True)


class Transcription(_Model):
    keywords: list[str] = _ABSENT
    profanity_filter: bool = _ABSENT
    language: Language = _ABSENT


class Summarization(_Model):
    summary_type: SummaryType = _ABSENT
    text_format: Literal["plain_text", "markdown"] = _ABSENT
    word_limit: typing.Annotated[int, Field(ge=150, le=1000)] = _ABSENT


class AiConfig(_Model):
    transcription: Transcription = _ABSENT
    summarization: Summarization = _ABSENT


class LiveStreamingConfig(_Model):
    rtmp_url: Uri = _ABSENT


class AudioConfig(_Model):
    export_file: bool = _ABSENT
    channel: Literal["stereo", "mono"] = _ABSENT
    codec: Literal["MP3", "AAC"] = _ABSENT


class RealtimekitBucketConfig(_Model):
    enabled: bool


class StorageConfig(_Model):
    type: StorageType
    private_key: str = _ABSENT
    region: str = _ABSENT
    port: typing.Annotated[int, Field(ge=1, le=65535)] = _ABSENT
    username: str = _ABSENT
    bucket: str = _ABSENT
    auth_method: Literal["PASSWORD", "KEY"] = _ABSENT
    password: str = _ABSENT
    access_key: str = _ABSENT
    host: str = _ABSENT
    path: str = _ABSENT
    secret: str = _ABSENT


class WatermarkSize(_Model):
    height: typing.Annotated[int, Field(ge=1, le=MAX_JSON_INT)] = _ABSENT
    width: typing.Annotated[int, Field(ge=1, le=MAX_JSON_INT)] = _ABSENT


class Watermark(_Model):
    size: WatermarkSize = _ABSENT
    url: Uri = _ABSENT
    position: Literal["right bottom", "right top", "left bottom", "left top"] = _ABSENT


class VideoConfig(_Model):
    export_file: bool = _ABSENT
    height: typing.Annotated[int, Field(ge=1, le=1920)] = _ABSENT
    width: typing.Annotated[int, Field(ge=1, le=1920)] = _ABSENT
    codec: Literal["VP8", "H264", "VP9"] = _ABSENT
    watermark: Watermark = _ABSENT


class RecordingConfig(_Model):
    live_streaming_config: LiveStreamingConfig = _ABSENT
    audio_config: AudioConfig = _ABSENT
    realtimekit_bucket_config: RealtimekitBucketConfig = _ABSENT
    storage_config: StorageConfig | None = None
    video_config: VideoConfig = _ABSENT
    file_name_prefix: str = _ABSENT
    max_seconds: typing.Annotated[Number, Field(ge=60, le=86400)] = _ABSENT


class MeetingBody(_Model):
    """The body of ``PUT /meetings/{id}`` (and of a patch: the same fields)."""

    persist_chat: bool = _ABSENT
    session_keep_alive_time_in_secs: typing.Annotated[Number, Field(ge=60, le=600)] = _ABSENT
    ai_config: AiConfig = _ABSENT
    live_stream_on_start: bool | None = None
    record_on_start: bool | None = None
    title: str | None = None
    summarize_on_end: bool = _ABSENT
    transcribe_on_end: bool = _ABSENT
    preferred_region: Region | None = None
    recording_config: RecordingConfig = _ABSENT


# What a meeting looks like when a PUT names nothing: the spec's defaults.
DEFAULT_DOCUMENT: dict[str, Any] = {
    "persist_chat": False,
    "session_keep_alive_time_in_secs": 60,
    "ai_config": {
        "transcription": {"keywords": [], "profanity_filter": False, "language": "en-US"},
        "summarization": {"summary_type": "general", "text_format": "markdown", "word_limit": 500},
    },
    "live_stream_on_start": False,
    "record_on_start": False,
    "title": None,
    "summarize_on_end": False,
    "transcribe_on_end": False,
    "preferred_region": None,
    "recording_config": {
        "audio_config": {"export_file": True, "channel": "stereo", "codec": "AAC"},
        "video_config": {"export_file": True, "height": 720, "width": 1280, "codec": "H264"},
        "storage_config": None,
    },
}

STORAGE_PATH = ("recording_config", "storage_config")
# Write-only: never returned by GET, so never known to a merge.
SECRET_FIELDS = frozenset({"access_key", "secret", "password", "private_key"})


# -- field paths, derived from the models ------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """One field of the body: its dotted path, the kind of value, nullability."""

    path: str
    kind: str  # "bool" | "int" | "number" | "str" | "array" | "object"
    is_nullable: bool
    is_secret: bool


def unwrap_annotation(annotation: Any) -> tuple[Any, bool]:
    """Strip Annotated/Optional; return (inner type, nullable)."""
    nullable = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(annotation))
            annotation = args[0]
        else:
            return annotation, nullable


def _kind(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "object"
    if typing.get_origin(annotation) is list:
        return "array"
    if typing.get_origin(annotation) is Literal:
        return "str"
    return {bool: "bool", int: "int", float: "number", str: "str"}[annotation]


def _walk(model: type[BaseModel], prefix: str) -> typing.Iterator[FieldSpec]:
    for name, info in model.model_fields.items():
        inner, nullable = unwrap_annotation(info.annotation)
        path = prefix + name
        kind = _kind(inner)
        yield FieldSpec(path, kind, nullable, name in SECRET_FIELDS and "storage_config" in path)
        if kind == "object":
            yield from _walk(inner, path + ".")


FIELDS: dict[str, FieldSpec] = {spec.path: spec for spec in _walk(MeetingBody, "")}
ROW_KEYS = ("meeting_id", "account_id")
# An export's list of the fields of a line the schema did not know: carried as they are, not validated
CARRIED_KEY = "_carried"


def is_secret_path(path: str) -> bool:
    """True for a write-only credential's dotted path (``recording_config.storage_config.secret``...)."""
    spec = FIELDS.get(path)
    return spec is not None and spec.is_secret


def masked_set_argument(argument: str) -> str:
    """A ``--set PATH=VALUE`` argument fit to print: a credential's value shows as ``***``."""
    path, sep, _value = argument.partition("=")
    return f"{path}=***" if sep and is_secret_path(path.strip()) else argument


def closest_path(name: str, candidates: typing.Iterable[str] | None = None) -> str | None:
    """The valid field path closest to a misspelt ``name``, if any is close."""
    pool = list(candidates if candidates is not None else [*FIELDS, *ROW_KEYS])
    match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    if not match:  # a right leaf under a wrong parent: compare last segments
        leaf = name.rsplit(".", 1)[-1]
        by_leaf = [p for p in pool if p.rsplit(".", 1)[-1] == leaf]
        match = by_leaf[:1]
    return match[0] if match else None
