"""Each invariant check, shown to fail: a clean episode, then one thing broken on purpose.

One small episode runs clean (no faults, no interrupts, one process, no fields
the code under test is known to mishandle); every test then tampers with a
copy of its record or files, the way a defect would, and asserts the matching
check reports it while the clean record reports nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import shutil
import sqlite3
import zlib
from pathlib import Path

import orjson
import pytest

from batcher.fake.chaos import ChaosSpec

from .episode import JobFiles, Proc, Record, run_episode
from .invariants import check_all
from .plan import EDIT_MARKER, JobPlan, draw_episode

CANARY_SEED = 4242


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Record:
    plan = draw_episode(CANARY_SEED, (12, 12))
    plan.chaos, plan.rate, plan.server_rate, plan.x_ratelimit = ChaosSpec(), (1000, 1.0), None, False
    plan.jobs = plan.jobs[:1]
    plan.colleague_targets, plan.colleague_every_s = [], 0.0  # the colleague's edits are added by its tests
    job = plan.jobs[0]
    job.mode, job.fmt, job.interrupts, job.retry_failed, job.edit_after = "merge", "jsonl", [], [False], None
    named = {r.meeting_id for r in job.rows}
    for meeting in plan.meetings:
        meeting["id"] = meeting["id"].lower()
        if meeting["id"] in named:  # unknown fields only on meetings the job never names
            meeting.pop("beta_noise_cancellation", None)
            meeting.get("ai_config", {}).pop("beta_translate", None)
    plan.meetings[-1]["beta_noise_cancellation"] = True  # never named: must stay as seeded
    for row in job.rows:
        row.meeting_id = row.meeting_id.lower()
    record = run_episode(plan, tmp_path_factory.mktemp("clean") / "episode")
    assert check_all(record) == [], "the clean episode must pass every check"
    return record


def clone(record: Record, tmp_path: Path) -> Record:
    """A deep copy of ``record`` whose files are copies under ``tmp_path``."""
    workdir = tmp_path / "episode"
    shutil.copytree(record.workdir, workdir)
    copied = copy.deepcopy(record)
    copied.workdir = workdir
    copied.files = {
        name: dataclasses.replace(
            f, **{k: workdir / Path(v).relative_to(record.workdir) for k, v in dataclasses.asdict(f).items()}
        )
        for name, f in record.files.items()
    }
    return copied


def invariants(record: Record) -> set[str]:
    return {v.invariant for v in check_all(record)}


def _job(record: Record) -> tuple[JobPlan, JobFiles]:
    """The one job of the clean episode and its files."""
    job = record.plan.jobs[0]
    return job, record.files[job.name]


def _key(record: Record, index: int = 0) -> str:
    row = record.plan.jobs[0].rows[index]
    return f"{row.account_id}/{row.meeting_id}"


def test_a_dropped_results_line_breaks_outcomes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    lines = f.results.read_bytes().splitlines(keepends=True)
    f.results.write_bytes(b"".join(lines[1:]))
    assert invariants(r) == {"outcomes"}


def test_a_duplicated_results_line_breaks_outcomes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    lines = f.results.read_bytes().splitlines(keepends=True)
    f.results.write_bytes(b"".join([*lines, lines[0]]))
    assert invariants(r) == {"outcomes"}


def test_a_summary_that_disagrees_with_the_state_breaks_outcomes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    doc = orjson.loads(f.summary.read_bytes())
    doc["succeeded"] += 1
    f.summary.write_bytes(orjson.dumps(doc))
    assert "outcomes" in invariants(r)


def test_a_report_naming_a_row_that_did_not_fail_breaks_outcomes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    f.report.write_bytes(orjson.dumps({"row": 1, "error": "http_error"}) + b"\n")
    assert invariants(r) == {"outcomes"}


def test_a_status_that_disagrees_breaks_outcomes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    job, _ = _job(r)
    r.status_json[job.name] = {"total": 12, "succeeded": 0, "unchanged": 0, "failed": 12, "skipped": 0}
    assert invariants(r) == {"outcomes"}


def test_a_row_left_pending_in_the_state_breaks_outcomes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    with sqlite3.connect(f.state) as db:
        db.execute("UPDATE rows SET outcome = 'pending' WHERE row = 2")
    assert "outcomes" in invariants(r)


def test_an_unknown_field_changed_on_a_meeting_no_row_names_breaks_server_state(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    (key,) = [k for k, d in r.after_run.items() if d.get("beta_noise_cancellation") is True and k != _key(r)][:1]
    r.after_run[key]["beta_noise_cancellation"] = False
    assert invariants(r) == {"server_state"}


def test_a_field_the_row_did_not_name_changed_breaks_server_state(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    r.after_run[_key(r)]["ai_config"]["beta_dub"] = {"on": True}  # appeared from nowhere
    assert invariants(r) == {"server_state"}


def test_a_secret_that_did_not_land_breaks_server_state(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    row = r.plan.jobs[0].rows[0]
    row.patch.setdefault("recording_config", {})["storage_config"] = {"type": "gcs", "secret": "never-sent"}
    assert invariants(r) == {"server_state"}


def test_a_write_to_a_meeting_not_in_the_input_breaks_server_state(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    named = {f"{x.account_id}/{x.meeting_id}" for x in r.plan.jobs[0].rows}
    other = next(k for k in r.initial if k not in named)
    account, meeting = other.split("/")
    r.log.append(
        {
            "t": r.rollback_from - 10,
            "method": "PUT",
            "account": account,
            "meeting": meeting,
            "status": 200,
            "applied": True,
        }
    )
    assert invariants(r) == {"server_state"}


def test_writes_repeated_beyond_the_bound_break_double_writes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    account, meeting = _key(r).split("/")
    write = {
        "t": r.rollback_from - 30,
        "method": "PUT",
        "account": account,
        "meeting": meeting,
        "status": 200,
        "applied": True,
    }
    r.log.extend([dict(write, t=write["t"] + i) for i in range(3)])
    assert "double_writes" in invariants(r)


def test_a_burst_over_the_rate_breaks_rate(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    n, _ = r.plan.rate
    t0 = r.log[0]["t"] - 100
    r.log[:0] = [
        {"t": t0 + i * 1e-4, "method": "GET", "account": "x", "meeting": "y", "status": 200, "applied": False}
        for i in range(n + 1)
    ]
    assert invariants(r) == {"rate"}


def test_a_request_counter_off_by_more_than_in_flight_breaks_counters(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    doc = orjson.loads(f.summary.read_bytes())
    doc["requests"] += 100
    f.summary.write_bytes(orjson.dumps(doc))
    assert invariants(r) == {"counters"}


def test_a_meeting_rollback_did_not_restore_breaks_rollback(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    r.after_rollback[_key(r)]["title"] = "still the job's"
    assert invariants(r) == {"rollback"}


def test_a_secret_in_the_report_breaks_secrets(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    f.rollback_report.write_text(f'{{"message": "bad token {r.plan.token}"}}\n')
    assert invariants(r) == {"secrets"}


def test_a_secret_inside_a_zlibd_snapshot_breaks_secrets(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    _, f = _job(r)
    secret = r.plan.secrets[0] if r.plan.secrets else r.plan.token
    blob = zlib.compress(orjson.dumps({"recording_config": {"storage_config": {"secret": secret}}}))
    with sqlite3.connect(f.state) as db:
        db.execute("UPDATE snapshots SET after = ? WHERE rowid = (SELECT MIN(rowid) FROM snapshots)", (blob,))
    assert secret.encode() not in f.state.read_bytes()  # only decoding finds it
    assert invariants(r) == {"secrets"}


def test_a_secret_printed_on_a_stream_breaks_secrets(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    (r.workdir / "streams" / "999-job0-run.err").write_text(f"Authorization: Bearer {r.plan.token}\n")
    assert invariants(r) == {"secrets"}


def test_an_edit_that_was_not_refused_breaks_edits(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    r.edits.append({"job": "job0", "t": r.rollback_from - 60, "row": 1, "meeting": _key(r), "resume_rc": 0})
    assert invariants(r) == {"edits"}


def test_an_edited_row_that_landed_breaks_edits(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    r.edits.append({"job": "job0", "t": r.rollback_from - 60, "row": 1, "meeting": _key(r), "resume_rc": 2})
    assert invariants(r) == set()
    r.after_run[_key(r)]["title"] = EDIT_MARKER
    assert "edits" in invariants(r)


def test_a_traceback_breaks_processes(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    r.procs.append(
        Proc("job0", "resume", ["run"], rc=1, stderr="Traceback (most recent call last):\n  x\nTypeError: boom")
    )
    assert invariants(r) == {"processes"}


def _read_then_write(record: Record) -> tuple[str, dict, dict]:
    """A meeting whose log has a GET followed at once by an applied write: (key, the GET, the write)."""
    for index in range(len(record.plan.jobs[0].rows)):
        key = _key(record, index)
        log = sorted((e for e in record.log if f"{e['account']}/{e['meeting']}" == key), key=lambda e: e["t"])
        for read, write in itertools.pairwise(log):
            if read["method"] == "GET" and write["method"] == "PUT" and write["applied"]:
                return key, read, write
    raise AssertionError("the clean episode wrote no meeting after reading it")


def test_a_colleagues_edit_that_a_write_reverted_breaks_colleague(clean: Record, tmp_path: Path) -> None:
    r = clone(clean, tmp_path)
    key, read, _ = _read_then_write(r)
    r.colleague = [{"t": read["t"] - 1.0, "meeting": key, "value": "colleague-1"}]  # before the job even read it
    assert invariants(r) == {"colleague"}


def test_a_colleagues_edit_between_a_read_and_its_write_is_the_race_no_api_can_close(
    clean: Record, tmp_path: Path
) -> None:
    r = clone(clean, tmp_path)
    key, read, write = _read_then_write(r)
    r.colleague = [{"t": read["t"] + 1e-6, "meeting": key, "value": "colleague-1"}]
    assert invariants(r) == set(), "a write built from the read just before the edit: the documented limit"
    # ... but not when the write was sent again after a failed attempt, from the same read (a stale re-send)
    r.log.append({**write, "t": (read["t"] + write["t"]) / 2, "status": 429, "applied": False})
    assert invariants(r) == {"colleague"}
