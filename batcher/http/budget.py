"""One rate budget per API token, shared by every batcher process on the machine.

``--rate N/T`` promises at most N request starts in any window of T seconds.
Kept only in memory, that promise breaks at every restart: Ctrl-C and the
printed resume command (or a second job with the same token) start a fresh
window and send another N at once. Cloudflare's budget is per token, so the
window is too: the start time of every request, and any pause the server
announced (``Retry-After``, ``Ratelimit: r=0``), live in a small SQLite file:

    --budget-file FILE, else
    $XDG_CACHE_HOME/batcher/budget-<h>.db   (XDG_CACHE_HOME defaults to ~/.cache)

(the command line resolves that default, from the environment it read; a library
job that names no ``budget_path`` gets ``~/.cache``: this module reads no variable)

where ``<h>`` is the first 16 hex digits of blake2b(token): the file names the
token without revealing it, and holds no secret. With ``--rate none`` no file
is opened.

Each process enforces its own N/T against the shared log: it counts every
start of the token in the last T seconds, whoever made it. A start is recorded
(committed) when it is granted, before the request goes out, so after
``kill -9`` the promise holds up to the requests that were in flight. Times
are wall-clock seconds (they must mean the same in another process, and after
a restart); the clock is injectable for tests.

The server's own word on the token's budget (``Ratelimit: r=..``,
``X-RateLimit-Remaining``) is per token too, so it lives here as well:
``server_left`` starts before ``server_reset_at``, taken off by every grant
of every process in the same transaction, so two processes on one token
never both spend the server's whole ``r``.

Concurrency: every grant is one ``BEGIN IMMEDIATE`` transaction (SQLite's
file lock serialises processes), in WAL mode with ``synchronous=NORMAL`` (a
commit survives a crashed process; only a crashed machine may lose the last
few). The grant runs on the event loop, so it never waits long for the
lock: the busy timeout is ``BUSY_TIMEOUT_S`` (20 ms), and a file still busy
after that answers "wait a moment" (``BUSY_RETRY_S``), which the pacer
sleeps off with the loop's sleep before it asks again. A pause that finds
the file busy is kept and written by the next grant. Cost: about 40 us per grant (38-39 us measured on the 2-core CI machine with
1,200 to 3,200 recent starts in the file; 55 us when the window is full);
at Cloudflare's 4 requests/s that is nothing, and ``--rate none`` (the
benchmark's setting) never calls it.

A file deleted under a running job (a cache cleaner) would split the token's window in two: the
running process keeps its handle on the deleted file while the next job creates a fresh one and
sees an empty window. So each process checks, every ``WATCH_S`` (a watcher thread) and before
its grants, that the path still names the file it holds (device and inode); when it does not, it
*rejoins*: it opens the path (creating it if need be) and copies there the starts and the pause
its old file held, once per deleted file (the first holder to rejoin marks the new file with the
old one's identity; the others find the mark), so every process of the token again counts every
start. A deleted file's journals (``-wal``, ``-shm``) stay at the path while a job holds the file
open, and SQLite would read them as a new file's: the process that makes the file removes them
first (under ``PATH.lock``), and then grants nothing for ``REJOIN_GRACE_S``, long enough for the
processes still holding the deleted file to rejoin first: without that wait its first N starts
could fall in a window another process had just filled. (A folder removed whole takes the
journals with it: then the running job makes the file again at its next check, and a job started
within that quarter second is the one case not covered.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from ..errors import UsageError
from .gate import MAX_UNANSWERED, Answer, Clock

__all__ = ["BUSY_RETRY_S", "Budget", "Clock", "SharedWindow", "default_budget_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS starts (t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS starts_t ON starts (t);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
# Starts older than every window any process uses are of no use; a process
# raises the retention to its own window, so a shorter one never prunes a longer.
_MIN_RETENTION_S = 600.0
_PRUNE_EVERY = 256
# How long a transaction may block the event loop waiting for another process's, and how long
# the pacer then sleeps (asynchronously) before it asks again.
BUSY_TIMEOUT_S = 0.02
SETUP_TIMEOUT_S = 10.0  # creating or opening the file, once per process
BUSY_RETRY_S = 0.005
# How often a running process checks that the path still names its file, and how long a process
# that created the file in an existing folder waits before its first grant (see the docstring).
WATCH_S = 0.25
REJOIN_GRACE_S = 1.0
REJOIN_TIMEOUT_S = 0.1  # a rejoin waits no longer than this for the new file (then: the next check)
_GRANT_META = "SELECT key, value FROM meta WHERE key IN ('paused_until', 'server_left', 'server_reset_at')"


def _held(meta: Mapping[str, float]) -> float:
    """The wall-clock time before which the file grants nothing (0.0: none), from its ``_GRANT_META``:
    a pause, or the server's reset while its last word was that no budget is left."""
    held = meta.get("paused_until", 0.0)
    if meta.get("server_left", -1.0) == 0:
        held = max(held, meta.get("server_reset_at", 0.0))
    return held


@contextlib.contextmanager
def _setup_lock(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` (an advisory lock; none where the platform has no ``fcntl``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def default_budget_path(token: str, environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/batcher/budget-<blake2b(token)[:16]>.db`` (``~/.cache`` by default).

    ``environ`` is the environment as the command line read it (``cli.environment``). None, as
    for a library job that names no ``budget_path``, reads ``XDG_CACHE_HOME`` here: it is the
    platform's cache directory, not a setting of batcher's, and a library job and a command-line
    job on one token must find the same budget file, or the rate promise across processes breaks.
    This is the one variable read outside ``cli.environment`` (its test names this exception).
    """
    env = os.environ if environ is None else environ
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.blake2b(token.encode(), digest_size=8).hexdigest()
    return Path(cache) / "batcher" / f"budget-{digest}.db"


class Budget:
    """The shared log of request starts and pause deadlines for one token."""

    def __init__(self, path: str | Path, clock: Clock = time.time, *, watch_s: float | None = WATCH_S) -> None:
        self.path = Path(path)
        self.clock = clock
        self._db, self._identity, took_over = self._connect()
        self._lock = threading.Lock()  # the watcher thread and the event loop share the connection
        self._grants = 0
        self._pause_due = 0.0  # a pause not yet written: the file was busy
        self.last_start = 0.0  # wall-clock time of this process's last granted start
        self.rejoined = 0  # times the path was found to name another file (or none) and was rejoined
        # a file made where a deleted one's journals lay: let the processes holding it rejoin first
        self._hold_until = clock() + REJOIN_GRACE_S if took_over else 0.0
        self._closed = threading.Event()
        if watch_s is not None:
            threading.Thread(target=self._watch, args=(watch_s,), name="batcher-budget", daemon=True).start()

    def _connect(self, timeout_s: float = SETUP_TIMEOUT_S) -> tuple[sqlite3.Connection, tuple[int, int], bool]:
        """Open (or create) the file at ``path``: the connection, the file's identity, and whether a
        deleted file's journals lay there (a process may still hold that file).

        Those journals belong to a file that is gone: SQLite would read them as this new file's
        (and the process still writing them would lose its log), so they are removed first, under
        a lock on ``PATH.lock`` so that two processes never both create the file and remove each
        other's journals.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _setup_lock(self.path):
                took_over = False
                if not self.path.exists():
                    for journal in (f"{self.path}-wal", f"{self.path}-shm"):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(journal)
                            took_over = True
                # isolation_level=None: we issue BEGIN IMMEDIATE ourselves
                # Set-up waits as long as it must (once per process, before any request: two processes
                # starting together both create the file); grants afterwards never wait long.
                db = sqlite3.connect(self.path, timeout=SETUP_TIMEOUT_S, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                st = os.stat(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(
                f"cannot open the rate budget file {self.path}: {exc} (choose one with --budget-file)"
            ) from None
        return db, (st.st_dev, st.st_ino), took_over

    def _watch(self, every_s: float) -> None:
        while not self._closed.wait(every_s):
            with contextlib.suppress(UsageError):  # the path cannot be opened now: try again next time
                self.rejoin_if_moved()

    def _moved(self) -> bool:
        """Whether the path names another file than the one held, or none."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True  # gone: made again, with what the old file knows
        return (st.st_dev, st.st_ino) != self._identity

    def rejoin_if_moved(self) -> bool:
        """If the path no longer names the file held (deleted, replaced), rejoin the one it names.

        The starts of the last retention period and the pause the old file held are copied into
        the file now at the path (creating it if none is there), once: every process holding the
        deleted file holds the same log, so the first to rejoin copies it and marks the file. The
        old file is let go only once the copy is committed; a new file that cannot be opened or
        written now (busy, a folder being removed) leaves everything as it was, for the next check.
        It never waits long (``REJOIN_TIMEOUT_S``): the event loop may be the caller. Returns True
        when it rejoined.
        """
        if not self._moved():
            return False
        with self._lock:
            if self._closed.is_set() or not self._moved():  # another thread rejoined meanwhile
                return False
            since = self.clock() - max(_MIN_RETENTION_S, self._meta("retention_s"))
            starts = self._db.execute("SELECT t FROM starts WHERE t > ?", (since,)).fetchall()
            pause = max(self._meta("paused_until"), self._pause_due)
            # every holder of the deleted file copies the same log: the first one's copy is the copy
            gone = self._identity
            mark = f"copied {gone[0]}:{gone[1]}"
            try:
                db, identity, _ = self._connect(REJOIN_TIMEOUT_S)
            except UsageError:
                return False
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    if db.execute("SELECT 1 FROM meta WHERE key = ?", (mark,)).fetchone() is None:
                        db.executemany("INSERT INTO starts VALUES (?)", starts)
                        db.execute("INSERT INTO meta VALUES (?, ?)", (mark, len(starts)))
                    if pause:
                        db.execute(
                            "INSERT INTO meta VALUES ('paused_until', ?1)"
                            " ON CONFLICT (key) DO UPDATE SET value = max(value, ?1)",
                            (pause,),
                        )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error:
                db.close()
                return False
            self._db.close()
            self._db, self._identity, self._pause_due = db, identity, 0.0
            self.rejoined += 1
            return True

    def close(self) -> None:
        """Close the file (the log stays for the next process); the watcher stops."""
        with self._lock:
            self._closed.set()
            self._db.close()

    def _meta(self, key: str, default: float = 0.0) -> float:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def try_start(self, max_requests: int, span_s: float) -> float:
        """Record one start now and return 0, or return the seconds to wait first.

        A start is allowed when no pause is pending, the server's last word
        leaves budget (``server_left``), and fewer than ``max_requests`` starts
        (of any process) fall within the last ``span_s``. A file busy beyond
        ``BUSY_TIMEOUT_S`` returns ``BUSY_RETRY_S``: ask again after that.
        A process that has just created the file waits out ``REJOIN_GRACE_S`` first.
        """
        self.rejoin_if_moved()
        with self._lock:
            if self._hold_until and (hold := self._hold_until - self.clock()) > 0:
                return hold
            return self._try_start(max_requests, span_s)

    def _try_start(self, max_requests: int, span_s: float) -> float:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy: another process holds it; never stall the loop
            return BUSY_RETRY_S
        try:
            now = self.clock()  # read under the lock: starts are logged in order
            if self._pause_due:
                self._write_pause(self._pause_due)
            meta: dict[str, float] = dict(db.execute(_GRANT_META).fetchall())  # one look-up for the three
            if (held := _held(meta)) > now:
                return held - now
            left = meta.get("server_left", -1.0)
            if left >= 0 and meta.get("server_reset_at", 0.0) <= now:  # the server's window has renewed
                db.execute("DELETE FROM meta WHERE key IN ('server_left', 'server_reset_at', 'server_seen')")
                left = -1.0
            self._grants += 1
            if self._grants % _PRUNE_EVERY == 1:
                retention = max(_MIN_RETENTION_S, span_s, self._meta("retention_s"))
                if retention > self._meta("retention_s"):
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('retention_s', ?)", (retention,))
                db.execute("DELETE FROM starts WHERE t < ?", (now - retention,))
            since = now - span_s
            (count,) = db.execute("SELECT count(*) FROM starts WHERE t > ?", (since,)).fetchone()
            if count >= max_requests:
                # the window frees up when the (count - N + 1)-th oldest start in it expires
                oldest: float
                (oldest,) = db.execute(
                    "SELECT t FROM starts WHERE t > ? ORDER BY t LIMIT 1 OFFSET ?", (since, count - max_requests)
                ).fetchone()
                return max(1e-3, oldest + span_s - now)
            db.execute("INSERT INTO starts VALUES (?)", (now,))
            if left > 0:
                db.execute("UPDATE meta SET value = value - 1 WHERE key = 'server_left'")
            self.last_start = now
            return 0.0
        finally:
            db.execute("COMMIT")

    def note_server(self, remaining: int, reset_s: float, started_at: float) -> None:
        """The server said ``remaining`` starts are left for ``reset_s`` seconds, answering a request started at ``started_at``.

        Starts logged after ``started_at`` (by any process) are not in its
        count, so they are taken off. An answer to an older request than the
        one the file already heard from is ignored. A busy file keeps the
        older word (the pacer's own count still applies).
        """
        with self._lock:
            self._note_server(remaining, reset_s, started_at)

    def _note_server(self, remaining: int, reset_s: float, started_at: float) -> None:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return
        try:
            if started_at < self._meta("server_seen", -1.0):
                return
            (since,) = db.execute("SELECT count(*) FROM starts WHERE t > ?", (started_at,)).fetchone()
            db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [
                    ("server_left", float(max(0, remaining - since))),
                    ("server_reset_at", self.clock() + reset_s),
                    ("server_seen", started_at),
                ],
            )
        finally:
            db.execute("COMMIT")

    def _write_pause(self, deadline: float) -> None:
        if deadline > self._meta("paused_until"):
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('paused_until', ?)", (deadline,))
        self._pause_due = 0.0

    def pause_until(self, deadline: float) -> None:
        """Hold every process's starts until the wall-clock ``deadline`` (never shortens a pause).

        A busy file gets it with this process's next grant (which waits for it anyway).
        """
        with self._lock:
            self._pause_until(deadline)

    def _pause_until(self, deadline: float) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            self._pause_due = max(self._pause_due, deadline)
            return
        try:
            self._write_pause(max(deadline, self._pause_due))
        finally:
            self._db.execute("COMMIT")

    @property
    def held_until(self) -> float:
        """The wall-clock time before which no process of the token may start (0 or past when none):
        a pause any process recorded, the server's word that no budget is left before its reset, or
        this process's wait for a deleted file's holders. Read only: nothing is granted or logged."""
        with self._lock:
            meta: dict[str, float] = dict(self._db.execute(_GRANT_META).fetchall())
        return max(_held(meta), self._hold_until)

    @property
    def paused_until(self) -> float:
        """The wall-clock time until which every process waits (0 or past when none)."""
        with self._lock:
            return self._meta("paused_until")


class SharedWindow:
    """The ``Pacer``'s window gate over a ``Budget``: ``--rate N/T`` for every process of the token.

    Checking the window and counting the start are one transaction of the file
    (another process may start in between two), so ``wait_s`` returning 0 has
    already logged the start: this gate must be the pacer's last. Its times are
    the file's wall clock, read under its lock, not the pacer's ``now``.
    """

    __slots__ = ("_budget", "_max_requests", "_span_s", "_started_at")

    def __init__(self, budget: Budget, max_requests: int, span_s: float) -> None:
        self._budget = budget  # the token's shared file
        self._max_requests = max_requests  # N of --rate N/T (this process's promise, against every start)
        self._span_s = span_s  # T as enforced, with the grace
        # The wall-clock start of each ticket still waiting for its response, so the server's word
        # can be written to the shared file with the starts it has not counted.
        self._started_at: dict[int, float] = {}

    def wait_s(self, now: float) -> float:
        """0 with the start logged in the file, or the seconds to wait (pause, server budget, window)."""
        return self._budget.try_start(self._max_requests, self._span_s)

    def on_start(self, now: float, ticket: int) -> None:
        """Remember when (on the file's clock) the start ``ticket`` was logged."""
        if len(self._started_at) > MAX_UNANSWERED:  # attempts that never got a response
            self._started_at.clear()
        self._started_at[ticket] = self._budget.last_start

    def on_response(self, answer: Answer) -> None:
        """Share the server's word on the token's budget with the token's other processes."""
        started_at = self._started_at.pop(answer.ticket, None) if answer.ticket is not None else None
        if answer.ratelimit is not None and started_at is not None:
            self._budget.note_server(answer.ratelimit[0], answer.ratelimit[1], started_at)
