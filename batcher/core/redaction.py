"""Secrets out of every text batcher writes: the values to hide, and scrubbing them.

A row's storage credentials are the only secrets a patch carries; an error body may echo them in
any spelling (JSON-escaped, repr'd), so each is scrubbed in all of its forms, longest first.
"""

from __future__ import annotations

from typing import Any

import orjson

from .documents import REDACTED, redact, storage_of
from .schema import SECRET_FIELDS


def secret_values(patch: dict[str, Any] | None) -> list[str]:
    """The storage credentials a patch carries (to scrub from any text)."""
    storage = storage_of(patch or {}) or {}
    return [v for k, v in storage.items() if k in SECRET_FIELDS and isinstance(v, str) and v]


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***``: as written, and as an error body may
    echo it escaped (JSON, Python repr: a PEM key's newlines), longest first (a secret that is a
    prefix of another must not leave the other's tail)."""
    forms = {form for value in secrets if value for form in _spellings(value)}
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, REDACTED)
    return text


def _spellings(value: str) -> tuple[str, ...]:
    return value, orjson.dumps(value).decode()[1:-1], repr(value)[1:-1]


def redacted_patch_json(patch: dict[str, Any] | None) -> str | None:
    """The patch as JSON with credentials replaced: safe for state and reports."""
    return None if patch is None else orjson.dumps(redact(patch)).decode()
