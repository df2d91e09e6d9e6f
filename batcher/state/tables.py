"""Every table of the state file, and the numbered chain that brings an older file up to date.

The file says which version of this schema it holds in ``PRAGMA user_version`` (a number in the
SQLite header: reading it writes nothing). ``migrate`` runs one step per version, oldest first
(as dlt's ``migrate_pipeline_state`` does), each in one transaction with the new number, so a
file is always at exactly one version, never between two. A brand-new file is created at
``SCHEMA_VERSION`` directly. A file from a newer batcher (a higher number) is refused by number
before anything is written to it: a half-understood state could resend rows or undo the wrong
meetings.

Version 0 is a file written before the schema was numbered (user_version never set): its tables
are today's, except that a file from before ``maybe_landed`` lacks two snapshot columns, and one
from before runs were kept lacks ``runs`` and ``timeline``. Readers that open a file read-only
(``status``, the report) cannot migrate it: they read a version-0 file as it is when it has
``maybe_landed`` (``has_readable_snapshots``), and refuse one that lacks it, saying how to migrate it.

To change the schema: bump ``SCHEMA_VERSION``, change the statements below to the new schema (a
new file gets them), and append a step that brings the previous version there. A step must not
use a statement below that a later version changes: copy the text it needs into the step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ..errors import StateMismatchError

SCHEMA_VERSION = 3

ROWS = """CREATE TABLE IF NOT EXISTS rows (
    row INTEGER PRIMARY KEY,
    account_id TEXT,
    meeting_id TEXT,
    patch_hash BLOB,
    outcome TEXT NOT NULL,           -- pending | succeeded | unchanged | failed | skipped
    error TEXT, status INTEGER, message TEXT, attempts INTEGER,
    patch TEXT                       -- redacted, failed rows only
)"""

META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

KEYS = "CREATE TABLE IF NOT EXISTS keys (key BLOB PRIMARY KEY, row INTEGER NOT NULL) WITHOUT ROWID"

SNAPSHOTS = """CREATE TABLE IF NOT EXISTS snapshots (
    account_id TEXT NOT NULL, meeting_id TEXT NOT NULL, row INTEGER,
    before BLOB NOT NULL,            -- the meeting before the job (as GET showed it), zlib'd JSON
    after BLOB NOT NULL,             -- what the job left: the server's answer to its write once one came
                                     -- (else the body sent), credentials it set as "***", zlib'd JSON
    write_state TEXT NOT NULL DEFAULT 'pending',  -- pending | landed | unknown | failed: did the job's last write land?
    seq INTEGER NOT NULL DEFAULT 0,  -- bumped by every save_snapshot: which write of the job this is
    maybe_landed INTEGER NOT NULL DEFAULT 0,  -- sticky: some write of the job landed, or may have
    landed_after BLOB,               -- the last write that landed or may have (zlib'd JSON, credentials "***")
    after_updated_at TEXT,           -- the updated_at of the server's answer to the job's last landed write (v2)
    PRIMARY KEY (account_id, meeting_id)
)"""
SNAPSHOTS_ROW = "CREATE INDEX IF NOT EXISTS snapshots_row ON snapshots (row)"
# ids compare ignoring case (snapshots.py names this index in its queries: INDEXED BY)
SNAPSHOTS_KEY = "CREATE INDEX IF NOT EXISTS snapshots_key ON snapshots (account_id, lower(meeting_id))"

ROLLBACK = """CREATE TABLE IF NOT EXISTS rollback (
    account_id TEXT NOT NULL, meeting_id TEXT NOT NULL,
    outcome TEXT NOT NULL, error TEXT, status INTEGER, message TEXT, attempts INTEGER,
    seq INTEGER NOT NULL DEFAULT 0,  -- the snapshots.seq this rollback outcome judged
    PRIMARY KEY (account_id, meeting_id)
)"""

RUNS = """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,              -- run | rollback
    started REAL NOT NULL,           -- Unix time (UTC)
    ended REAL,                      -- NULL: still running, or killed before it could say
    exit_code INTEGER,
    pid INTEGER,
    options TEXT NOT NULL            -- JSON: what this run was told (no token, no secrets)
)"""

TIMELINE = """CREATE TABLE IF NOT EXISTS timeline (
    run INTEGER NOT NULL,            -- runs.id
    start INTEGER NOT NULL,          -- the bucket's first second (Unix time, UTC)
    width INTEGER NOT NULL,          -- seconds it covers (grows with the run's age: timeline.WIDTHS)
    data BLOB NOT NULL,              -- the Bucket as compact JSON (Bucket.to_json)
    PRIMARY KEY (run, start)
) WITHOUT ROWID"""

# What a write left on a meeting where no snapshot says it (v3): a replace or patch job's writes
# (they read nothing first, so they keep no snapshot), and a rollback's restores (for ``verify``).
LEFT = """CREATE TABLE IF NOT EXISTS left_records (
    account_id TEXT NOT NULL, meeting_id TEXT NOT NULL, row INTEGER,
    source TEXT NOT NULL,            -- run (a replace/patch write) | rollback (a restore, or found as before)
    document BLOB NOT NULL,          -- the server's answer (read-only fields dropped, credentials "***"), zlib'd JSON
    updated_at TEXT,                 -- its updated_at (NULL: the answer gave none)
    seq INTEGER NOT NULL DEFAULT 0,  -- rollback: the snapshots.seq it judged (a later write of the job supersedes it)
    PRIMARY KEY (account_id, meeting_id)
)"""

# The latest ``batcher verify`` pass: one verdict per meeting judged (a resumed pass skips them).
VERIFY = """CREATE TABLE IF NOT EXISTS verify (
    account_id TEXT NOT NULL, meeting_id TEXT NOT NULL, row INTEGER,
    verdict TEXT NOT NULL,           -- as_written | drifted | missing | unknown
    changes TEXT NOT NULL,           -- JSON [{path, written, now}], credentials never included
    message TEXT,                    -- why a meeting is unknown
    PRIMARY KEY (account_id, meeting_id)
)"""

# The schema of a new file (SCHEMA_VERSION), in creation order.
TABLES = (ROWS, META, KEYS, SNAPSHOTS, SNAPSHOTS_ROW, SNAPSHOTS_KEY, ROLLBACK, RUNS, TIMELINE, LEFT, VERIFY)

# Only while a --force rebuild runs (Store.archive_rows): the old rows, matched by meeting.
ROWS_OLD_MEETING = "CREATE INDEX IF NOT EXISTS rows_old_meeting ON rows_old (meeting_id)"

# Never in the file: the connection's temporary database, while the results file is caught up.
RESULTS_SEEN = "CREATE TEMP TABLE IF NOT EXISTS results_seen (row INTEGER, meeting_id TEXT, outcome TEXT)"
RESULTS_SEEN_ROW = "CREATE INDEX IF NOT EXISTS temp.results_seen_row ON results_seen (row)"


def version_of(db: sqlite3.Connection, name: str = "this state file") -> int:
    """The schema version of an open state file (0: written before versions were numbered).

    Raises ``StateMismatchError`` for a file from a newer batcher (``name``: its path, for the
    message): reading the number writes nothing, so a refused file is left exactly as it was.
    """
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StateMismatchError(
            f"{name} was made by a newer batcher (state version {version}, this batcher reads up to "
            f"{SCHEMA_VERSION}); upgrade batcher to use it"
        )
    return int(version)


def has_readable_snapshots(db: sqlite3.Connection) -> bool:
    """Whether a version-0 file's snapshots have what the read-only readers use (``maybe_landed``,
    added before versions were numbered): a reader cannot migrate a file, so it refuses one that lacks it."""
    columns = {name for _cid, name, *_ in db.execute("PRAGMA table_info(snapshots)")}
    return not columns or "maybe_landed" in columns


def migrate(db: sqlite3.Connection, from_version: int | None = None) -> int:
    """Bring the state file to ``SCHEMA_VERSION`` (a new, empty file: create it there); returns the
    version it had. A no-op on a file already there; refuses one from a newer batcher (``version_of``).

    ``db`` must be in autocommit mode (``isolation_level=None``): each step is its own transaction.
    """
    version = version_of(db) if from_version is None else from_version
    if version == SCHEMA_VERSION:
        return version
    (has_tables,) = db.execute("SELECT EXISTS (SELECT 1 FROM sqlite_master)").fetchone()
    steps = _STEPS[version:] if has_tables else [_create]
    for step in steps:
        db.execute("BEGIN")
        try:
            reached = step(db)
            db.execute(f"PRAGMA user_version = {int(reached)}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return version


def _create(db: sqlite3.Connection) -> int:
    """A new file: the current schema."""
    for statement in TABLES:
        db.execute(statement)
    return SCHEMA_VERSION


def _from_v0(db: sqlite3.Connection) -> int:
    """Version 0 (no user_version) -> 1: the snapshot columns an old file lacks, and the tables it
    has not made yet (runs and timeline were made by the first run that was recorded).

    An old file cannot say which earlier write failed, so every snapshot that may hold a landed
    write of the job (any but a lone failed one) counts as ``maybe_landed``; ``landed_after`` is
    then the latest write when it may have landed.
    """
    columns = {name for _cid, name, *_ in db.execute("PRAGMA table_info(snapshots)")}
    if columns and "maybe_landed" not in columns:
        db.execute("ALTER TABLE snapshots ADD COLUMN maybe_landed INTEGER NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE snapshots ADD COLUMN landed_after BLOB")
        db.execute("UPDATE snapshots SET maybe_landed = 1 WHERE write_state != 'failed' OR seq > 1")
        db.execute("UPDATE snapshots SET landed_after = after WHERE write_state != 'failed'")
    for statement in (ROWS, META, KEYS, _SNAPSHOTS_V1, SNAPSHOTS_ROW, SNAPSHOTS_KEY, ROLLBACK, RUNS, TIMELINE):
        db.execute(statement)
    return 1


def _from_v1(db: sqlite3.Connection) -> int:
    """1 -> 2: ``snapshots.after_updated_at``, the server's stamp on what the job left (for ``verify``
    and rollback). Older writes have none: they are judged by their document, as before."""
    db.execute("ALTER TABLE snapshots ADD COLUMN after_updated_at TEXT")
    return 2


def _from_v2(db: sqlite3.Connection) -> int:
    """2 -> 3: ``left_records`` (what replace/patch writes and rollback restores left) and ``verify``
    (the latest verify pass). Writes made before them have no record there: a replace or patch job
    run by an older batcher cannot be verified, a rollback made by one is verified as the job's writes."""
    db.execute(_LEFT_V3)
    db.execute(_VERIFY_V3)
    return 3


# The tables as version 3 made them (today's: copy their text here when LEFT or VERIFY change).
_LEFT_V3 = LEFT
_VERIFY_V3 = VERIFY


# The snapshots table as version 1 made it (the v0 -> 1 step creates it so in a file that lacks it).
_SNAPSHOTS_V1 = """CREATE TABLE IF NOT EXISTS snapshots (
    account_id TEXT NOT NULL, meeting_id TEXT NOT NULL, row INTEGER,
    before BLOB NOT NULL,            -- the meeting before the job (as GET showed it), zlib'd JSON
    after BLOB NOT NULL,             -- what the job PUT, credentials as "***", zlib'd JSON
    write_state TEXT NOT NULL DEFAULT 'pending',  -- pending | landed | unknown | failed: did the job's last write land?
    seq INTEGER NOT NULL DEFAULT 0,  -- bumped by every save_snapshot: which write of the job this is
    maybe_landed INTEGER NOT NULL DEFAULT 0,  -- sticky: some write of the job landed, or may have
    landed_after BLOB,               -- the last write that landed or may have (zlib'd JSON, credentials "***")
    PRIMARY KEY (account_id, meeting_id)
)"""


# _STEPS[n] brings version n to n + 1 and returns n + 1.
_STEPS: list[Callable[[sqlite3.Connection], int]] = [_from_v0, _from_v1, _from_v2]
assert len(_STEPS) == SCHEMA_VERSION
