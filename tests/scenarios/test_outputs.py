"""Fail before sending, in one sentence: every output checked first, no output clobbers an input.

Each test runs the real CLI (a subprocess) against the fake API and checks three things: exit 2
with one ``batcher: error:`` sentence, nothing sent (the fake API saw no request), and nothing
left behind (no state file, no lock, the input untouched).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from batcher.run.engine import run_job

from ..conftest import TOKEN, cli, config, outcomes, run_cli, write_jsonl

CSV_TEXT = "meeting_id,title\n{mid},new title\n"


def one_sentence(stderr: str) -> str:
    """The error line; fails when there is a traceback or more than one line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("batcher: error: "), stderr
    return lines[0]


def make_input(server, tmp_path: Path) -> tuple[str, Path]:
    [mid] = server.add(title="old")
    src = tmp_path / "in.csv"
    src.write_text(CSV_TEXT.format(mid=mid), encoding="utf-8")
    return mid, src


async def assert_refused(server, src: Path, *args: str, says: str) -> None:
    before = src.read_bytes()
    code, _, err = await run_cli(*args, base_url=server.base_url)
    assert code == 2, err
    assert says in one_sentence(err)
    assert sum(server.api.requests.values()) == 0, "something was sent"
    assert src.read_bytes() == before, "the input was changed"


# -- output locations ----------------------------------------------------------


@pytest.mark.parametrize("flag", ["--report", "--summary-json", "--results", "--state"])
async def test_an_output_in_a_missing_directory_is_refused_before_sending(server, tmp_path, flag):
    _, src = make_input(server, tmp_path)
    missing = tmp_path / "no-such-dir" / "out.file"
    await assert_refused(server, src, "run", str(src), flag, str(missing), says="does not exist")
    assert not missing.parent.exists()
    assert not (tmp_path / "in.csv.state.db").exists(), "a half-made state file was left behind"


async def test_plan_out_in_a_missing_directory_is_refused_before_any_get(server, tmp_path):
    _, src = make_input(server, tmp_path)
    await assert_refused(server, src, "plan", str(src), "--out", str(tmp_path / "nope" / "plan.jsonl"), says="--out")


async def test_an_output_that_is_a_directory_is_refused(server, tmp_path):
    _, src = make_input(server, tmp_path)
    await assert_refused(server, src, "run", str(src), "--report", str(tmp_path), says="is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
async def test_an_input_in_a_read_only_directory_needs_its_default_report_writable(server, tmp_path):
    (tmp_path / "ro").mkdir()
    _, src = make_input(server, tmp_path / "ro")
    os.chmod(src.parent, 0o555)
    try:
        await assert_refused(
            server, src, "run", str(src), "--state", str(tmp_path / "s.db"), says="the report (default"
        )
    finally:
        os.chmod(src.parent, 0o755)


async def test_a_state_file_that_is_not_sqlite_is_refused_and_left_untouched(server, tmp_path):
    _, src = make_input(server, tmp_path)
    other = tmp_path / "french.csv"
    other.write_text("meeting_id,ai_config.transcription.language\n", encoding="utf-8")
    before = other.read_bytes()
    await assert_refused(server, src, "run", str(src), "--state", str(other), says="not SQLite")
    assert other.read_bytes() == before
    assert not Path(f"{other}-wal").exists() and not Path(f"{other}-shm").exists()


def test_rollback_with_a_state_that_is_not_sqlite_is_one_sentence_and_untouched(tmp_path):
    other = tmp_path / "french.csv"
    other.write_text("meeting_id,ai_config.transcription.language\nx,fr\n", encoding="utf-8")
    before = other.read_bytes()
    result = cli("rollback", "--state", str(other), "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "not SQLite" in one_sentence(result.stderr)
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["french.csv"], "rollback left files behind"


async def test_a_refused_run_leaves_no_lock_so_the_fixed_command_runs(server, tmp_path):
    mid, src = make_input(server, tmp_path)
    await assert_refused(
        server, src, "run", str(src), "--summary-json", str(tmp_path / "x" / "s.json"), says="--summary-json"
    )
    code, _, err = await run_cli("run", str(src), "--summary-json", str(tmp_path / "s.json"), base_url=server.base_url)
    assert code == 0, err
    assert server.doc(mid)["title"] == "new title"
    assert outcomes(tmp_path / "in.csv.state.db") == {"succeeded": 1}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "cannot open"),
        ("meeting_id,colour\n", "unknown column"),
        ("meeting_id;title\n", "semicolon-separated"),
        ("meeting_id,title\n".encode("utf-16"), "UTF-16"),
    ],
    ids=["missing", "unknown column", "semicolons", "utf-16"],
)
async def test_an_unreadable_input_leaves_no_state_file(server, tmp_path, content, says):
    src = tmp_path / "in.csv"
    if isinstance(content, str):
        src.write_text(content, encoding="utf-8")
    elif content is not None:
        src.write_bytes(content)
    code, _, err = await run_cli("run", str(src), base_url=server.base_url)
    assert code == 2 and says in one_sentence(err)
    assert not (tmp_path / "in.csv.state.db").exists()


# -- outputs never clobber inputs ------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("plan", "--out"),
        ("run", "--report"),
        ("run", "--summary-json"),
        ("run", "--results"),
        ("run", "--state"),
    ],
)
async def test_an_output_naming_the_input_is_refused_and_the_input_survives(server, tmp_path, command, flag):
    _, src = make_input(server, tmp_path)
    await assert_refused(server, src, command, str(src), flag, str(src), says="same file as the input")


@pytest.mark.parametrize("spelling", ["dotted", "symlink"])
async def test_the_input_is_recognised_through_dot_paths_and_symlinks(server, tmp_path, spelling):
    _, src = make_input(server, tmp_path)
    if spelling == "dotted":
        other = str(tmp_path / "sub" / ".." / "." / "in.csv")
        (tmp_path / "sub").mkdir()
    else:
        other = str(tmp_path / "link.csv")
        os.symlink(src, other)
    await assert_refused(server, src, "plan", str(src), "--out", other, says="same file as the input")


async def test_two_outputs_of_one_command_may_not_be_the_same_file(server, tmp_path):
    _, src = make_input(server, tmp_path)
    same = str(tmp_path / "out.jsonl")
    await assert_refused(server, src, "run", str(src), "--report", same, "--results", same, says="same file as --")


async def test_an_output_naming_the_token_file_is_refused(server, tmp_path):
    _, src = make_input(server, tmp_path)
    token = tmp_path / "token.txt"
    token.write_text("secret-token\n")
    token.chmod(0o600)
    await assert_refused(
        server,
        src,
        "run",
        str(src),
        "--token-file",
        str(token),
        "--report",
        str(token),
        says="same file as --token-file",
    )
    assert token.read_text() == "secret-token\n"


async def test_report_naming_the_state_is_refused(server, tmp_path):
    _, src = make_input(server, tmp_path)
    state = str(tmp_path / "s.db")
    await assert_refused(server, src, "run", str(src), "--state", state, "--report", state, says="same file as")


async def test_dev_null_may_take_several_outputs(server, tmp_path):
    mid, src = make_input(server, tmp_path)
    code, _, err = await run_cli(
        "run", str(src), "--report", os.devnull, "--summary-json", os.devnull, base_url=server.base_url
    )
    assert code == 0, err
    assert server.doc(mid)["title"] == "new title"


# -- the base URL --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("api.cloudflare.com/client/v4", "no http:// or https:// scheme"),
        ("ftp://api.cloudflare.com/client/v4", "scheme is 'ftp'"),
        ("https:///client/v4", "no host"),
        ("https://api.cloudflare.com/client/v4?x=1", "query"),
        ("https://api.cloudflare.com/client/v4#top", "fragment"),
        ("http://127.0.0.1:port/client/v4", "Port could not be cast"),
    ],
    ids=["no scheme", "ftp", "no host", "query", "fragment", "bad port"],
)
def test_a_malformed_base_url_is_a_usage_error_showing_the_expected_form(tmp_path, url, why):
    src = tmp_path / "in.csv"
    src.write_text(CSV_TEXT.format(mid="0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"), encoding="utf-8")
    for args, env_url in ((["--base-url", url], None), ([], url)):
        env = {**os.environ, "CLOUDFLARE_API_TOKEN": "t", "CLOUDFLARE_ACCOUNT_ID": "a"}
        if env_url:
            env["BATCHER_BASE_URL"] = env_url
        result = cli("run", str(src), *args, env=env)
        line = one_sentence(result.stderr)
        assert result.returncode == 2
        assert "--base-url" in line and why in line and "https://api.cloudflare.com/client/v4" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


# -- number options and foreign exceptions --------------------------------------------


def test_an_empty_base_url_variable_means_the_default(monkeypatch):
    from batcher.cli.main import build_parser

    monkeypatch.setenv("BATCHER_BASE_URL", "")
    assert build_parser().parse_args(["run", "in.csv"]).base_url == "https://api.cloudflare.com/client/v4"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "1e300"])
def test_timeout_must_be_a_finite_positive_number(tmp_path, value):
    src = tmp_path / "in.csv"
    src.write_text(CSV_TEXT.format(mid="0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b"), encoding="utf-8")
    result = cli("run", str(src), f"--timeout={value}", "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "--timeout" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_fake_api_rejects_non_finite_numbers(tmp_path):
    result = cli("fake-api", "--fail-rate", "nan", "--port", "0")
    assert result.returncode == 2 and "--fail-rate" in result.stderr


def test_another_programs_sqlite_database_is_refused_and_left_untouched(tmp_path):
    state = tmp_path / "photos.db"
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE albums (name TEXT)")
    before = state.read_bytes()
    result = cli("rollback", "--state", str(state), "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "another program's SQLite database (tables albums)" in one_sentence(result.stderr)
    assert state.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.db"]


def test_an_unexpected_error_is_one_sentence_exit_2_and_a_traceback_with_v(tmp_path):
    # A batcher-looking state whose rows table is not batcher's: sqlite3 fails inside the Store.
    state = tmp_path / "other.db"
    with sqlite3.connect(state) as db:
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        db.execute("CREATE TABLE snapshots (nonsense)")
    result = cli("rollback", "--state", str(state), "--base-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    line = one_sentence(result.stderr)
    assert "-v shows the traceback" in line
    loud = cli("rollback", "--state", str(state), "--base-url", "http://127.0.0.1:9", "-v")
    assert loud.returncode == 2 and "Traceback" in loud.stderr


FR = {"ai_config": {"transcription": {"language": "fr"}}}


async def job(server, tmp_path, n=3):
    ids = server.add(n)
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": m, **FR} for m in ids])
    cfg = config(tmp_path, server, src)
    await run_job(cfg)
    return cfg, src, ids


async def test_report_refuses_to_write_over_the_states_wal_file(server, tmp_path):
    """Guards the output checks: the state's ``-wal`` journal is part of the state, so no output may be it."""
    cfg, _, _ = await job(server, tmp_path)
    wal = cfg.state_file + "-wal"
    with sqlite3.connect(cfg.state_file) as db:  # as after kill -9: the job's last commits are in the -wal
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute("UPDATE meta SET value = value WHERE key = 'fingerprint'")
        kept = Path(wal).read_bytes() if Path(wal).exists() else None
        done = cli("report", "--state", cfg.state_file, "--html", wal)
        assert done.returncode == 2 and "part of it" in done.stderr, done.stderr
        assert (Path(wal).read_bytes() if Path(wal).exists() else None) == kept


async def test_report_and_rollback_refuse_an_html_output_that_is_the_jobs_input(server, tmp_path):
    """Guards the output checks of report and rollback: ``--html`` may not name the job's recorded input."""
    cfg, src, ids = await job(server, tmp_path)
    before = src.read_bytes()
    done = cli("report", "--state", cfg.state_file, "--html", str(src))
    assert done.returncode == 2 and "the job's input" in done.stderr, done.stderr
    done = cli("rollback", "--state", cfg.state_file, "--html", str(src), "--base-url", server.base_url)
    assert done.returncode == 2 and "the job's input" in done.stderr, done.stderr
    assert src.read_bytes() == before
    assert all(server.doc(m)["ai_config"]["transcription"]["language"] == "fr" for m in ids)


def test_an_output_is_never_the_journal_of_a_state_named_through_a_symlink_or_of_a_later_output(tmp_path):
    """Guards check_outputs: a journal is found through a symlink, whatever order the outputs are listed in."""
    from batcher.cli.preflight import check_outputs
    from batcher.errors import UsageError

    real = tmp_path / "real"
    real.mkdir()
    (real / "x.db").write_bytes(b"")
    link = tmp_path / "s.db"
    link.symlink_to(real / "x.db")
    with pytest.raises(UsageError, match="part of it"):
        check_outputs(None, [("--html", str(real / "x.db-wal"))], [("--state", str(link))])
    budget = tmp_path / "budget.db"
    with pytest.raises(UsageError, match="part of it"):  # the report listed before the budget file
        check_outputs(None, [("--report", f"{budget}-wal"), ("--budget-file", str(budget))])


def test_a_budget_file_naming_another_output_is_refused_before_anything_is_opened(tmp_path):
    """Guards the output checks: ``--budget-file`` is checked with the other outputs, before any file is opened."""
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": "0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b", "title": "x"}])
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "run", str(src), "--account-id", "a", "--base-url", "http://127.0.0.1:9",
         "--budget-file", str(out), "--summary-json", str(out)],
        capture_output=True, text=True, env={"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--budget-file" in proc.stderr and not out.exists()
    assert not (tmp_path / "in.jsonl.state.db").exists(), "no half-made state"


def test_a_hard_link_to_the_input_is_the_input_and_a_base_url_with_a_password_is_refused_unechoed(tmp_path):
    """Guards the output and ``--base-url`` checks: a hard link to the input is the input; a URL with a password is refused unechoed."""
    src = tmp_path / "o.csv"
    src.write_text("meeting_id,title\n0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b,C\n")
    (tmp_path / "hard.csv").hardlink_to(src)
    env = {"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/bin", "XDG_CACHE_HOME": str(tmp_path)}
    base = [sys.executable, "-m", "batcher", "run", str(src), "--account-id", "a", "--rate", "none"]
    linked = subprocess.run([*base, "--base-url", "http://127.0.0.1:9", "--report", str(tmp_path / "hard.csv")],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert linked.returncode == 2 and "same file as the input" in linked.stderr, linked.stderr
    assert src.read_text().startswith("meeting_id,title")
    secret = subprocess.run([*base, "--base-url", "http://user:pw-CANARY@127.0.0.1:9"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert secret.returncode == 2 and "user name or password" in secret.stderr, secret.stderr
    assert "CANARY" not in secret.stderr and not (tmp_path / "o.csv.state.db").exists()


@pytest.mark.parametrize("password", ["p@ss-CANARY", "se/cret-CANARY", "pw-CANARY"])
def test_a_base_url_password_is_never_echoed_whatever_it_holds(tmp_path, password):
    """Guards ``--base-url``: a password is refused and never echoed, whatever characters it holds."""
    src = tmp_path / "o.csv"
    src.write_text("meeting_id,title\n0b7e2a9c-4f1d-4a57-9a3e-1c2d3e4f5a6b,C\n")
    proc = subprocess.run(
        [sys.executable, "-m", "batcher", "run", str(src), "--account-id", "a", "--rate", "none",
         "--base-url", f"https://user:{password}@api.example.com/client/v4"],
        capture_output=True, text=True, env={"CLOUDFLARE_API_TOKEN": TOKEN, "PATH": "/bin", "XDG_CACHE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "CANARY" not in proc.stderr and "user name or password" in proc.stderr, proc.stderr
