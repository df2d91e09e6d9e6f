"""Duplicate keys in a JSON line: orjson keeps the last of two equal keys silently.

``{"meeting_id": A, "meeting_id": B}`` would patch B without a word, so a row
that names a key twice is invalid. Finding that must not slow the hot path:
a second, pair-keeping parse costs several times orjson's, so it runs only on
lines where a lost key is possible at all (see ``keys_given_twice``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson


def keys_given_twice(line: bytes, data: dict[str, Any]) -> list[str]:
    """Dotted paths of the keys that ``line`` gives twice in one object (``data``: orjson's parse of it).

    A compact line that re-serialises to itself lost nothing (0.2 us). Otherwise
    every key is followed by its colon, directly (``"key":``) unless whitespace
    comes between, so a line with no more such colons than the decoded objects
    have keys lost none either. Only a line with spare colons (one inside a
    value) pays for the second parse.
    """
    if orjson.dumps(data) == line.strip() or not _has_spare_colons(line, _count_keys(data)):
        return []
    return _duplicate_keys(line)


def _has_spare_colons(line: bytes, keys: int) -> bool:
    """True when a JSON line has more key-like colons than ``keys`` (so a key may have been lost)."""
    if line.count(b":") <= keys:  # every colon is a key's: the usual line
        return False
    if _SPACE_COLON.search(line):  # whitespace before some colon: cannot tell keys from values
        return True
    return line.count(b'":') > keys  # a key's colon follows its closing quote directly


_SPACE_COLON = re.compile(rb"\s:")


def _count_keys(value: Any) -> int:
    """Keys in every object of a decoded JSON value (plain recursion: the fastest here)."""
    if type(value) is dict:
        count = len(value)
        for item in value.values():
            if type(item) is dict or type(item) is list:
                count += _count_keys(item)
        return count
    return sum(_count_keys(item) for item in value if type(item) is dict or type(item) is list)


class _Pairs(dict[str, Any]):
    """A JSON object that remembers which of its keys were given twice."""

    twice: tuple[str, ...] = ()


def _keep_pairs(pairs: list[tuple[str, Any]]) -> _Pairs:
    obj = _Pairs(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        twice: dict[str, None] = {}  # ordered, each key once
        for key, _ in pairs:
            if key in seen:
                twice[key] = None
            seen.add(key)
        obj.twice = tuple(twice)
    return obj


def _duplicate_keys(line: bytes) -> list[str]:
    """Dotted paths of the keys a JSON line gives twice in one object."""
    try:
        data = json.loads(line, object_pairs_hook=_keep_pairs)
    except ValueError:
        return []
    out: list[str] = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        value, prefix = stack.pop()
        if isinstance(value, dict):
            out.extend(prefix + k for k in getattr(value, "twice", ()))
            stack.extend((v, f"{prefix}{k}.") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, prefix) for v in value)
    return sorted(out)
