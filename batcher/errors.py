"""The one exception tree of batcher.

    BatcherError                 anything batcher raises on purpose
    ├── UsageError               bad options or configuration (exit 2, nothing sent)
    │   ├── InputError           the input cannot be read as CSV/JSONL at all
    │   ├── ValidationFailed     some rows are invalid (no --skip-invalid)
    │   ├── StateMismatchError   the state file belongs to another job (exit 2; --force)
    │   └── InputChangedError    a row read to be sent differs from what the job recorded (exit 2)
    ├── StateLockedError         another process holds the state file (exit 2)
    ├── HaltError                the job stopped early on purpose (exit 3)
    │   └── AuthError            the API answered 401/403: the token is bad
    └── Interrupted              SIGINT/SIGTERM; state saved, resumable (exit 130)

Row-level problems are *not* exceptions: a bad row is a ``RowError`` value
(see ``core/rows.py``; the schema in ``core/schema.py``) and a failed request is a ``CallResult`` (see ``http/client.py``),
because one bad row must never stop a million good ones.

Messages never contain secrets: the token and storage credentials are redacted
before any text reaches an exception.
"""

from __future__ import annotations


class BatcherError(Exception):
    """Base class of every error batcher raises on purpose."""

    exit_code = 1


class UsageError(BatcherError):
    """Bad options, configuration or input: nothing was sent."""

    exit_code = 2


class InputError(UsageError):
    """The input file cannot be read at all (missing, not CSV/JSONL, no header)."""


class StateMismatchError(UsageError):
    """The state file was made by a different job (input or meaning-changing options)."""


class InputChangedError(UsageError):
    """The input changed under the job: a row read to be sent is not the row pre-flight recorded."""


class StateLockedError(BatcherError):
    """Another batcher process is using the same state file."""

    exit_code = 2


class HaltError(BatcherError):
    """The job stopped early on purpose (max failures, auth); it is resumable."""

    exit_code = 3


class AuthError(HaltError):
    """The API rejected the token (401/403); every further request would fail too."""


class Interrupted(BatcherError):
    """SIGINT/SIGTERM: the job stopped taking rows; it is resumable (exit 130)."""

    exit_code = 130


class ValidationFailed(UsageError):
    """Some input rows are invalid and ``--skip-invalid`` was not given: nothing was sent."""


def describe_exception(exc: BaseException) -> str:
    """One line for an exception batcher did not raise on purpose (OSError, sqlite3.Error, ...).

    An OSError says what failed on which file; anything else is its type and message.
    """
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"
