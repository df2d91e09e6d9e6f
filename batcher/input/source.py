"""Streaming CSV / JSONL readers: one ``(row_number, data, problems)`` at a time.

Reading is split in two so that resuming a million-row job is cheap: ``scan``
yields *raw* records (a list of cells, a line of bytes) with their row
numbers, and ``Decoder.decode`` turns one raw record into a nested dict,
typing CSV cells by the schema. A resumed run decodes only the rows it sends.

Row numbers follow the contract: CSV data rows count from 1 after the header
(a quoted cell may span lines; it is still one row); JSONL rows are line
numbers from 1, blank lines skipped but counted.

Input as people write it: a UTF-8 BOM is ignored (CSV and JSONL); columns
with an empty header that hold no value anywhere (Excel's trailing commas)
are ignored; semicolon- or tab-separated and UTF-16 files are refused with a
sentence saying what the file looks like and how to save it. CSV cells follow
one rule: a string cell is taken exactly as written; every other kind ignores
surrounding whitespace and is spelt as JSON spells it (integers
``-?(0|[1-9][0-9]*)``, numbers as JSON numbers, ``true``/``false`` in any
case, ``null``). A JSON object that names a key twice is an invalid row.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from ..core.rowrules import Decode, FieldError, with_constants
from ..core.rows import show_value
from ..core.schema import FIELDS, MAX_JSON_INT, ROW_KEYS, closest_path
from ..errors import InputError
from .duplicate_keys import keys_given_twice
from .stdin_lines import LinesInThread, looks_utf16

MAX_RECORD_BYTES = 1 << 20  # one meeting's patch is a few KB; 1 MiB is surely a mistake
csv.field_size_limit(MAX_RECORD_BYTES)

STDIN = "-"


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
# JSON's spelling, nothing else: no "+", no "_", no leading zeros, no spaces inside
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _cell(kind: str, text: str) -> Any:
    """Type one non-empty CSV cell by its field kind; raise ValueError with the fix.

    A string is taken as written; any other kind has had its surrounding whitespace removed.
    """
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
        raise ValueError(f"must be true or false, got {show_value(text)}")
    if kind == "int":
        if not _INT.fullmatch(text):
            raise ValueError(f"must be a whole number as JSON writes it (no +, _ or leading 0), got {show_value(text)}")
        return _json_int(text)
    if kind == "number":
        if _INT.fullmatch(text):
            return _json_int(text)
        if not _NUMBER.fullmatch(text):
            raise ValueError(f"must be a number as JSON writes it (such as 3600 or 0.5), got {show_value(text)}")
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {show_value(text)}")
        return value
    try:  # array / object: JSON in the cell
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        want = 'a JSON array such as ["a","b"]' if kind == "array" else "a JSON object or null"
        raise ValueError(f"must be {want}") from None
    return value


def _looks_like(names: list[str]) -> str | None:
    """What a header without a meeting_id column looks like, when it is a known mistake."""
    for sep, what in ((";", "semicolon"), ("\t", "tab")):
        if any(sep in name and "meeting_id" in name for name in names):
            return (
                f"the CSV looks {what}-separated (Excel writes that in some locales); batcher reads commas: "
                'save it as "CSV UTF-8 (Comma delimited)", or write JSONL'
            )
    return None


def _json_int(text: str) -> int:
    # Refused here, not only by the schema: a larger integer must never reach a patch, which
    # the state and the report serialise (orjson stops at 64 bits).
    value = int(text)
    if abs(value) > MAX_JSON_INT:
        raise ValueError(
            f"must be at most {MAX_JSON_INT} (2^53-1, the largest integer JSON carries exactly), got {text}"
        )
    return value


class CsvDecoder:
    """Types the cells of one CSV layout by the schema."""

    def __init__(self, header: list[str]) -> None:
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        names = [h.strip() for h in header]
        if "meeting_id" not in names:
            raise InputError(_looks_like(names) or "the CSV header has no meeting_id column (row 0); add one")
        problems = []
        for name in names:
            if not name:
                continue  # an empty-headed column: fine while it holds nothing (see decode)
            if name not in FIELDS and name not in ROW_KEYS and name != "status":  # status: patch mode only
                hint = closest_path(name)
                fix = f"did you mean '{hint}'?" if hint else "remove it or use a dotted path from the spec"
                problems.append(f"unknown column {name!r}: {fix}")
        seen: set[str] = set()
        for name in names:
            if name in seen and name:
                problems.append(f"column {name!r} appears twice in the header")
            seen.add(name)
        if problems:
            raise InputError("CSV header (row 0): " + "; ".join(problems))
        self.names = names
        # "" marks an empty-headed column (Excel's trailing commas): a value there is an error
        self.kinds = [FIELDS[n].kind if n in FIELDS else ("" if not n else "str") for n in names]
        self.width = len(names)
        # a row may stop before trailing empty-headed columns (Excel is not always consistent)
        self._min_width = max(i for i, n in enumerate(names) if n) + 1
        # Leaf columns of one tree cannot collide, so rows nest directly; an
        # object column (a JSON cell) may overlap a leaf column: unflatten checks.
        self._paths = [tuple(n.split(".")) for n in names]
        self._is_tree = "object" not in self.kinds

    def decode(self, cells: list[str] | Broken) -> tuple[dict[str, Any], list[FieldError]]:
        """One CSV record -> (nested data, problems found while typing)."""
        problems: list[FieldError] = []
        if isinstance(cells, Broken):
            return {}, [FieldError("(row)", cells.reason)]
        if len(cells) != self.width and not self._min_width <= len(cells) <= self.width:
            problems.append(
                FieldError("(row)", f"has {len(cells)} cells but the header has {self.width}; check quoting and commas")
            )
        out: dict[str, Any] = {}
        for column, (path, kind, text) in enumerate(zip(self._paths, self.kinds, cells, strict=False), 1):
            if not text:
                continue  # empty cell: not in this patch
            if kind != "str":
                text = text.strip()  # whitespace around a number, boolean, null or JSON cell is not part of it
                if not text:
                    continue
                if not kind:
                    problems.append(
                        FieldError(f"column {column}", "has a value but no header; name the column or delete it")
                    )
                    continue
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
            if not any(cells):
                number -= 1  # a blank line is not a row, nor is one of empty cells only (Excel's ",,,,")
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
    problems = [FieldError(path, "is given twice in one object; keep one") for path in keys_given_twice(line, data)]
    return unflatten(data, problems), problems


_UTF8_BOM = b"\xef\xbb\xbf"


def _scan_jsonl(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes | Broken]]:
    for number, line in enumerate(stream, 1):
        if number == 1 and line.startswith(_UTF8_BOM):
            line = line[len(_UTF8_BOM) :]  # PowerShell and Notepad write one
        if len(line) > MAX_RECORD_BYTES:
            yield number, Broken(f"line is {len(line) / 1e6:.1f} MB, over the 1 MiB limit for one row")
            continue
        if line.strip():
            yield number, line


# -- one entry point --------------------------------------------------------


def _refusing_utf16_at_first(
    lines: LinesInThread, records: Iterator[tuple[int, bytes | Broken]]
) -> Iterator[tuple[int, bytes | Broken]]:
    """``records``, after the UTF-16 check of the first bytes the thread read (``_refuse_utf16``
    cannot peek at a stream whose first bytes may not have come yet)."""
    for index, record in enumerate(records):
        if index == 0 and looks_utf16(lines.head):
            _utf16_error(STDIN)
        yield record
    if looks_utf16(lines.head):
        _utf16_error(STDIN)


def _refuse_utf16(binary: IO[bytes], path: str) -> None:
    """UTF-16 (a BOM, or NULs between ASCII letters) is never a CSV/JSONL batcher can read: say so."""
    peek = getattr(binary, "peek", None)
    head = peek(4)[:4] if peek is not None else b""
    if looks_utf16(head):
        _utf16_error(path)


def _utf16_error(path: str) -> None:
    name = "stdin" if path == STDIN else path
    raise InputError(
        f"{name} is UTF-16 text (Excel's \"Unicode Text\", PowerShell 5's > redirect); save it as UTF-8: "
        'Excel "CSV UTF-8 (Comma delimited)", or PowerShell Out-File -Encoding utf8'
    )


class Source:
    """An input file or stdin, opened for streaming.

    ``records()`` yields ``(row_number, raw)``; ``decode(raw)`` gives
    ``(data, problems)``. Use as a context manager.
    """

    # Set by ``__enter__`` for the file's format: ``CsvDecoder.decode`` or ``decode_json_line``, wrapped by
    # the ``--set`` constants: an attribute the format picks when the file opens, so a row costs one call.
    decode: Decode
    _records: Iterator[tuple[int, Any]]  # set by ``__enter__``

    def __init__(
        self,
        path: str,
        fmt: str | None = None,
        stdin: IO[bytes] | None = None,
        constants: Sequence[Any] = (),
        *,
        is_threaded: bool = False,
    ) -> None:
        self.path = path
        self.constants = tuple(constants)  # --set PATH=VALUE pairs, merged into every decoded row
        self.format = detect_format(path, fmt)
        self._stdin = stdin
        self._file: IO[Any] | None = None
        # stdin read by a thread (stdin_lines.py), so a stalled producer never blocks the event loop:
        # the feeder awaits ``ready`` before each row
        self.lines: LinesInThread | None = None
        self._is_threaded = is_threaded and path == STDIN

    async def ready(self, stop: asyncio.Event) -> bool:
        """True when the next row can be read without blocking; False when ``stop`` came first."""
        return True if self.lines is None else await self.lines.ready(stop)

    def __enter__(self) -> Source:
        binary: IO[bytes]
        if self.path == STDIN:
            binary = self._stdin or sys.stdin.buffer
            if self._is_threaded:
                self.lines = LinesInThread(binary)
        else:
            try:
                binary = open(self.path, "rb")
            except OSError as exc:
                raise InputError(f"cannot open {self.path}: {exc.strerror}") from None
            self._file = binary
        if self.lines is None:
            _refuse_utf16(binary, self.path)
        if self.format == "csv" and self.lines is None:
            text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
            header, self._records = _scan_csv(text)
            self._decoder = CsvDecoder(header)
            self.decode = self._decoder.decode
        elif self.lines is not None:  # JSONL on stdin (a CSV on stdin is read on the loop, as before)
            self._records = _refusing_utf16_at_first(self.lines, _scan_jsonl(self.lines))
            self.decode = decode_json_line
        else:
            self._records = _scan_jsonl(binary)
            self.decode = decode_json_line
        if self.constants:
            self.decode = with_constants(self.decode, self.constants)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def records(self) -> Iterator[tuple[int, Any]]:
        """Raw records with their row numbers, in input order."""
        return self._records
