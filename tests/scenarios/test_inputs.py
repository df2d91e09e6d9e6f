"""Input as people write it: Excel's CSVs, PowerShell's files, one rule for cells, honest counts."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batcher.commands.validate import validate_input
from batcher.core.rows import Row, RowError, parse_row
from batcher.input.duplicate_keys import keys_given_twice
from batcher.input.source import Source

from ..conftest import cli, run_cli

A, B, C = (
    "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b",
    "1c8f3b0d-5a2e-4b68-8b4f-2d3e4f5a6b7c",
    "2d904c1e-6b3f-4c79-9c50-3e4f5a6b7c8d",
)


def rows_of(path, fmt=None) -> list[Row | RowError]:
    """Every row of a file, decoded and checked (as validate does, duplicates aside)."""
    with Source(str(path), fmt) as source:
        out: list[Row | RowError] = []
        for number, raw in source.records():
            data, found = source.decode(raw)
            out.append(parse_row(number, data, None, found))
        return out


def problems(result: Row | RowError) -> list[str]:
    return [str(e) for e in result.errors] if isinstance(result, RowError) else []


# -- validate counts every line once, from a file or from stdin ---------------------


def test_validate_counts_duplicates_the_same_from_a_file_and_from_stdin(tmp_path):
    lines = [
        A,
        B,
        C,
        A,
        B,
        C,
        "not-a-uuid",
        "0ddba11a-0000-4000-8000-000000000001",
        "0ddba11a-0000-4000-8000-00000000000",
    ]
    content = "".join(f'{{"meeting_id": "{m}", "account_id": "acct"}}\n' for m in lines).encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    from_file = cli("validate", str(path))
    from_stdin = cli("validate", "-", stdin=content)
    want = "batcher: 9 rows: 4 valid, 5 invalid"
    assert from_file.returncode == from_stdin.returncode == 2
    assert want in from_file.stderr and want in from_stdin.stderr, (from_file.stderr, from_stdin.stderr)


def test_validate_input_marks_only_end_of_file_duplicates_as_late(tmp_path):
    content = f'{{"meeting_id": "{A}"}}\n{{"meeting_id": "{A}"}}\n'.encode()
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    import io

    from_stdin = list(validate_input("-", stdin=io.BytesIO(content)))
    from_file = list(validate_input(str(path)))
    assert [type(r).__name__ for r in from_stdin] == ["Row", "RowError"]
    assert not from_stdin[1].is_duplicate  # caught in place: never counted as valid first
    assert [type(r).__name__ for r in from_file] == ["Row", "Row", "RowError"] and from_file[2].is_duplicate


# -- Excel, PowerShell, locales -----------------------------------------------------


def test_excel_trailing_empty_headed_columns_are_ignored(tmp_path):
    path = tmp_path / "in.csv"
    path.write_bytes(f"\ufeffmeeting_id,title,,\r\n{A},x,,\r\n{B},y, ,\r\n".encode())
    rows = rows_of(path)
    assert [r.patch for r in rows if isinstance(r, Row)] == [{"title": "x"}, {"title": "y"}]
    assert cli("validate", str(path)).returncode == 0


def test_a_row_may_stop_before_trailing_empty_headed_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(f"meeting_id,title,,\n{A},x\n{B},y,\n{C}\n", encoding="utf-8")
    first, second, third = rows_of(path)
    assert isinstance(first, Row) and isinstance(second, Row)
    assert problems(third) == ["(row): has 1 cells but the header has 4; check quoting and commas"]


def test_a_value_under_an_empty_header_is_an_error_naming_the_column(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(f"meeting_id,title,,\n{A},x,,\n{B},y,,oops\n", encoding="utf-8")
    first, second = rows_of(path)
    assert isinstance(first, Row)
    assert problems(second) == ["column 4: has a value but no header; name the column or delete it"]


@pytest.mark.parametrize(("sep", "name"), [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_or_tab_separated_csv_says_what_it_looks_like(tmp_path, sep, name):
    path = tmp_path / "in.csv"
    path.write_text(f"meeting_id{sep}title\n{A}{sep}x\n", encoding="utf-8")
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert f"looks {name}-separated" in result.stderr and "CSV UTF-8 (Comma delimited)" in result.stderr


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_utf16_files_say_how_to_save_them(tmp_path, encoding, suffix):
    path = tmp_path / f"in.{suffix}"
    text = f"meeting_id,title\n{A},x\n" if suffix == "csv" else f'{{"meeting_id": "{A}"}}\n'
    path.write_bytes(text.encode(encoding))
    result = cli("validate", str(path))
    assert result.returncode == 2
    assert "is UTF-16 text" in result.stderr and "save it as UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_jsonl_with_a_utf8_bom_is_accepted_with_row_numbers_kept(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + f'{{"meeting_id": "{A}", "title": "x"}}\n{{"meeting_id": "{B}"}}\n'.encode())
    rows = rows_of(path)
    assert [(r.number, type(r).__name__) for r in rows] == [(1, "Row"), (2, "Row")]
    assert cli("validate", str(path)).returncode == 0


# -- duplicate JSON keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "named"),
    [
        (f'{{"meeting_id": "{A}", "meeting_id": "{B}"}}', ["meeting_id"]),
        (f'{{"meeting_id": "{A}", "title": "a", "title": "b"}}', ["title"]),
        (
            f'{{"meeting_id": "{A}", "ai_config": {{"transcription": {{"language": "fr", "language": "de"}}}}}}',
            ["ai_config.transcription.language"],
        ),
        (f'{{"meeting_id" : "{A}", "title" :"a", "title"\t: "b"}}', ["title"]),
    ],
    ids=["meeting_id", "top level", "nested", "spaced colons"],
)
def test_a_key_given_twice_makes_the_row_invalid_naming_it(tmp_path, line, named):
    path = tmp_path / "in.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    [result] = rows_of(path)
    assert isinstance(result, RowError)
    assert [e.field for e in result.errors if "given twice" in e.reason] == named


@pytest.mark.parametrize(
    "line",
    [
        f'{{"meeting_id": "{A}", "title": "a \\"title\\": b: c"}}',
        f'{{"meeting_id": "{A}", "recording_config": {{"live_streaming_config": {{"rtmp_url": "rtmp://h:1935/x"}}}}}}',
        f'{{"meeting_id": "{A}", "ai_config": {{"transcription": {{"keywords": ["a:b", "title"]}}}}}}',
    ],
    ids=["colons in a string", "url", "array"],
)
def test_colons_inside_values_are_not_duplicate_keys(tmp_path, line):
    path = tmp_path / "in.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    [result] = rows_of(path)
    assert isinstance(result, Row), problems(result)


# -- one rule for CSV cells ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "cell", "value"),
    [
        ("ai_config.summarization.word_limit", "300", 300),
        ("ai_config.summarization.word_limit", "  300  ", 300),
        ("session_keep_alive_time_in_secs", "  600  ", 600),
        ("recording_config.max_seconds", "3.6e3", 3600.0),
        ("recording_config.max_seconds", "-0.5e2", None),  # a JSON number, refused by its bound
        ("persist_chat", " true ", True),
        ("persist_chat", "FALSE", False),
        ("record_on_start", " null ", None),
        ("title", "  spaced  ", "  spaced  "),
    ],
)
def test_cells_typed_by_one_rule_are_accepted(tmp_path, column, cell, value):
    path = tmp_path / "in.csv"
    path.write_text(f'meeting_id,{column}\n{A},"{cell}"\n', encoding="utf-8")
    [result] = rows_of(path)
    if value is None and column == "recording_config.max_seconds":
        assert problems(result) == ["recording_config.max_seconds: must be between 60 and 86400, got -50.0"]
        return
    assert isinstance(result, Row), problems(result)
    node = result.patch
    for part in column.split("."):
        node = node[part]
    assert node == value and type(node) is type(value)


@pytest.mark.parametrize(
    ("column", "cell", "reason"),
    [
        ("ai_config.summarization.word_limit", "1_000", 'got "1_000"'),
        ("ai_config.summarization.word_limit", "+200", 'got "+200"'),
        ("ai_config.summarization.word_limit", "0200", 'got "0200"'),
        ("ai_config.summarization.word_limit", "300.0", 'got "300.0"'),
        ("session_keep_alive_time_in_secs", "1_000", 'got "1_000"'),
        ("session_keep_alive_time_in_secs", "+200", 'got "+200"'),
        ("session_keep_alive_time_in_secs", "0200", 'got "0200"'),
        ("session_keep_alive_time_in_secs", ".5", 'got ".5"'),
        ("session_keep_alive_time_in_secs", "nan", 'got "nan"'),
        ("session_keep_alive_time_in_secs", "1e999", 'must be a finite number, got "1e999"'),
        ("persist_chat", "yes", 'must be true or false, got "yes"'),
    ],
)
def test_cells_not_spelt_as_json_are_refused_in_json_spelling(tmp_path, column, cell, reason):
    path = tmp_path / "in.csv"
    path.write_text(f"meeting_id,{column}\n{A},{cell}\n", encoding="utf-8")
    [result] = rows_of(path)
    assert isinstance(result, RowError)
    assert any(reason in p for p in problems(result)), problems(result)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"title": True}, "title: must be a string, got true"),
        ({"persist_chat": "yes"}, 'persist_chat: must be true or false, got "yes"'),
        ({"ai_config": {"transcription": {"language": "xx"}}}, 'got "xx"'),
        ({"persist_chat": None}, "persist_chat: null is not allowed here"),
    ],
)
def test_schema_messages_use_json_spelling(body, message):
    result = parse_row(1, {"meeting_id": A, **body}, "acct")
    assert any(message in p for p in problems(result)), problems(result)
    assert not any("True" in p or "None" in p or "'" in p for p in problems(result))


# -- integers that JSON and the API can carry ---------------------------------------------------

WIDTH = "recording_config.video_config.watermark.size.width"


@pytest.mark.parametrize("cell", ["99999999999999999999999", "9007199254740992", "18446744073709551615"])
def test_an_integer_beyond_2_pow_53_is_invalid_in_csv_and_jsonl(tmp_path, cell):
    csv_path = tmp_path / "in.csv"
    csv_path.write_text(f"meeting_id,account_id,{WIDTH}\n{A},acct,{cell}\n", encoding="utf-8")
    jsonl_path = tmp_path / "in.jsonl"
    size = f'{{"size": {{"width": {cell}}}}}'
    jsonl_path.write_text(
        f'{{"meeting_id": "{A}", "account_id": "acct", "recording_config": {{"video_config": {{"watermark": {size}}}}}}}\n'
    )
    for path in (csv_path, jsonl_path):
        result = cli("validate", str(path))
        assert result.returncode == 2, result.stderr
        assert WIDTH in result.stderr


def test_the_largest_safe_integer_is_valid(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(f"meeting_id,{WIDTH}\n{A},9007199254740991\n", encoding="utf-8")
    [result] = rows_of(path)
    assert isinstance(result, Row), problems(result)


@pytest.mark.parametrize(
    ("suffix", "template"),
    [
        ("csv", f"meeting_id,{WIDTH}\n{{mid}},99999999999999999999999\n"),
        ("jsonl", '{{"meeting_id": "{mid}", "' + WIDTH + '": 18446744073709551615}}\n'),
    ],
)
@pytest.mark.parametrize("command", ["run", "plan"])
async def test_run_and_plan_refuse_a_big_integer_like_validate_and_leave_no_state(
    server, tmp_path, suffix, template, command
):
    [mid] = server.add()
    path = tmp_path / f"in.{suffix}"
    path.write_text(template.format(mid=mid), encoding="utf-8")
    code, out, err = await run_cli(command, str(path), base_url=server.base_url)
    assert "Traceback" not in err and "Integer exceeds" not in err, err
    assert WIDTH in err + out
    assert code == (2 if command == "run" else 1)
    assert server.api.requests["PUT"] == 0
    assert not (tmp_path / f"in.{suffix}.state.db").exists()


# -- the duplicate-key check never misses and never invents ------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(alphabet='ab:" \\/{}', max_size=8))
json_objects = st.recursive(
    st.dictionaries(st.text(alphabet="ab:", min_size=1, max_size=3), json_scalars, max_size=4),
    lambda inner: st.dictionaries(
        st.text(alphabet="ab:", min_size=1, max_size=3), inner | st.lists(inner, max_size=2), max_size=4
    ),
    max_leaves=12,
)
SEPARATORS = [(",", ":"), (", ", ": "), (" , ", " : "), (",", "\t:")]


@given(json_objects, st.sampled_from(SEPARATORS))
def test_keys_given_twice_finds_nothing_in_a_line_without_duplicates(obj, separators):
    line = json.dumps(obj, separators=separators).encode()
    assert keys_given_twice(line, orjson.loads(line)) == []


@given(json_objects.filter(bool), st.sampled_from(SEPARATORS), st.data())
def test_keys_given_twice_finds_a_repeated_top_level_key(obj, separators, data):
    key = data.draw(st.sampled_from(sorted(obj)))
    comma, colon = separators
    body = json.dumps(obj, separators=separators)
    line = ("{" + json.dumps(key) + colon + "0" + comma + body[1:]).encode()
    assert key in keys_given_twice(line, orjson.loads(line))
