"""Streaming CSV / JSONL readers: one ``(row_number, data, problems)`` at a time.

Reading is split in two so that resuming a million-row job is cheap: ``scan``
yields *raw* records (a list of cells, a line of bytes) with their row
numbers, and ``Decoder.decode`` turns one raw record into a nested dict,
typing CSV cells by the schema. A resumed run decodes only the rows it sends.

Row numbers follow the contract: CSV data rows count from 1 after the header
(a quoted cell may span lines; it is still one row); JSONL rows are line
numbers from 1, blank lines skipped but counted.
"""

from __future__ import annotations

import csv
import io
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import InputError
from .model import FIELDS, ROW_KEYS, FieldError, closest_path
from .rowrules import merge_constants

MAX_RECORD_BYTES = 1 << 20  # one meeting's patch is a few KB; 1 MiB is surely a mistake
csv.field_size_limit(MAX_RECORD_BYTES)

STDIN = "-"
Decode = Callable[[Any], tuple[dict[str, Any], list[FieldError]]]


def detect_format(path: str, override: str | None = None) -> str:
    """``csv`` or ``jsonl``, from ``--format`` or the file name."""
    if override:
        if override not in ("csv", "jsonl"):
            raise InputError(f"--format must be csv or jsonl, not {override!r}")
        return override
    if path == STDIN:
        return "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise InputError(f"cannot tell the format of {path!r} from its name: use --format csv or --format jsonl")


@dataclass(slots=True)
class Broken:
    """A raw record that could not even be split into cells/JSON."""

    reason: str


def unflatten(data: dict[str, Any], problems: list[FieldError]) -> dict[str, Any]:
    """Expand dotted keys into nested objects; report a field given twice.

    Dotted and nested forms may be mixed as long as they name different
    fields: ``{"a.b": 1, "a": {"c": 2}}`` is ``{"a": {"b": 1, "c": 2}}``.
    """
    if not any("." in key for key in data):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        *parents, leaf = key.split(".")
        node = out
        for depth, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(
                    FieldError(key, f"collides with {'.'.join(parents[: depth + 1])}, which is not an object")
                )
                break
            node = child
        else:
            _place(node, leaf, value, key, problems)
    return out


def _place(node: dict[str, Any], leaf: str, value: Any, path: str, problems: list[FieldError]) -> None:
    if leaf not in node:
        node[leaf] = value
    elif isinstance(node[leaf], dict) and isinstance(value, dict):
        for sub, sub_value in value.items():
            _place(node[leaf], sub, sub_value, f"{path}.{sub}", problems)
    else:
        problems.append(FieldError(path, "given twice (as a dotted key and nested); keep one"))


# -- CSV --------------------------------------------------------------------

_TRUE, _FALSE = "true", "false"
_INT = re.compile(r"^[+-]?\d+$")


def _cell(kind: str, text: str) -> Any:
    """Type one non-empty CSV cell by its field kind; raise ValueError with the fix."""
    if text == "null":
        return None
    if kind == "str":
        return text
    if kind == "bool":
        low = text.lower()
        if low == _TRUE:
            return True
        if low == _FALSE:
            return False
        raise ValueError(f"must be true or false, got {text!r}")
    if kind == "int":
        if not _INT.match(text):
            raise ValueError(f"must be a whole number, got {text!r}")
        return int(text)
    if kind == "number":
        if _INT.match(text):
            return int(text)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {text!r}")
        return value
    try:  # array / object: JSON in the cell
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        want = 'a JSON array such as ["a","b"]' if kind == "array" else "a JSON object or null"
        raise ValueError(f"must be {want}") from None
    return value


class CsvDecoder:
    """Types the cells of one CSV layout by the schema."""

    def __init__(self, header: list[str]) -> None:
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        names = [h.strip() for h in header]
        if "meeting_id" not in names:
            raise InputError("the CSV header has no meeting_id column (row 0); add one")
        problems = []
        for name in names:
            if name not in FIELDS and name not in ROW_KEYS and name != "status":  # status: patch mode only
                hint = closest_path(name)
                fix = f"did you mean '{hint}'?" if hint else "remove it or use a dotted path from the spec"
                problems.append(f"unknown column {name!r}: {fix}")
        seen: set[str] = set()
        for name in names:
            if name in seen:
                problems.append(f"column {name!r} appears twice in the header")
            seen.add(name)
        if problems:
            raise InputError("CSV header (row 0): " + "; ".join(problems))
        self.names = names
        self.kinds = [FIELDS[n].kind if n in FIELDS else "str" for n in names]
        self.width = len(names)
        # Leaf columns of one tree cannot collide, so rows nest directly; an
        # object column (a JSON cell) may overlap a leaf column: unflatten checks.
        self._paths = [tuple(n.split(".")) for n in names]
        self._is_tree = "object" not in self.kinds

    def decode(self, cells: list[str] | Broken) -> tuple[dict[str, Any], list[FieldError]]:
        """One CSV record -> (nested data, problems found while typing)."""
        problems: list[FieldError] = []
        if isinstance(cells, Broken):
            return {}, [FieldError("(row)", cells.reason)]
        if len(cells) != self.width:
            problems.append(
                FieldError("(row)", f"has {len(cells)} cells but the header has {self.width}; check quoting and commas")
            )
        out: dict[str, Any] = {}
        for path, kind, text in zip(self._paths, self.kinds, cells, strict=False):
            if not text:
                continue  # empty cell: not in this patch
            if "\x00" in text or (not text.isascii() and _has_surrogate(text)):
                problems.append(
                    FieldError(".".join(path), "contains a NUL byte or bytes that are not UTF-8; re-save as UTF-8")
                )
                continue
            if kind == "str" and text != "null":
                value: Any = text
            else:
                try:
                    value = _cell(kind, text)
                except ValueError as exc:
                    problems.append(FieldError(".".join(path), str(exc)))
                    continue
            if not self._is_tree:
                out[".".join(path)] = value
                continue
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        return (out if self._is_tree else unflatten(out, problems)), problems


def _has_surrogate(text: str) -> bool:
    # surrogateescape maps undecodable bytes to U+DC80..U+DCFF
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _scan_csv(stream: IO[str]) -> tuple[list[str], Iterator[tuple[int, list[str] | Broken]]]:
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the CSV file is empty: it needs a header row with a meeting_id column") from None
    except csv.Error as exc:
        raise InputError(f"cannot read the CSV header: {exc}") from None

    def records() -> Iterator[tuple[int, list[str] | Broken]]:
        number = 0
        while True:
            number += 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield number, Broken(f"not valid CSV ({exc}); check quotes")
                continue
            if not cells:
                number -= 1  # a blank line is not a row
                continue
            yield number, cells

    return header, records()


# -- JSONL ------------------------------------------------------------------


def decode_json_line(line: bytes | Broken) -> tuple[dict[str, Any], list[FieldError]]:
    """One JSONL line -> (nested data, problems)."""
    if isinstance(line, Broken):
        return {}, [FieldError("(row)", line.reason)]
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return {}, [FieldError("(row)", f"not valid JSON ({exc.msg}); one JSON object per line")]
    if not isinstance(data, dict):
        return {}, [FieldError("(row)", f'is a JSON {type(data).__name__}, not an object; write {{"meeting_id": ...}}')]
    problems: list[FieldError] = []
    return unflatten(data, problems), problems


def _scan_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, bytes | Broken]]:
    for number, line in enumerate(stream, 1):
        if len(line) > MAX_RECORD_BYTES:
            yield number, Broken(f"line is {len(line) / 1e6:.1f} MB, over the 1 MiB limit for one row")
            continue
        if line.strip():
            yield number, line


# -- one entry point --------------------------------------------------------


def with_constants(decode: Decode, constants: Sequence[tuple[str, Any]]) -> Decode:
    """``decode`` that also merges ``--set`` constants into every row; a clash is a problem of the row."""

    def decode_with_constants(raw: Any) -> tuple[dict[str, Any], list[FieldError]]:
        data, problems = decode(raw)
        if any(p.field == "(row)" for p in problems):
            return data, problems
        data, clashes = merge_constants(data, constants)
        return data, problems + [FieldError(path, reason) for path, reason in clashes]

    return decode_with_constants


class Source:
    """An input file or stdin, opened for streaming.

    ``records()`` yields ``(row_number, raw)``; ``decode(raw)`` gives
    ``(data, problems)``. Use as a context manager.
    """

    def __init__(
        self,
        path: str,
        fmt: str | None = None,
        stdin: IO[bytes] | None = None,
        constants: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.path = path
        self.constants = tuple(constants)  # --set PATH=VALUE, merged into every decoded row
        self.format = detect_format(path, fmt)
        self._stdin = stdin
        self._file: IO[Any] | None = None

    def __enter__(self) -> Source:
        binary: IO[bytes]
        if self.path == STDIN:
            binary = self._stdin or sys.stdin.buffer
        else:
            try:
                binary = open(self.path, "rb")
            except OSError as exc:
                raise InputError(f"cannot open {self.path}: {exc.strerror}") from None
            self._file = binary
        if self.format == "csv":
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
            header, self._records = _scan_csv(text)
            self._decoder = CsvDecoder(header)
            self.decode = self._decoder.decode  # type: ignore[method-assign]
        else:
            self._records = _scan_jsonl(binary)
            self.decode = decode_json_line  # type: ignore[method-assign]
        if self.constants:
            self.decode = with_constants(self.decode, self.constants)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def records(self) -> Iterator[tuple[int, Any]]:
        """Raw records with their row numbers, in input order."""
        return self._records

    def decode(self, raw: Any) -> tuple[dict[str, Any], list[FieldError]]:  # replaced in __enter__
        """Decode one raw record into (nested data, problems)."""
        raise NotImplementedError
