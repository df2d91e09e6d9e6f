"""Reading a state file without owning it: read-only opening, the lock test, foreign files.

``status`` and the HTML report open a state while a job may be writing it: in WAL mode a
reader never blocks the writer. Whether a job runs is whether a process holds the state's lock
(a pid can be reused after kill -9; a lock cannot). A reader cannot migrate a file: it reads an
older one as it is (``readers``) and refuses one from a newer batcher (``tables.version_of``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from ..errors import UsageError
from . import tables
from .readers import meta_value


def foreign_tables(path: str) -> list[str]:
    """The tables of an SQLite file that has tables but no batcher ``meta`` table (another program's
    database, which the Store must not add its tables to); empty when it is batcher's or unreadable."""
    try:
        db = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            names = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            db.close()
    except sqlite3.Error:
        return []  # e.g. a WAL file that cannot be read without writing: the Store will say more
    return [] if not names or "meta" in names else sorted(names)


def recorded_fingerprint(path: str) -> dict[str, Any] | None:
    """The identity a state's job recorded (its input, mode, target...), or None: no job yet, not
    a state file, or unreadable. Never raises: callers only use it to check paths before a job."""
    try:
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=1.0)
        try:
            fingerprint = meta_value(db, "fingerprint")
        finally:
            db.close()
    except (sqlite3.Error, orjson.JSONDecodeError, OSError):
        return None
    return fingerprint if isinstance(fingerprint, dict) else None


SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite(path: str) -> bool:
    """True when ``path`` is an SQLite database, or empty (SQLite makes an empty file a database).

    Only the 16-byte header is read: nothing is written, so a mistyped
    ``--state french.csv`` is left exactly as it was.
    """
    with open(path, "rb") as fh:
        head = fh.read(len(SQLITE_HEADER))
    return head in (b"", SQLITE_HEADER)


def open_read_only(path: str) -> sqlite3.Connection:
    """Open a state file for reading while a job may be writing it (status and report share this)."""
    if not os.path.exists(path):
        raise UsageError(f"no state file at {path}")
    # With no -wal file the job is not running and everything is in the main file: open it
    # immutable, or SQLite would create -wal/-shm files beside it. (A job starting during
    # that instant is not waited for: status is a look, not a lock.)
    uri = Path(path).resolve().as_uri() + ("?mode=ro" if os.path.exists(path + "-wal") else "?mode=ro&immutable=1")
    try:
        db = sqlite3.connect(uri, uri=True, timeout=1.0)
        try:
            db.execute("SELECT 1 FROM meta LIMIT 1")
            if tables.version_of(db, path) == 0 and not tables.has_readable_snapshots(db):
                raise UsageError(
                    f"{path} was written by a batcher too old for this one to read without migrating it (its "
                    "snapshots lack maybe_landed): resume it once (the same `batcher run` command) or run "
                    "`batcher rollback` on it with this batcher, which brings it up to date"
                )
        except BaseException:
            db.close()
            raise
    except sqlite3.Error as exc:
        if os.path.getsize(path) == 0 or "no such table" in str(exc):
            raise UsageError(f"{path} holds no job yet (one may be starting: try again in a moment)") from None
        raise UsageError(f"{path} is not a batcher state file ({exc})") from None
    return db


def is_locked(path: str) -> bool:
    """Whether a job holds the state's lock now (Store.open's exclusive flock on the file itself).

    A shared lock is tried without waiting and released at once. Unlike a pid,
    the lock dies with its process: a killed run whose pid was reused, or a
    state copied to another machine, is not taken for a running one.
    """
    try:
        with open(path, "rb") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def is_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
