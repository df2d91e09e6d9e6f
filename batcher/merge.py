"""Pure document logic: project, deep-merge, diff, the credential guard, redaction.

No I/O here: every function takes plain dicts and returns new ones, so the
rules that decide what gets PUT are testable without a server.
"""

from __future__ import annotations

from typing import Any

from .model import FIELDS, SECRET_FIELDS, STORAGE_PATH

REDACTED = "***"
_OBJECT_PATHS = frozenset(p for p, s in FIELDS.items() if s.kind == "object")

# Which write-only credentials each storage type needs to keep working.
# gcs authenticates with the secret alone; sftp with a password *or* a key.
_NEEDED = {
    "aws": (("access_key", "secret"),),
    "azure": (("access_key", "secret"),),
    "digitalocean": (("access_key", "secret"),),
    "gcs": (("secret",),),
    "sftp": (("password",), ("private_key",)),
}


def project(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Keep only fields of the PUT schema (drops id, created_at, status, ...)."""
    out = {}
    for key, value in document.items():
        path = prefix + key
        if path not in FIELDS:
            continue
        if path in _OBJECT_PATHS and isinstance(value, dict):
            value = project(value, path + ".")
        out[key] = value
    return out


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` over ``base``: objects merge key by key; arrays, scalars and null replace."""
    out = dict(base)
    for key, value in patch.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Field-level changes ``[{path, before, after}]`` from ``before`` to ``after``.

    Objects are compared key by key; anything else (arrays included) as a whole.
    A key missing on one side shows as ``None`` there.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        changes = []
        for key in {**before, **after}:
            sub = f"{path}.{key}" if path else key
            changes.extend(diff(before.get(key), after.get(key), sub))
        return changes
    if before == after and type(before) is type(after):
        return []
    return [{"path": path, "before": before, "after": after}]


def storage_of(document: dict[str, Any]) -> dict[str, Any] | None:
    """``recording_config.storage_config`` of a document, if set."""
    node: Any = document
    for key in STORAGE_PATH:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def missing_credentials(document: dict[str, Any], patch: dict[str, Any]) -> list[str]:
    """Credentials the PUT of ``document`` would erase because ``patch`` lacks them.

    GET never returns storage secrets, so a merged document carries only the
    ones the row itself supplies. A PUT without them resets them: the guard.
    Returns the missing field names (empty when the PUT is safe).
    """
    storage = storage_of(document)
    if storage is None:
        return []
    given = {k for k, v in (storage_of(patch) or {}).items() if k in SECRET_FIELDS and v}
    options = _NEEDED.get(storage.get("type", ""), (("access_key", "secret"),))
    best: list[str] = []
    for needed in options:
        lacking = [name for name in needed if name not in given]
        if not lacking:
            return []
        if not best or len(lacking) < len(best):
            best = lacking
    return best if len(options) == 1 else [" or ".join("+".join(o) for o in options)]


def redact(document: Any) -> Any:
    """A copy with storage credentials replaced by ``"***"`` (safe to log or store)."""
    if isinstance(document, dict):
        return {k: (REDACTED if k in SECRET_FIELDS and v is not None else redact(v)) for k, v in document.items()}
    if isinstance(document, list):
        return [redact(v) for v in document]
    return document


def strip_secrets(document: dict[str, Any]) -> dict[str, Any]:
    """A copy without storage credentials (what a GET would show of it)."""
    storage = storage_of(document)
    if storage is None or not SECRET_FIELDS & storage.keys():
        return document
    clean = {k: v for k, v in storage.items() if k not in SECRET_FIELDS}
    return {**document, "recording_config": {**document["recording_config"], "storage_config": clean}}
