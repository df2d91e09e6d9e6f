"""Streaming readers: CSV typing by schema, JSONL nesting, row numbers, bad bytes."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from batcher.errors import InputError
from batcher.input.source import Source, detect_format

MID = "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"


def decode_all(path, fmt=None):
    with Source(str(path), fmt) as source:
        return [(n, *source.decode(raw)) for n, raw in source.records()]


def test_csv_cells_are_typed_by_schema(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(
        "meeting_id,persist_chat,ai_config.summarization.word_limit,session_keep_alive_time_in_secs,"
        "ai_config.transcription.keywords,title\n"
        f'{MID},TRUE,300,90.5,"[""a"",""b""]",null\n',
        encoding="utf-8",
    )
    [(n, data, problems)] = decode_all(p)
    assert n == 1 and problems == []
    assert data == {
        "meeting_id": MID,
        "persist_chat": True,
        "ai_config": {"summarization": {"word_limit": 300}, "transcription": {"keywords": ["a", "b"]}},
        "session_keep_alive_time_in_secs": 90.5,
        "title": None,
    }


def test_empty_cell_means_not_in_patch(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(f"meeting_id,title,persist_chat\n{MID},,\n", encoding="utf-8")
    assert decode_all(p)[0][1] == {"meeting_id": MID}


def test_bom_crlf_quoted_newline_and_row_numbers(tmp_path):
    p = tmp_path / "in.csv"
    p.write_bytes(f'\ufeffmeeting_id,title\r\n{MID},"two\r\nlines, and a comma"\r\n{MID},x\r\n'.encode())
    rows = decode_all(p)
    assert [r[0] for r in rows] == [1, 2]
    assert rows[0][1]["title"] == "two\r\nlines, and a comma"


@pytest.mark.parametrize(
    ("cell", "reason"),
    [("maybe", "true or false"), ("1.5", "whole number"), ("1_000", "whole number"), ("[1,", "JSON")],
    ids=["bool", "int float", "int underscore", "bad json"],
)
def test_bad_cells_are_named(tmp_path, cell, reason):
    header = {"maybe": "persist_chat", "[1,": "ai_config.transcription.keywords"}.get(
        cell, "ai_config.summarization.word_limit"
    )
    p = tmp_path / "in.csv"
    p.write_text(f'meeting_id,{header}\n{MID},"{cell}"\n', encoding="utf-8")
    [(_, _, problems)] = decode_all(p)
    assert problems[0].field == header and reason in problems[0].reason


def test_ragged_row_is_an_error_not_a_shift(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(f"meeting_id,title\n{MID},a,extra\n", encoding="utf-8")
    [(_, _, problems)] = decode_all(p)
    assert "3 cells but the header has 2" in problems[0].reason


def test_non_utf8_and_nul_are_row_errors_and_reading_goes_on(tmp_path):
    p = tmp_path / "in.csv"
    p.write_bytes(
        b"meeting_id,title\n" + MID.encode() + b",caf\xe9\n" + MID.encode() + b",a\x00b\n" + MID.encode() + b",ok\n"
    )
    rows = decode_all(p)
    assert [bool(r[2]) for r in rows] == [True, True, False]
    assert "UTF-8" in rows[0][2][0].reason


def test_unknown_column_stops_before_anything_with_closest_name(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text(f"meeting_id,ai_config.transcription.langauge\n{MID},fr\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"ai_config\.transcription\.language"):
        decode_all(p)


@pytest.mark.parametrize(
    ("content", "match"), [("", "empty"), ("title\nx\n", "meeting_id")], ids=["empty", "no id column"]
)
def test_unusable_csv_header(tmp_path, content, match):
    p = tmp_path / "in.csv"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=match):
        decode_all(p)


def test_header_only_csv_has_no_rows(tmp_path):
    p = tmp_path / "in.csv"
    p.write_text("meeting_id,title\n", encoding="utf-8")
    assert decode_all(p) == []


def test_jsonl_dotted_keys_equal_nesting_and_blank_lines_count(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text(
        f'{{"meeting_id": "{MID}", "ai_config.transcription.language": "fr"}}\n\n'
        f'{{"meeting_id": "{MID}", "ai_config": {{"transcription": {{"language": "fr"}}}}}}\n',
        encoding="utf-8",
    )
    rows = decode_all(p)
    assert [r[0] for r in rows] == [1, 3]
    assert rows[0][1] == rows[1][1]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"[1, 2]", "not an object"),
        (b"{nope", "not valid JSON"),
        (b'"text"', "not an object"),
        (b"{\xff\xfe}", "not valid JSON"),
    ],
    ids=["array", "broken", "string", "bad bytes"],
)
def test_bad_json_lines(tmp_path, line, reason):
    p = tmp_path / "in.jsonl"
    p.write_bytes(line + b"\n")
    [(_, _, problems)] = decode_all(p)
    assert reason in problems[0].reason


def test_dotted_and_nested_keys_that_collide(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_text(
        f'{{"meeting_id": "{MID}", "ai_config.transcription.language": "fr", "ai_config": {{"transcription": {{"language": "de"}}}}}}\n',
        encoding="utf-8",
    )
    [(_, _, problems)] = decode_all(p)
    assert problems and "ai_config" in problems[0].field


def test_five_megabyte_line_is_one_row_error(tmp_path):
    p = tmp_path / "in.jsonl"
    p.write_bytes(
        b'{"meeting_id": "'
        + MID.encode()
        + b'", "title": "'
        + b"x" * 5_000_000
        + b'"}\n{"meeting_id": "'
        + MID.encode()
        + b'"}\n'
    )
    rows = decode_all(p)
    assert "1 MiB" in rows[0][2][0].reason and rows[1][2] == []


def test_stdin_is_jsonl():
    stdin = io.BytesIO(f'{{"meeting_id": "{MID}"}}\n'.encode())
    with Source("-", None, stdin) as source:
        assert [source.decode(raw)[0] for _, raw in source.records()] == [{"meeting_id": MID}]


def test_format_detection():
    assert (
        detect_format("x.CSV") == "csv"
        and detect_format("x.ndjson") == "jsonl"
        and detect_format("x.txt", "csv") == "csv"
    )
    with pytest.raises(InputError, match="--format"):
        detect_format("x.txt")


def test_an_excel_row_of_empty_cells_is_skipped_like_a_blank_line(tmp_path):
    """Guards the CSV reader: a row of empty cells (as Excel writes them) is a blank line, not an invalid row."""
    src = tmp_path / "x.csv"
    src.write_bytes(
        b"\xef\xbb\xbfmeeting_id,title,record_on_start,,\r\n0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b,Excel,TRUE,,\r\n,,,,\r\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "validate", str(src)], capture_output=True, text=True, env={"PATH": "/bin"}
    )
    assert proc.returncode == 0 and "1 rows: 1 valid, 0 invalid" in proc.stderr, proc.stderr


# -- properties --------------------------------------------------------------

import csv as _csv  # noqa: E402

import orjson  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

uuids = st.uuids().map(str)
titles = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=40
).filter(lambda t: t != "null")
csv_rows = st.lists(
    st.fixed_dictionaries(
        {"meeting_id": uuids, "title": titles, "persist_chat": st.booleans(), "word_limit": st.integers(150, 1000)}
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(csv_rows, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_any_csv_written_by_a_csv_writer_reads_back_typed(tmp_path_factory, rows, newline, bom):
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
        # csv.writer quotes a bare \r only when it is part of the line terminator
        writer = _csv.writer(
            out, lineterminator=newline, quoting=_csv.QUOTE_MINIMAL if newline == "\r\n" else _csv.QUOTE_ALL
        )
        writer.writerow(["meeting_id", "title", "persist_chat", "ai_config.summarization.word_limit"])
        for r in rows:
            writer.writerow([r["meeting_id"], r["title"], "TRUE" if r["persist_chat"] else "false", r["word_limit"]])
    got = decode_all(path)
    assert [n for n, _, _ in got] == list(range(1, len(rows) + 1))
    assert all(problems == [] for _, _, problems in got)
    assert [data for _, data, _ in got] == [
        {
            "meeting_id": r["meeting_id"],
            "title": r["title"],
            "persist_chat": r["persist_chat"],
            "ai_config": {"summarization": {"word_limit": r["word_limit"]}},
        }
        for r in rows
    ]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("abc", min_size=1, max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.dictionaries(st.text("xyz", min_size=1, max_size=3), json_values, max_size=4), max_size=8))
def test_any_jsonl_of_objects_reads_back_as_written_with_line_numbers(tmp_path_factory, objects):
    path = tmp_path_factory.mktemp("jsonl") / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(o) + b"\n\n" for o in objects))  # blank lines in between
    got = decode_all(path)
    assert [n for n, _, _ in got] == [2 * i + 1 for i in range(len(objects))]
    assert [data for _, data, _ in got] == objects


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b"]),
        st.dictionaries(st.sampled_from(["c", "d"]), st.integers(-(2**53), 2**53), min_size=1),
        min_size=1,
    )
)
def test_dotted_keys_mean_the_same_as_nesting(tmp_path_factory, nested):
    dotted = {f"{k}.{k2}": v for k, inner in nested.items() for k2, v in inner.items()}
    path = tmp_path_factory.mktemp("jsonl") / "in.jsonl"
    path.write_bytes(orjson.dumps(nested) + b"\n" + orjson.dumps(dotted) + b"\n")
    (_, first, _), (_, second, problems) = decode_all(path)
    assert first == second and problems == []
