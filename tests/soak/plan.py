"""What an episode does, drawn from its seed alone: meetings, jobs, rows, faults, interrupts.

Everything random about an episode is decided here, before anything runs, so a
seed names an episode (``python -m tests.soak --seed N`` replays it). Timing of
the processes still varies from run to run; the plan does not.
"""

from __future__ import annotations

import csv
import io
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from batcher.fake.chaos import ChaosSpec

LANGUAGES = ["en-US", "nl", "pl", "fr", "el", "en-IN", "sv", "ru", "hi", "de"]
EDIT_MARKER = "EDITED-MID-JOB"  # the title an edit of the input mid-job gives its last row
REGIONS = ["ap-south-1", "eu-central-1", "ap-southeast-1", "us-east-1", None]


def canary(rng: random.Random, kind: str) -> str:
    """A secret value no honest output could contain by chance."""
    return f"{kind}-CANARY-{rng.getrandbits(48):012x}"


def _scalar_fields(rng: random.Random) -> dict[str, Any]:
    """Generators of valid values for the patchable leaves, by dotted path."""
    return {
        "title": rng.choice(["Weekly sync", "Réunion, équipe", 'Q3 "review"', None, "ünïcode ✓"]),
        "record_on_start": rng.choice([True, False, None]),
        "live_stream_on_start": rng.choice([True, False]),
        "persist_chat": rng.choice([True, False]),
        "summarize_on_end": rng.choice([True, False]),
        "transcribe_on_end": rng.choice([True, False]),
        "session_keep_alive_time_in_secs": rng.randint(60, 600),
        "preferred_region": rng.choice(REGIONS),
        "ai_config.transcription.language": rng.choice(LANGUAGES),
        "ai_config.transcription.keywords": rng.sample(["alpha", "beta", "gamma", "delta"], rng.randint(0, 3)),
        "ai_config.transcription.profanity_filter": rng.choice([True, False]),
        "ai_config.summarization.word_limit": rng.randint(150, 1000),
        "ai_config.summarization.summary_type": rng.choice(["general", "lecture", "interview", "team_meeting"]),
        "recording_config.max_seconds": rng.randint(60, 86400),
        "recording_config.file_name_prefix": rng.choice(["rec", "migr", "a-b_c"]),
        "recording_config.video_config.codec": rng.choice(["VP8", "H264", "VP9"]),
        "recording_config.video_config.width": rng.randint(1, 1920),
        "recording_config.audio_config.channel": rng.choice(["mono", "stereo"]),
    }


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a nested dict, creating objects on the way."""
    *parents, leaf = path.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    doc[leaf] = value


def storage(rng: random.Random) -> dict[str, Any]:
    """An aws storage config with both write-only secrets (canaries)."""
    return {
        "type": "aws",
        "bucket": f"bucket-{rng.randint(1, 9)}",
        "region": "us-east-1",
        "access_key": canary(rng, "AK"),
        "secret": canary(rng, "SK"),
    }


@dataclass
class Row:
    """One input row: the meeting it names and its patch (nested, as JSONL nests it)."""

    number: int
    account_id: str
    meeting_id: str
    patch: dict[str, Any]


@dataclass
class JobPlan:
    """One batcher job of the episode: its rows, mode, input form and flow options."""

    name: str
    mode: str  # merge | replace | patch
    fmt: str  # csv | jsonl | stdin
    rows: list[Row]
    concurrency: int
    interrupts: list[tuple[str, int]]  # (signal name, applied writes to wait for before sending it)
    retry_failed: list[bool]  # per resume: pass --retry-failed?
    edit_after: int | None  # edit the input after this many applied writes (files only)
    verbose: bool


@dataclass
class EpisodePlan:
    """The whole episode: seeded meetings, jobs, the fault schedule, the rate."""

    seed: int
    accounts: list[str]
    meetings: list[dict[str, Any]]  # seed lines for the fake (account_id, id, fields...)
    jobs: list[JobPlan]
    chaos: ChaosSpec
    rate: tuple[int, float]  # --rate N/T for every process of the episode
    server_rate: tuple[int, float] | None  # the fake's own limit (answers 429 beyond it)
    x_ratelimit: bool
    timeout_s: float
    token: str
    secrets: list[str] = field(default_factory=list)
    # a colleague editing meetings in the dashboard while the jobs and rollbacks run: the meetings
    # ("account/id") it edits, how often, and the field it sets (one no row names: the server knows it)
    colleague_targets: list[str] = field(default_factory=list)
    colleague_every_s: float = 0.0


def _meeting(rng: random.Random, account: str, secrets: list[str], without: frozenset[str]) -> dict[str, Any]:
    mid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if rng.random() < 0.03 and "upper_ids" not in without:
        mid = mid.upper()  # stored as written: ids are compared exactly (issue 15.8)
    doc: dict[str, Any] = {"account_id": account, "id": mid}
    for path, value in _scalar_fields(rng).items():
        if rng.random() < 0.3:
            set_path(doc, path, value)
    if rng.random() < 0.3 and "unknown_fields" not in without:
        doc["beta_noise_cancellation"] = rng.choice([True, False])
    if rng.random() < 0.3 and "unknown_fields" not in without:
        set_path(doc, "ai_config.beta_translate", {"to": rng.sample(["fr", "de", "it"], 2), "on": True})
    if rng.random() < 0.1:
        doc["status"] = "INACTIVE"
    if rng.random() < 0.15:
        store = storage(rng)
        secrets += [store["access_key"], store["secret"]]
        set_path(doc, "recording_config.storage_config", store)
    return doc


def _patch(rng: random.Random, seeded: dict[str, Any], fmt: str, secrets: list[str]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    values = _scalar_fields(rng)
    for path in rng.sample(sorted(values), rng.randint(1, 4)):
        set_path(patch, path, values[path])
    has_storage = bool(seeded.get("recording_config", {}).get("storage_config"))
    # rows on a meeting with storage usually carry its secrets (else the credential guard refuses them)
    if (has_storage and rng.random() < 0.7) or rng.random() < 0.08:
        store = storage(rng)
        secrets += [store["access_key"], store["secret"]]
        set_path(patch, "recording_config.storage_config", store)
    elif fmt != "csv" and not has_storage and rng.random() < 0.05:
        set_path(patch, "recording_config.storage_config", None)
    return patch


WITHOUT = frozenset({"unknown_fields", "upper_ids", "interrupts", "faults", "second_process", "colleague"})
COLLEAGUE_FIELD = "colleague_note"  # a field of the server's that batcher's schema does not know: no row names it


def draw_episode(
    seed: int, rows_range: tuple[int, int] = (100, 3000), without: frozenset[str] = frozenset()
) -> EpisodePlan:
    """The episode of ``seed`` (rows per episode drawn from ``rows_range``).

    ``without`` leaves out features (names in ``WITHOUT``), so a defect already
    known does not hide the others (the rest of the episode may then draw differently).
    """
    rng = random.Random(seed)
    secrets: list[str] = []
    accounts = ["acct-soak-a"] + (["acct-soak-b"] if rng.random() < 0.4 else [])
    total = rng.randint(*rows_range)
    meetings = [_meeting(rng, rng.choice(accounts), secrets, without) for _ in range(total + max(3, total // 10))]
    by_id = {m["id"]: m for m in meetings}
    targets = rng.sample(list(by_id), total)  # the rest are never named: never written
    two_jobs = rng.random() < 0.25 and "second_process" not in without
    split = total // 2 if two_jobs else total
    jobs = []
    for index, ids in enumerate([targets[:split], targets[split:]] if two_jobs else [targets]):
        mode = rng.choices(["merge", "replace", "patch"], [0.7, 0.15, 0.15])[0]
        fmt = rng.choices(["csv", "jsonl", "stdin"], [0.45, 0.4, 0.15])[0]
        rows = [
            Row(n, by_id[mid]["account_id"], mid, _patch(rng, by_id[mid], fmt, secrets))
            for n, mid in enumerate(ids, start=1)
        ]
        if mode == "patch":  # PATCH cannot set these to null (PUT can): such a row is invalid, not a write
            for row in rows:
                for field, instead in (
                    ("title", "Weekly sync"),
                    ("record_on_start", False),
                    ("live_stream_on_start", False),
                ):
                    if field in row.patch and row.patch[field] is None:
                        row.patch[field] = instead
        n_int = rng.choices([0, 1, 2, 3], [0.3, 0.35, 0.25, 0.1])[0] * ("interrupts" not in without)
        interrupts = [
            (rng.choice(["KILL", "KILL", "INT", "TERM"]), rng.randint(1, max(1, len(rows) // 2))) for _ in range(n_int)
        ]
        jobs.append(
            JobPlan(
                name=f"job{index}",
                mode=mode,
                fmt=fmt,
                rows=rows,
                concurrency=rng.choice([1, 2, 4, 8, 16]),
                interrupts=interrupts,
                retry_failed=[rng.random() < 0.5 for _ in range(n_int + 1)],
                edit_after=rng.randint(1, max(1, len(rows) // 3)) if fmt != "stdin" and rng.random() < 0.15 else None,
                verbose=rng.random() < 0.5,
            )
        )
    p = rng.uniform(0.0, 0.1) * ("faults" not in without)
    weights = [rng.random() for _ in range(8)]
    scale = p / sum(weights)
    timeout_s = rng.choice([1.0, 1.5])
    chaos = ChaosSpec(
        *(w * scale for w in weights),
        retry_after_s=1,
        hang_s=timeout_s + 0.5,
        auth_window=(rng.randint(5, total), rng.randint(1, 5)) if rng.random() < 0.15 and p else None,
    )
    n, t = rng.choice([(50, 1.0), (100, 1.0), (20, 0.5), (200, 2.0), (400, 1.0)])
    server_rate = (n * 2, t) if rng.random() < 0.5 else None
    # The colleague draws from its own generator: episodes drawn before it existed stay as they were.
    crng = random.Random(seed * 7919 + 17)
    colleague_targets: list[str] = []
    if crng.random() < 0.5 and "colleague" not in without:
        # merge and patch rows keep what they do not name; a replace row is the whole document by design
        kept = [r for job in jobs if job.mode != "replace" for r in job.rows]
        colleague_targets = sorted({f"{r.account_id}/{r.meeting_id}" for r in crng.sample(kept, min(len(kept), 12))})
        for key in colleague_targets:
            by_id[key.split("/", 1)[1]][COLLEAGUE_FIELD] = "seeded"
    return EpisodePlan(
        seed=seed,
        accounts=accounts,
        meetings=meetings,
        jobs=jobs,
        chaos=chaos,
        rate=(n, t),
        server_rate=server_rate,
        x_ratelimit=server_rate is not None and rng.random() < 0.5,
        timeout_s=timeout_s,
        token=f"soak-token-{seed}-CANARY-{rng.getrandbits(32):08x}",
        secrets=secrets,
        colleague_targets=colleague_targets,
        colleague_every_s=crng.choice([0.05, 0.1, 0.3]) if colleague_targets else 0.0,
    )


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, prefix + key + "."))
        else:
            out[prefix + key] = value
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return orjson.dumps(value).decode()
    return str(value)


def render_input(job: JobPlan) -> bytes:
    """The job's input file: CSV (dotted columns, empty cell = not in the patch) or JSONL."""
    if job.fmt != "csv":
        return b"".join(
            orjson.dumps({"meeting_id": r.meeting_id, "account_id": r.account_id, **r.patch}) + b"\n" for r in job.rows
        )
    flat = [_flatten(r.patch) for r in job.rows]
    columns = sorted({c for f in flat for c in f})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["meeting_id", "account_id", *columns])
    for row, cells in zip(job.rows, flat, strict=True):
        writer.writerow([row.meeting_id, row.account_id, *(_cell(cells[c]) if c in cells else "" for c in columns)])
    return out.getvalue().encode()
