"""Checks that run before a command opens anything for writing or sends anything.

A multi-hour job must not find out at the end that its report cannot be
written, nor destroy its own input because ``--out`` named it. Every output a
command will write is checked here first: its directory exists and is
writable, it is not a directory, it does not resolve (through ``./``, ``..``
or a symlink) to the input or to another output of the same command, and a
state file that exists really is SQLite. Each problem is one ``UsageError``
sentence (exit 2); nothing has been created, locked or sent when it is raised.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
from collections.abc import Iterable
from typing import Any

from ..errors import UsageError
from ..state.readonly import foreign_tables, is_sqlite, recorded_fingerprint

STDIO = "-"


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` are typos, never a setting)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return value


def _is_special(path: str) -> bool:
    """A device or pipe (``/dev/null``, ``/dev/stdout``, a FIFO): not a file an output could clobber."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _check_writable(flag: str, path: str) -> None:
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory; name a file")
    if _is_special(path):
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: the directory {folder} does not exist; create it or choose another path")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {path} is not writable; choose another path")
    elif not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot create files in {folder}; choose another path")


def check_state(path: str, *, must_exist: bool, flag: str = "--state") -> None:
    """The state file: an SQLite file that can be written (with its -wal/-shm beside it), or creatable."""
    if must_exist and not os.path.exists(path):
        raise UsageError(f"no state file at {path}")  # the CLI says so first; library callers too
    _check_writable(flag, path)
    if os.path.isfile(path):
        try:
            ok = is_sqlite(path)
        except OSError as exc:
            raise UsageError(f"cannot read {flag} {path}: {exc.strerror}") from None
        if not ok:
            raise UsageError(
                f"{flag} {path} is not a batcher state file (not SQLite); it was left untouched: check the path"
            )
        if tables := foreign_tables(path):
            raise UsageError(
                f"{flag} {path} is another program's SQLite database (tables {', '.join(tables[:5])}), "
                "not a batcher state file; it was left untouched: check the path"
            )
        folder = os.path.dirname(os.path.abspath(path))
        if not os.access(folder, os.W_OK | os.X_OK):  # SQLite's WAL needs -wal and -shm files beside it
            raise UsageError(f"{flag} {path}: cannot create files in {folder} (SQLite needs them); move the state")


def check_outputs(
    input_path: str | None,
    outputs: Iterable[tuple[str, str | None]],
    inputs: Iterable[tuple[str, str | None]] = (),
) -> None:
    """Check every ``(flag, path)`` output of one command before anything is opened for writing.

    ``None`` and ``-`` (stdout) are skipped. An output may not resolve to the
    input (or to another file the command reads, ``inputs``, such as
    ``--token-file``) or to another output of the same command: that would
    destroy the input, or interleave two files into one.
    """
    seen: dict[Any, str] = {}  # by resolved path, and by (device, inode) for files that exist: hard links too
    for name, path in [("the input", input_path), *inputs]:
        if path and path != STDIO and not _is_special(path):
            for key in _identities(path, with_sidecars=True):
                seen.setdefault(key, name)
    checked = [(flag, path) for flag, path in outputs if path and path != STDIO]
    for flag, path in checked:
        _check_writable(flag, path)
    checked = [(flag, path) for flag, path in checked if not _is_special(path)]
    # every output's SQLite journal files first: an output listed before the state or budget file
    # may not be one of theirs either
    for flag, path in checked:
        own = _identities(path)
        for key in _identities(path, with_sidecars=True):
            if key not in own:
                seen.setdefault(key, f"{flag} {path}")
    for flag, path in checked:
        keys = _identities(path)
        if same := next((seen[k] for k in keys if k in seen), None):
            raise UsageError(f"{flag} {path} is the same file as {same} (or part of it); choose a different path")
        for key in keys:
            seen[key] = f"{flag} {path}"


# An SQLite file's journal files are part of it: after kill -9 a job's commits may all be in its -wal.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _identities(path: str, *, with_sidecars: bool = False) -> list[Any]:
    """What makes two paths one file: the resolved path, and the inode when the file exists
    (``with_sidecars``: and those of the SQLite journal files that would sit beside it)."""
    keys: list[Any] = []
    real = os.path.realpath(path)  # SQLite puts its journal files beside the file a symlink names
    for name in (path, *(real + s for s in SQLITE_SIDECARS)) if with_sidecars else (path,):
        keys.append(os.path.realpath(name))
        try:
            st = os.stat(name)
        except OSError:
            continue
        keys.append((st.st_dev, st.st_ino))
    return keys


def recorded_input(state_path: str) -> str | None:
    """The input file a state's job recorded (None: stdin, no job, or not a state): an output of
    ``report``/``rollback`` must not overwrite it either."""
    fingerprint = recorded_fingerprint(state_path)
    path = fingerprint.get("input") if fingerprint else None
    return path if isinstance(path, str) and path != STDIO else None


def check_job_outputs(
    config: Any, extra: Iterable[tuple[str, str | None]] = (), inputs: Iterable[tuple[str, str | None]] = ()
) -> None:
    """``run``: the state, report, results, summary (and ``extra``) outputs of a ``JobConfig``."""
    report_flag = "--report" if config.report_path else "the report (default INPUT.failures.jsonl)"
    state_flag = "--state" if config.state_path else "the state (default INPUT.state.db)"
    outputs = [
        (state_flag, config.state_file),
        (report_flag, config.report_file),
        ("--results", config.results_path),
        ("--summary-json", config.summary_path),
        *extra,
    ]
    check_outputs(config.input, outputs, inputs)
    check_state(config.state_file, must_exist=False, flag=state_flag)
