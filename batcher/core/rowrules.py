"""Rules a job adds to every row: ``--set`` constants, and ``status`` only in patch mode.

Pure functions over plain values (no schema import, so ``core.rows`` can use them
without a cycle; ``FieldError`` lives here for the same reason). ``--set PATH=VALUE`` values
arrive already typed (see ``cli.tools.parse_set``); merging them is done where rows are decoded, so the
validate-before-send pass and the send pass see the same patch, and its hash
in the state covers them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

STATUS_VALUES = ("ACTIVE", "INACTIVE")
_ABSENT = object()


def merge_constants(
    data: dict[str, Any], constants: Sequence[tuple[str, Any]]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``data`` with every ``(dotted path, value)`` placed in it, and the clashes found.

    A row that already gives a path the same value is fine; a different value
    (or an object where the path needs to go deeper) is a clash naming the path.
    ``data`` itself is not changed.
    """
    if not constants:
        return data, []
    out = copy.deepcopy(data)
    clashes = []
    for path, value in constants:
        *parents, leaf = path.split(".")
        node = out
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                clashes.append(
                    (
                        path,
                        f"the row sets {'.'.join(parents[: depth + 1])} to a non-object; --set {path} needs an object there",
                    )
                )
                break
            node = child
        else:
            current = node.get(leaf, _ABSENT)
            if current is _ABSENT:
                node[leaf] = copy.deepcopy(value)
            elif current != value:
                clashes.append((path, f"the row gives {_show(current)} but --set gives {_show(value)}; drop one"))
    return out, clashes


def with_constants(decode: Decode, constants: Sequence[tuple[str, Any]]) -> Decode:
    """``decode`` (a ``Source``'s) that also merges ``--set`` constants into every row; a clash is a
    problem of that row (a ``FieldError`` naming the path)."""

    def decode_with_constants(raw: Any) -> tuple[dict[str, Any], list[FieldError]]:
        data, problems = decode(raw)
        if any(p.field == "(row)" for p in problems):
            return data, problems
        data, clashes = merge_constants(data, constants)
        return data, problems + [FieldError(path, reason) for path, reason in clashes]

    return decode_with_constants


def status_problem(value: Any, mode: str) -> str | None:
    """Why a row's ``status`` cannot be sent in ``mode``, or None.

    PUT has no ``status`` field; PATCH is the only documented way to make a
    meeting ACTIVE or INACTIVE.
    """
    if mode != "patch":
        return f"status can only be changed with --mode patch (PATCH is the only call that sets it); this job's mode is {mode}"
    if value not in STATUS_VALUES:
        return f"must be one of {list(STATUS_VALUES)}, got {_show(value)}"
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one row."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


# A record's decoder (a ``Source``'s ``decode``): one raw record -> (nested data, problems found decoding it).
Decode = Callable[[Any], tuple[dict[str, Any], list[FieldError]]]
