"""Input rows: the row model, ``parse_row`` and the error messages that name the field and the fix.

The body schema and its field paths are in ``core/schema.py``; a row's patch is
validated against it here.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .config import ACCOUNT_RE
from .documents import is_under
from .rowrules import FieldError, status_problem
from .schema import CARRIED_KEY, FIELDS, SECRET_FIELDS, STORAGE_PATH, MeetingBody, closest_path, unwrap_annotation

# -- rows -------------------------------------------------------------------

MASK = "***"  # how a credential is shown wherever batcher prints or keeps one
# fullmatch, not match + "$": "$" also matches before a trailing newline, which must never reach a URL
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


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


def _describe(err: ErrorDetails, path: str) -> str:
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
    if kind == "value_error":  # our own validators (URIs): their message says what is wrong
        return f"{err['ctx']['error']}{got}"
    wanted = {
        "bool": "true or false",
        "int": "a whole number",
        "number": "a number",
        "str": "a string",
        "array": "a JSON array of strings",
        "object": "an object",
    }
    if (spec is not None and kind.endswith("_type")) or kind in ("model_type", "model_attributes_type"):
        want = wanted.get(spec.kind if spec else "object", "a valid value")
        return f"must be {want}{got}"
    return err["msg"] + got


def _bounds(path: str) -> str:
    model: type[BaseModel] = MeetingBody
    *parents, leaf = path.split(".")
    for name in parents:
        model, _ = unwrap_annotation(model.model_fields[name].annotation)
    info = model.model_fields[leaf]
    low: float | None = None
    high: float | None = None
    for meta in info.metadata:
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    if low is not None and high is not None:
        return f"between {_num(low)} and {_num(high)}"
    return f"at least {_num(low)}" if low is not None else f"at most {_num(high)}"


def _num(bound: float | None) -> str:
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
    patch = {k: v for k, v in data.items() if k != "meeting_id" and k != "account_id" and k != CARRIED_KEY}
    carried = data.get(CARRIED_KEY)
    if carried is not None and not (isinstance(carried, list) and all(isinstance(p, str) for p in carried)):
        errors.append(
            FieldError(CARRIED_KEY, "must be a list of dotted field paths (export writes it; leave it as written)")
        )
        carried = None
    if carried and (known := [p for p in carried if p in FIELDS]):
        # only what the schema does not know is carried: a known object listed would let typos under it through
        errors.append(
            FieldError(CARRIED_KEY, f"lists {', '.join(known)}: batcher checks those; only unknown fields are carried")
        )
        carried = None
    if not (isinstance(meeting_id, str) and UUID_RE.fullmatch(meeting_id)):
        errors.append(FieldError("meeting_id", check_meeting_id(meeting_id) or ""))
    if account_id is None or account_id == "":
        account_id = default_account
    elif not (isinstance(account_id, str) and ACCOUNT_RE.fullmatch(account_id)):
        errors.append(FieldError("account_id", check_account_id(account_id) or ""))
    status = patch.pop("status", _NO_STATUS) if mode is not None else _NO_STATUS
    if status is not _NO_STATUS and (why := status_problem(status, mode or "")):
        errors.append(FieldError("status", why))
    problems_of_body = validate_body(patch, defer_required=defer_required)
    errors.extend(without_carried(problems_of_body, carried) if carried else problems_of_body)
    errors.extend(masked_credentials(patch))
    if mode == "patch":
        errors.extend(patch_nulls(patch))
    if status is not _NO_STATUS:
        patch["status"] = status  # PATCH sends it; the schema of the body never had it
    if errors or not isinstance(
        meeting_id, str
    ):  # ids that are not valid never leave this function: they must not reach a URL
        shown_id = meeting_id if isinstance(meeting_id, str) and UUID_RE.fullmatch(meeting_id) else None
        shown_account = account_id if isinstance(account_id, str) and ACCOUNT_RE.fullmatch(account_id) else None
        return RowError(number, shown_id, shown_account, errors, patch)
    return Row(number, meeting_id, account_id, patch)  # as the row spells it: servers may compare exactly


def without_carried(errors: list[FieldError], carried: list[str]) -> list[FieldError]:
    """``errors`` but those saying a field the line carries from an export is unknown.

    ``export`` lists in ``_carried`` the fields of a meeting the schema does not know (the API
    grew): the line is a backup, and restoring it must send them as they were. Only unknown-field
    errors at (or under) those paths go; every field the schema knows is still checked."""

    return [e for e in errors if not (e.reason.startswith("unknown field") and is_under(e.field, carried))]


# Nullable in the PUT body but not in the PATCH body (Cloudflare's schema): null is a PUT-only value there.
PATCH_NOT_NULLABLE = ("title", "record_on_start", "live_stream_on_start")


def patch_nulls(patch: dict[str, Any]) -> list[FieldError]:
    """Fields a PATCH cannot set to null (``PATCH_NOT_NULLABLE``), which PUT could."""
    return [
        FieldError(path, "null is allowed here in a PUT, not in a PATCH: give a value, or use --mode merge to clear it")
        for path in PATCH_NOT_NULLABLE
        if path in patch and patch[path] is None
    ]


def masked_credentials(patch: dict[str, Any]) -> list[FieldError]:
    """A credential given as ``***``: batcher's own mask (resume lines, reports), never a real value.
    Sent, it would replace the meeting's real secret with three stars, for good."""
    storage = patch.get(STORAGE_PATH[0])
    storage = storage.get(STORAGE_PATH[1]) if isinstance(storage, dict) else None
    if not isinstance(storage, dict):
        return []
    return [
        FieldError(
            f"{'.'.join(STORAGE_PATH)}.{key}",
            "'***' is how batcher shows a credential it never prints: give the real value",
        )
        for key in sorted(SECRET_FIELDS)
        if storage.get(key) == MASK
    ]


def _required_paths(model: type[BaseModel], prefix: str) -> typing.Iterator[tuple[str, str]]:
    for name, info in model.model_fields.items():
        inner, _ = unwrap_annotation(info.annotation)
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
