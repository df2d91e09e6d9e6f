"""The PUT body schema, the row model, and ``parse_row``.

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
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import ACCOUNT_RE
from .rowrules import status_problem

# -- the PUT body -----------------------------------------------------------

URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.\-]*://\S+$"
Uri = typing.Annotated[str, Field(pattern=URI_PATTERN)]
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


class _Model(BaseModel):
    # strict: "true" is not a boolean and 1.0 is not an integer; forbid: a typo
    # must be an error, not a field the API silently ignores.
    model_config = ConfigDict(extra="forbid", strict=True)


class Transcription(_Model):
    keywords: list[str] = None  # type: ignore[assignment]
    profanity_filter: bool = None  # type: ignore[assignment]
    language: Language = None  # type: ignore[assignment]


class Summarization(_Model):
    summary_type: SummaryType = None  # type: ignore[assignment]
    text_format: Literal["plain_text", "markdown"] = None  # type: ignore[assignment]
    word_limit: typing.Annotated[int, Field(ge=150, le=1000)] = None  # type: ignore[assignment]


class AiConfig(_Model):
    transcription: Transcription = None  # type: ignore[assignment]
    summarization: Summarization = None  # type: ignore[assignment]


class LiveStreamingConfig(_Model):
    rtmp_url: Uri = None  # type: ignore[assignment]


class AudioConfig(_Model):
    export_file: bool = None  # type: ignore[assignment]
    channel: Literal["stereo", "mono"] = None  # type: ignore[assignment]
    codec: Literal["MP3", "AAC"] = None  # type: ignore[assignment]


class RealtimekitBucketConfig(_Model):
    enabled: bool


class StorageConfig(_Model):
    type: StorageType
    private_key: str = None  # type: ignore[assignment]
    region: str = None  # type: ignore[assignment]
    port: typing.Annotated[int, Field(ge=1, le=65535)] = None  # type: ignore[assignment]
    username: str = None  # type: ignore[assignment]
    bucket: str = None  # type: ignore[assignment]
    auth_method: Literal["PASSWORD", "KEY"] = None  # type: ignore[assignment]
    password: str = None  # type: ignore[assignment]
    access_key: str = None  # type: ignore[assignment]
    host: str = None  # type: ignore[assignment]
    path: str = None  # type: ignore[assignment]
    secret: str = None  # type: ignore[assignment]


class WatermarkSize(_Model):
    height: typing.Annotated[int, Field(ge=1, le=MAX_JSON_INT)] = None  # type: ignore[assignment]
    width: typing.Annotated[int, Field(ge=1, le=MAX_JSON_INT)] = None  # type: ignore[assignment]


class Watermark(_Model):
    size: WatermarkSize = None  # type: ignore[assignment]
    url: Uri = None  # type: ignore[assignment]
    position: Literal["right bottom", "right top", "left bottom", "left top"] = None  # type: ignore[assignment]


class VideoConfig(_Model):
    export_file: bool = None  # type: ignore[assignment]
    height: typing.Annotated[int, Field(ge=1, le=1920)] = None  # type: ignore[assignment]
    width: typing.Annotated[int, Field(ge=1, le=1920)] = None  # type: ignore[assignment]
    codec: Literal["VP8", "H264", "VP9"] = None  # type: ignore[assignment]
    watermark: Watermark = None  # type: ignore[assignment]


class RecordingConfig(_Model):
    live_streaming_config: LiveStreamingConfig = None  # type: ignore[assignment]
    audio_config: AudioConfig = None  # type: ignore[assignment]
    realtimekit_bucket_config: RealtimekitBucketConfig = None  # type: ignore[assignment]
    storage_config: StorageConfig | None = None
    video_config: VideoConfig = None  # type: ignore[assignment]
    file_name_prefix: str = None  # type: ignore[assignment]
    max_seconds: typing.Annotated[Number, Field(ge=60, le=86400)] = None  # type: ignore[assignment]


class MeetingBody(_Model):
    """The body of ``PUT /meetings/{id}`` (and of a patch: the same fields)."""

    persist_chat: bool = None  # type: ignore[assignment]
    session_keep_alive_time_in_secs: typing.Annotated[Number, Field(ge=60, le=600)] = None  # type: ignore[assignment]
    ai_config: AiConfig = None  # type: ignore[assignment]
    live_stream_on_start: bool | None = None
    record_on_start: bool | None = None
    title: str | None = None
    summarize_on_end: bool = None  # type: ignore[assignment]
    transcribe_on_end: bool = None  # type: ignore[assignment]
    preferred_region: Region | None = None
    recording_config: RecordingConfig = None  # type: ignore[assignment]


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


def _unwrap(annotation: Any) -> tuple[Any, bool]:
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
        inner, nullable = _unwrap(info.annotation)
        path = prefix + name
        kind = _kind(inner)
        yield FieldSpec(path, kind, nullable, name in SECRET_FIELDS and "storage_config" in path)
        if kind == "object":
            yield from _walk(inner, path + ".")


FIELDS: dict[str, FieldSpec] = {spec.path: spec for spec in _walk(MeetingBody, "")}
ROW_KEYS = ("meeting_id", "account_id")


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


# -- rows -------------------------------------------------------------------

# fullmatch, not match + "$": "$" also matches before a trailing newline, which must never reach a URL
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one row."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(slots=True)
class Row:
    """A valid input row: where to send it and what to change."""

    number: int
    meeting_id: str
    account_id: str | None
    patch: dict[str, Any]


@dataclass(slots=True)
class RowError:
    """An invalid input row, with every problem found in it."""

    number: int
    meeting_id: str | None
    account_id: str | None
    errors: list[FieldError]
    patch: dict[str, Any] | None = field(default=None)
    is_duplicate: bool = False  # found by the end-of-file duplicate check, after the row was yielded as a Row

    @property
    def message(self) -> str:
        """All problems as one line."""
        return "; ".join(str(e) for e in self.errors)


def check_meeting_id(value: Any) -> str | None:
    """Return the reason ``value`` is not a usable meeting id, or None."""
    if not isinstance(value, str) or not value:
        return "required: a meeting UUID such as 0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"
    if not UUID_RE.fullmatch(value):
        return f"{show_value(value)} is not a UUID (expected 8-4-4-4-12 hex digits)"
    return None


def check_account_id(value: Any) -> str | None:
    """Return the reason ``value`` is not a usable account id, or None."""
    if not isinstance(value, str) or not ACCOUNT_RE.fullmatch(value):
        return f"{show_value(value)} is not an account id (1-32 characters of 0-9 A-Z a-z _ -)"
    return None


def show_value(value: Any, limit: int = 60) -> str:
    """A value as JSON spells it (``true``, ``null``, ``"fr"``), cut to ``limit`` characters."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # not JSON at all (an integer beyond 64 bits): Python's spelling is the closest
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(err: dict[str, Any], path: str) -> str:
    """Turn one pydantic error into a sentence that says how to fix it."""
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    spec = FIELDS.get(path)
    is_secret = spec is not None and spec.is_secret
    got = "" if is_secret else f", got {show_value(given)}"
    if kind == "extra_forbidden":
        hint = closest_path(path)
        return "unknown field" + (f"; did you mean '{hint}'?" if hint else "; see the spec for valid fields")
    if kind == "missing":
        parent = path.rsplit(".", 1)[0]
        return f"required whenever {parent} is given (in --mode merge, unless the meeting already has one)"
    if given is None and spec is not None and not spec.is_nullable:
        return "null is not allowed here; leave the field out to keep the current value"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"')  # JSON's spelling of the choices
        return f"must be one of {expected}{got}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low = _bounds(path)
        return f"must be {low}{got}"
    if kind == "string_pattern_mismatch":
        return f"must be a URI (scheme://host/...){got}"
    expected = {
        "bool": "true or false",
        "int": "a whole number",
        "number": "a number",
        "str": "a string",
        "array": "a JSON array of strings",
        "object": "an object",
    }
    if (spec is not None and kind.endswith("_type")) or kind in ("model_type", "model_attributes_type"):
        want = expected.get(spec.kind if spec else "object", "a valid value")
        return f"must be {want}{got}"
    return err["msg"] + got


def _bounds(path: str) -> str:
    model: Any = MeetingBody
    *parents, leaf = path.split(".")
    for name in parents:
        model, _ = _unwrap(model.model_fields[name].annotation)
    info = model.model_fields[leaf]
    low = high = None
    for meta in info.metadata:
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    if low is not None and high is not None:
        return f"between {_num(low)} and {_num(high)}"
    return f"at least {_num(low)}" if low is not None else f"at most {_num(high)}"


def _num(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


_NO_STATUS = object()
_validate_python = MeetingBody.__pydantic_validator__.validate_python  # the hot path skips a wrapper


def validate_body(body: dict[str, Any], *, defer_required: bool = False) -> list[FieldError]:
    """Validate a body or patch against the schema; return its problems.

    ``defer_required``: leave the required-if rules (``storage_config.type``...)
    to the merged document (merge mode: the meeting may already have the field).
    """
    try:
        _validate_python(body)
    except ValidationError as exc:
        out = []
        for err in exc.errors(include_url=False):
            if defer_required and err["type"] == "missing":
                continue
            path = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
            out.append(FieldError(path or "(body)", _describe(err, path)))
        return out
    return []


def parse_row(
    number: int,
    data: dict[str, Any],
    default_account: str | None,
    problems: list[FieldError] | None = None,
    *,
    defer_required: bool = False,
    mode: str | None = None,
) -> Row | RowError:
    """Check one decoded input row; return a ``Row`` or a ``RowError`` naming every problem.

    ``data`` is already nested (see ``source.unflatten``); ``problems`` are
    those the reader found while decoding (bad cells, key collisions). With a
    ``mode``, a ``status`` key is checked by ``rowrules.status_problem`` (patch
    mode only); without one it is an unknown field like any other.
    """
    errors = list(problems) if problems else []
    if any(e.field == "(row)" for e in errors):  # not even a row: checking its fields would only add noise
        return RowError(number, None, None, errors, data or None)
    meeting_id = data.get("meeting_id")
    account_id = data.get("account_id")
    patch = {k: v for k, v in data.items() if k != "meeting_id" and k != "account_id"}
    if not (isinstance(meeting_id, str) and UUID_RE.fullmatch(meeting_id)):
        errors.append(FieldError("meeting_id", check_meeting_id(meeting_id) or ""))
    if account_id is None or account_id == "":
        account_id = default_account
    elif not (isinstance(account_id, str) and ACCOUNT_RE.fullmatch(account_id)):
        errors.append(FieldError("account_id", check_account_id(account_id) or ""))
    status = patch.pop("status", _NO_STATUS) if mode is not None else _NO_STATUS
    if status is not _NO_STATUS and (why := status_problem(status, mode or "")):
        errors.append(FieldError("status", why))
    errors.extend(validate_body(patch, defer_required=defer_required))
    if status is not _NO_STATUS:
        patch["status"] = status  # PATCH sends it; the schema of the body never had it
    if errors:  # ids that are not valid never leave this function: they must not reach a URL
        shown_id = meeting_id if isinstance(meeting_id, str) and UUID_RE.fullmatch(meeting_id) else None
        shown_account = account_id if isinstance(account_id, str) and ACCOUNT_RE.fullmatch(account_id) else None
        return RowError(number, shown_id, shown_account, errors, patch)
    return Row(number, meeting_id, account_id, patch)  # as the row spells it: servers may compare exactly


def _required_paths(model: type[BaseModel], prefix: str) -> typing.Iterator[tuple[str, str]]:
    for name, info in model.model_fields.items():
        inner, _ = _unwrap(info.annotation)
        if info.is_required() and prefix:
            yield prefix.rstrip("."), name
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from _required_paths(inner, prefix + name + ".")


# (object path, field) pairs: the field is required whenever the object is given.
REQUIRED_IF = tuple(_required_paths(MeetingBody, ""))


def missing_required(document: dict[str, Any]) -> list[FieldError]:
    """Required-if fields absent from a whole document (e.g. a merged one)."""
    out = []
    for parent, name in REQUIRED_IF:
        node: Any = document
        for key in parent.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and name not in node:
            out.append(FieldError(f"{parent}.{name}", f"required whenever {parent} is given"))
    return out
