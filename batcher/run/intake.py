"""The input side of ``run``: pre-flight into the state, then the rows to send, checked again.

A file is read twice. The pre-flight pass validates every row and records it
(row number, account, meeting, patch hash) before anything is sent. The send
pass reads the file again and **re-validates** every row it sends, comparing
it with that record: a file rewritten in place between the passes (or while
the job runs) stops the job with ``InputChangedError`` (exit 2, nothing more
sent, the row named), never sends an unchecked body or id. Both passes read
rows the same way: the job's ``--set`` constants merged in by the ``Source``
and ``status`` judged by the job's mode (``check_row(mode=)``), so such rows
compare equal and are not taken for changed input.

A stdin job is checked as it streams; resumed, every streamed row that the
state already knows must be the same row (meeting, account, patch hash) or
the job is refused (``InputChangedError``), unless ``--force``, which records
the new row in its place.

Pre-flight runs in a worker thread (``asyncio.to_thread``) so the event loop
stays free to see a SIGINT; it checks ``should_stop`` every ``STOP_CHECK_ROWS``
rows and abandons its one transaction when asked, leaving no half state.

``Intake.prepare`` does all of the start of a job (the state's identity,
pre-flight, the counts) and returns it as one ``Prepared`` value, computed
once: the engine, the progress bar and the estimate line read the same counts,
and no one scans the file again just to count its rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.config import JobConfig
from ..core.identity import patch_hash
from ..core.redaction import redacted_patch_json
from ..core.rows import Row, RowError
from ..core.schema import CARRIED_KEY, ROW_KEYS, is_secret_path
from ..errors import InputChangedError, Interrupted, ValidationFailed
from ..input.checks import KeyLog, check_row, duplicate_errors, iter_checked
from ..input.digest import file_digest
from ..input.source import STDIN, Source
from ..state.store import RowRecord, Store
from .pool import TICK

STOP_CHECK_ROWS = 1024
_BATCH_ROWS = 10000


def fingerprint(config: JobConfig, salt: str = "") -> dict[str, Any]:
    """What makes this job this job: the input and the options that change meaning."""
    is_stdin = config.input == STDIN
    fp: dict[str, Any] = {
        "input": "-" if is_stdin else str(Path(config.input).resolve()),
        "mode": config.mode,
        "base_url": config.base_url.rstrip("/"),
        "app_id": config.app_id,
        "account_id": config.account_id,
        "format": config.input_format,
        # --set changes meaning; a credential is kept as a digest (a changed one is still noticed)
        "set": [[path, _digest_if_secret(path, value, salt)] for path, value in config.set_values] or None,
    }
    if not is_stdin:
        try:
            fp["size"] = os.path.getsize(config.input)
            fp["content"] = file_digest(config.input)
        except OSError:
            pass  # Source raises the clear error
    return fp


def defers_required(config: JobConfig) -> bool:
    """Merge mode judges required-if fields on the merged document (the meeting may have them)."""
    return config.mode == "merge"


def record_of(result: Row | RowError) -> RowRecord:
    """The state's record of a checked row: pending when valid, failed ``invalid`` otherwise."""
    if isinstance(result, Row):
        return RowRecord(result.number, result.account_id, result.meeting_id, patch_hash(result.patch))
    return RowRecord(
        result.number,
        result.account_id,
        result.meeting_id,
        None,
        "failed",
        "invalid",
        result.message,
        redacted_patch_json(result.patch),
    )


def _same_row(record: RowRecord, result: Row | RowError) -> bool:
    now = record_of(result)
    return (now.meeting_id, now.account_id, now.patch_hash) == (
        record.meeting_id,
        record.account_id,
        record.patch_hash,
    )


def _as_recorded(number: int, data: dict[str, Any], default_account: str | None, record: RowRecord) -> Row | None:
    """The row, when its decoded content is exactly what pre-flight validated and recorded: the same
    meeting and account and a patch with the same 128-bit digest (else None: check it whole).

    The schema check is not repeated for such a row: what it would check is what the digest
    proves unchanged. A row whose content differs in any way takes the full check."""
    meeting_id = data.get("meeting_id")
    account_id = data.get("account_id") or default_account
    if not isinstance(meeting_id, str) or meeting_id != record.meeting_id or account_id != record.account_id:
        return None
    if record.patch_hash is None:
        return None
    patch = {k: v for k, v in data.items() if k not in ROW_KEYS and k != CARRIED_KEY}
    if patch_hash(patch) != record.patch_hash:
        return None
    return Row(number, meeting_id, account_id, patch)


def _changed(number: int, what: str) -> InputChangedError:
    return InputChangedError(
        f"row {number} of the input {what}; nothing more was sent. "
        "Restore the input, or start a new job (another --state, or --force)"
    )


@dataclass(frozen=True)
class Prepared:
    """The start of a job, computed once by ``Intake.prepare``: the counts and the rows to send.

    For stdin nothing is counted (rows are known as they stream): ``counts`` and
    ``to_send`` are None.
    """

    counts: dict[str, int] | None  # the state's rows per outcome (``Store.counts()``) before sending
    to_send: int | None  # rows this run sends: the unfinished ones, and failed ones with --retry-failed
    invalid: int  # invalid rows this run's pre-flight found (0: none ran, the state was already this job's)
    is_preflighted: bool  # this run (re)recorded the file's rows (a new state, another input, --force)
    rows: Callable[[Source], Iterator[Any]]  # the rows to send, read from the job's open ``Source``


# Runs blocking work off the event loop (``Job._in_thread``): intake itself stays free of asyncio.
InThread = Callable[..., Awaitable[Any]]


class Intake:
    """Pre-flight and the rows to send, for one job."""

    def __init__(
        self,
        config: JobConfig,
        store: Store,
        on_invalid: Callable[[RowError], None],
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.store = store
        self.on_invalid = on_invalid
        self.should_stop = should_stop
        self.defer = defers_required(config)

    async def prepare(self, in_thread: InThread) -> Prepared:
        """Check the state belongs to this job; pre-flight a file into it (through ``in_thread``:
        the loop stays free); count what is to send. Raises what pre-flight raises.

        The state's own salt makes digests of ``--set`` credentials incomparable across states.
        """
        store, cfg = self.store, self.config
        is_stdin = cfg.input == STDIN
        salt = store.get_meta("salt")
        if salt is None:
            salt = secrets.token_hex(16)
            store.set_meta("salt", salt)
        fp = fingerprint(cfg, salt)
        invalid, is_preflighted = 0, False
        if store.check_identity(fp, force=cfg.force):
            # stdin rows are matched one by one as they stream (row, patch hash): no rebuild
            if not is_stdin:
                invalid = await in_thread(self.load_rows, rebuild=not store.is_new)
                is_preflighted = True
            store.set_meta("fingerprint", fp)
        if is_stdin:
            return Prepared(None, None, invalid, is_preflighted, self.rows_from_stdin)
        counts = store.counts()
        return Prepared(counts, store.count_todo(cfg.retry_failed), invalid, is_preflighted, self.rows_to_send)

    def load_rows(self, *, rebuild: bool) -> int:
        """First pass over a file: validate every row into the state (nothing sent yet)."""
        try:
            with Source(self.config.input, self.config.input_format, constants=self.config.set_values) as source:
                return self.preflight(source, rebuild=rebuild)
        except (ValidationFailed, Interrupted):
            if self.store.is_new:
                self.store.close()
                remove_state(self.config.state_file)
            raise

    def preflight(self, source: Source, *, rebuild: bool = False) -> int:
        """Validate every row into the state (one transaction); returns the invalid count.

        Without ``--skip-invalid`` an invalid row aborts with nothing stored.
        ``rebuild`` (``--force`` on an existing state) sets the old rows aside
        in the same transaction, so an aborted rebuild leaves them as they were.
        """
        cfg, store = self.config, self.store
        invalid = 0
        batch: list[RowRecord] = []
        keys = KeyLog()
        store.begin()
        try:
            if rebuild:
                store.archive_rows()
            checked = iter_checked(
                source, cfg.account_id, keys, require_account=True, defer_required=self.defer, mode=cfg.mode
            )
            for count, result in enumerate(checked, 1):
                if isinstance(result, RowError):
                    invalid += 1
                    self.on_invalid(result)
                batch.append(record_of(result))
                if len(batch) >= _BATCH_ROWS:
                    store.add_rows(batch)
                    batch.clear()
                if count % STOP_CHECK_ROWS == 0 and self.should_stop():
                    raise Interrupted(
                        "interrupted during the pre-flight check; nothing was sent, the state is as it was"
                    )
            dups = duplicate_errors(
                cfg.input,
                cfg.input_format,
                cfg.account_id,
                keys.duplicates(),
                self.defer,
                mode=cfg.mode,
                constants=cfg.set_values,
            )
            for duplicate in dups:
                invalid += 1
                self.on_invalid(duplicate)
                batch.append(record_of(duplicate))
            store.add_rows(batch)
            if invalid and not cfg.skip_invalid:
                raise ValidationFailed(f"{invalid} invalid row(s); nothing was sent. Fix them, or pass --skip-invalid")
            store.carry_over()
        except BaseException:
            store.rollback_tx()
            raise
        store.commit()
        return invalid

    def rows_to_send(self, source: Source) -> Iterator[Any]:
        """File input: the rows the state says are not done, each validated again and matched
        with what pre-flight recorded (merge join on row numbers)."""
        cfg = self.config
        todo = self.store.todo_rows(retry_failed=cfg.retry_failed)
        next_row = next(todo, None)
        skipped = 0
        for number, raw in source.records():
            if next_row is None:
                return
            if number < next_row.row:
                skipped += 1
                if skipped % 4096 == 0:
                    yield TICK
                continue
            data, problems = source.decode(raw)
            result: Row | RowError | None = None if problems else _as_recorded(number, data, cfg.account_id, next_row)
            if result is None:  # not what pre-flight validated: check it whole, for the message
                result = check_row(
                    number, data, problems, cfg.account_id, True, defer_required=self.defer, mode=cfg.mode
                )
                if isinstance(result, RowError) or not _same_row(next_row, result):
                    raise _changed(number, "changed since the job's pre-flight check recorded it")
            next_row = next(todo, None)
            yield result
        if next_row is not None:
            raise _changed(next_row.row, "is gone since the job's pre-flight check recorded it")

    def rows_from_stdin(self, source: Source) -> Iterator[Any]:
        """Stdin: check and record rows as they stream; skip what an earlier run finished (``TICK``)."""
        cfg, store = self.config, self.store
        checked = iter_checked(
            source, cfg.account_id, store.keys, require_account=True, batch=1, defer_required=self.defer, mode=cfg.mode
        )
        for result in checked:
            known = store.row_record(result.number)
            if known is not None and not _same_row(known, result):
                if not cfg.force:
                    raise _changed(result.number, "differs from the row an earlier run of this job read")
                known = None
            if known is not None and isinstance(result, Row) and _is_done(known, cfg.retry_failed):
                yield TICK  # the feeder waits for the next line off the loop (stdin_lines.py), never here
                continue
            if known is not None and isinstance(result, RowError) and known.outcome == "failed":
                # an invalid row an earlier run recorded (and reported): the same row, still invalid; its
                # outcome and its --results line stand, exactly once across resumes
                yield TICK
                continue
            store.add_rows([record_of(result)])
            yield result


def _is_done(record: RowRecord, retry_failed: bool) -> bool:
    if record.outcome in ("succeeded", "unchanged"):
        return True
    return record.outcome == "failed" and not retry_failed and record.error != "auth"


def remove_state(path: str) -> None:
    """Delete a state file made by this run (and its WAL files)."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def _digest_if_secret(path: str, value: Any, salt: str) -> Any:
    """``value``, or for a write-only credential a slow salted digest of it (scrypt, the state's own
    random salt): the state file never holds a secret, nor a fast hash to guess one from."""
    if not is_secret_path(path):
        return value
    digest = hashlib.scrypt(str(value).encode(), salt=bytes.fromhex(salt) or b"batcher", n=2**14, r=8, p=1, dklen=16)
    return "scrypt:" + digest.hex()
