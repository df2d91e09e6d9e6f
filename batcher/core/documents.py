"""Pure document logic: project, deep-merge, compare, diff, the credential guard, redaction.

No I/O here: every function takes plain dicts and returns new ones, so the
rules that decide what gets PUT are testable without a server.

Values are compared as JSON compares them (``same``): ``60`` and ``60.0`` are
the same number, but ``true`` is not ``1``. ``decide``, ``plan``'s diff and
the confirming GET all use that one rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .schema import FIELDS, SECRET_FIELDS, STORAGE_PATH

REDACTED = "***"
# Read-only fields GET shows and a PUT must not carry; everything else GET returned is carried.
READ_ONLY = frozenset({"id", "created_at", "updated_at", "status"})
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


def project(document: dict[str, Any]) -> dict[str, Any]:
    """The document a PUT must carry: every field GET returned but the read-only ones.

    Fields the schema does not know are kept (the API grows: dropping them
    would reset them). Only ``id``, ``created_at``, ``updated_at``, ``status`` go.
    """
    return {k: v for k, v in document.items() if k not in READ_ONLY}


def known_fields(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Keep only fields of the PUT schema (for validating a merged document)."""
    out = {}
    for key, value in document.items():
        path = prefix + key
        if path not in FIELDS:
            continue
        if path in _OBJECT_PATHS and isinstance(value, dict):
            value = known_fields(value, path + ".")
        out[key] = value
    return out


def unknown_paths(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted path: value}`` of every field of ``document`` the schema does not know.

    The walk stops at the first unknown key: ``ai_config.beta_translate`` with
    an object value is one path, however deep the object.
    """
    out: dict[str, Any] = {}
    for key, value in document.items():
        path = prefix + key
        if path not in FIELDS:
            out[path] = value
        elif path in _OBJECT_PATHS and isinstance(value, dict):
            out.update(unknown_paths(value, path + "."))
    return out


def is_under(path: str, roots: Iterable[str]) -> bool:
    """Whether the dotted ``path`` is one of ``roots`` or inside one of them."""
    return any(path == root or path.startswith(root + ".") for root in roots)


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
    if same(before, after):
        return []
    return [{"path": path, "before": before, "after": after}]


def same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (``60 == 60.0``), booleans only equal booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        # JSON-equal implies ==, so a C-speed != settles most comparisons (rows that change something)
        return a == b and all(same(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return a == b and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def shows(document: dict[str, Any], expected: dict[str, Any]) -> bool:
    """True when ``document`` holds every value of ``expected`` (objects key by key; the rest whole).

    A field ``document`` leaves out shows ``null`` (APIs often omit nulls), nothing else.
    """
    for key, want in expected.items():
        have = document.get(key, _ABSENT)
        if isinstance(want, dict) and isinstance(have, dict):
            if not shows(have, want):
                return False
        elif have is _ABSENT:
            if want is not None:
                return False
        elif not same(have, want):
            return False
    return True


_ABSENT = object()


def sets_secret(body: dict[str, Any]) -> bool:
    """True when a write body sets a write-only credential (GET can never confirm it)."""
    storage = storage_of(body)
    return storage is not None and any(storage.get(k) is not None for k in SECRET_FIELDS)


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


def mask_secrets(document: dict[str, Any]) -> dict[str, Any]:
    """A copy with the storage credentials shown as ``"***"`` (what a snapshot keeps of a write:
    which credentials it set, never their values). Touches only the storage object."""
    storage = storage_of(document)
    if storage is None or not SECRET_FIELDS & storage.keys():
        return document
    masked = {k: (REDACTED if k in SECRET_FIELDS and v is not None else v) for k, v in storage.items()}
    return {**document, "recording_config": {**document["recording_config"], "storage_config": masked}}


def secret_masks(body: dict[str, Any]) -> dict[str, Any]:
    """Only the credentials ``body`` sets, each as ``"***"``, nested as the body nests them (or ``{}``).

    What a record of the job's write keeps of them: which it set, never their values. Merged
    over a server's answer (which never shows them) it gives the answer as the job left it."""
    storage = storage_of(body)
    if storage is None:
        return {}
    masked = {k: REDACTED for k in SECRET_FIELDS if storage.get(k) is not None}
    if not masked:
        return {}
    return {STORAGE_PATH[0]: {STORAGE_PATH[1]: masked}}


def carried_unknown(body: dict[str, Any], patch: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of ``body`` the schema does not know and ``patch`` did not set: carried from GET."""
    out = []
    for key, value in body.items():
        path = prefix + key
        sub = patch.get(key) if isinstance(patch, dict) else None
        if path not in FIELDS:
            if sub is None:
                out.append(path)
        elif isinstance(value, dict):
            out.extend(carried_unknown(value, sub if isinstance(sub, dict) else {}, path + "."))
    return out
