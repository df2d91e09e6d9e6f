"""The decision core: what to do with one row, given what the server shows. Pure.

    decide(mode, current, patch, options) -> Unchanged | Send | Refuse
    restore(write_state, before, after, current, options) -> Unchanged | Send | Refuse   (rollback)

``run`` carries the decision out, ``plan`` prints it, ``rollback`` asks
``restore`` about a before-document: they cannot disagree, because none of
them decides anything itself. A new mode is one function in ``MODES``.

Choices made here (the README repeats them):

- ``current`` is the meeting as GET returned it, or ``None`` when the mode
  reads nothing first (replace and patch: ``run`` sends no GET there, so
  ``plan`` passes ``None`` too and shows the write ``run`` would send).
- Merge carries every field GET returned, known to the schema or not; only
  ``id``, ``created_at``, ``updated_at`` and ``status`` are dropped.
- Values compare as JSON does (``merge.same``): ``60`` equals ``60.0``;
  ``true`` is not ``1``.
- Required-if rules (``storage_config.type`` ...) are judged on the merged
  document in merge mode: a key rotation need not repeat the type the meeting
  already has. A merged document still lacking one is refused as
  ``invalid_merged`` (not ``invalid``: it depends on the meeting, so
  ``--retry-failed`` tries such rows again).
- ``Send.confirm`` is what a GET must show for the write to count as landed
  when its outcome is unknown (merge: the merged document; replace: the row
  over the spec's defaults; patch: the patch's values), or ``None`` when the
  body sets a write-only credential, which GET never shows: such a write is
  only ever confirmed by its own 2xx.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .documents import deep_merge, missing_credentials, project, same, sets_secret, storage_of, strip_secrets
from .readings import without_grown
from .rows import missing_required
from .schema import DEFAULT_DOCUMENT


@dataclass(frozen=True, slots=True)
class Options:
    """The options that change a decision."""

    allow_credential_reset: bool = False
    force: bool = False  # rollback: overwrite a meeting that changed again after the job


@dataclass(frozen=True, slots=True)
class Unchanged:
    """Nothing to send: the meeting already is what the row asks for."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``body`` with ``method``; ``confirm``: what GET must show (None: GET cannot tell)."""

    method: str
    body: dict[str, Any]
    confirm: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Refuse:
    """Do not send: the row fails with ``error`` (``credential_guard``, ``invalid``, ``conflict``)."""

    error: str
    message: str


Decision = Unchanged | Send | Refuse


def _confirm(body: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any] | None:
    return None if sets_secret(body) else shown


def decide_merge(current: dict[str, Any] | None, patch: dict[str, Any], options: Options) -> Decision:
    """GET, deep-merge, PUT the whole document (every field GET returned but the read-only ones)."""
    if current is None:
        raise ValueError("merge mode needs the current document")
    carried = project(current)
    merged = deep_merge(carried, patch)
    if same(merged, carried):
        return Unchanged()
    if missing := missing_required(merged):  # it looks only at the required-if objects: unknown keys do not matter
        text = "; ".join(f"{m.field}: {m.reason} and the meeting has none" for m in missing)
        # not the row's fault alone: the meeting lacks it, so --retry-failed tries again (the meeting may change)
        return Refuse("invalid_merged", text)
    if refused := _guard(merged, patch, options):
        return refused
    if inexact := _inexact_number(merged):  # what would be sent back: a row may overwrite the number
        return Refuse(
            "inexact_number",
            f"{inexact}: the meeting holds a number too large to read exactly (an integer beyond 64 bits); "
            "carrying it through the PUT would change it, so nothing was sent",
        )
    return Send("PUT", merged, _confirm(merged, merged))


def _guard(document: dict[str, Any], patch: dict[str, Any], options: Options) -> Refuse | None:
    """The credential guard: a PUT of ``document`` with a storage whose secrets ``patch`` lacks erases them."""
    lacking = missing_credentials(document, patch)
    if not lacking or options.allow_credential_reset:
        return None
    return Refuse(
        "credential_guard",
        f"PUT would erase the stored storage credentials ({', '.join(lacking)}; GET never returns them): "
        "add them to the row, or pass --allow-credential-reset",
    )


_INEXACT = 2.0**63  # orjson reads an integer beyond 64 bits as a float at least this large


def _inexact_number(document: Any) -> str | None:
    """The path of a number GET gave that cannot travel back exactly (an integer beyond 64 bits,
    which the JSON reader turned into a float), or None. A flat scan first (no paths built): such
    numbers are rare, and this runs for every row."""
    stack = [document]
    while stack:
        node = stack.pop()
        values = node.values() if isinstance(node, dict) else node
        for value in values:
            if isinstance(value, (dict, list)):
                stack.append(value)
            elif isinstance(value, float) and abs(value) >= _INEXACT and value.is_integer():
                return _path_of_inexact(document, "")
    return None


def _path_of_inexact(node: Any, path: str) -> str | None:
    items = node.items() if isinstance(node, dict) else ((f"[{i}]", v) for i, v in enumerate(node))
    for key, value in items:
        sub = (f"{path}.{key}" if path else key) if isinstance(node, dict) else f"{path}{key}"
        if isinstance(value, (dict, list)):
            if found := _path_of_inexact(value, sub):
                return found
        elif isinstance(value, float) and abs(value) >= _INEXACT and value.is_integer():
            return sub
    return None


def decide_replace(current: dict[str, Any] | None, patch: dict[str, Any], options: Options) -> Decision:
    """PUT the row as the whole document: what it leaves out returns to its default. No GET.

    The credential guard holds here too: a row whose storage_config lacks the secrets would
    erase the ones the meeting has (nothing was read, so they cannot be known)."""
    if refused := _guard(patch, patch, options):
        return refused
    return Send("PUT", patch, _confirm(patch, deep_merge(DEFAULT_DOCUMENT, patch)))


def decide_patch(current: dict[str, Any] | None, patch: dict[str, Any], options: Options) -> Decision:
    """PATCH the row's fields alone. No GET."""
    return Send("PATCH", patch, _confirm(patch, patch))


MODES: dict[str, Callable[[dict[str, Any] | None, dict[str, Any], Options], Decision]] = {
    "merge": decide_merge,
    "replace": decide_replace,
    "patch": decide_patch,
}
# Modes whose decision needs the meeting as GET shows it first.
READS_FIRST = frozenset({"merge"})


def decide(mode: str, current: dict[str, Any] | None, patch: dict[str, Any], options: Options) -> Decision:
    """What to do with one row: ``current`` is GET's document (None when ``mode`` reads nothing)."""
    return MODES[mode](current, patch, options)


def expected_after(mode: str, current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The meeting after the row's write (for ``plan``'s diff; secrets included: redact before showing)."""
    if mode == "replace":
        return deep_merge(DEFAULT_DOCUMENT, patch)
    return deep_merge(project(current), patch)


def restore(
    write_state: str,
    before: dict[str, Any],
    after: dict[str, Any],
    current: dict[str, Any] | None,
    options: Options,
    landed_after: dict[str, Any] | None = None,
) -> Decision:
    """Rollback of one meeting: PUT ``before`` back when that is safe (the README's rollback table).

    ``write_state`` says whether the job's latest write landed (``landed``),
    may have (``unknown``/``pending``), failed after an earlier write that may
    have landed (``earlier``) or simply failed (``failed``: never a change of
    the job). ``after`` is what the job wrote, with the credentials it set
    shown as ``"***"``; ``current`` what GET shows now (``None``: not read);
    ``landed_after`` the job's last write that landed or may have (it differs
    from ``after`` when a later write failed).

    - as before -> Unchanged; as the job left it (``after`` or
      ``landed_after``) -> PUT ``before``;
    - a field that none of ``before``, ``after`` and ``landed_after`` has and that holds its
      default (the API grew it: ``readings.grown_fields``) is left out of every comparison;
    - anything else -> ``conflict``, overwritten only with ``force`` and only
      when the job's write surely landed (else it may be a colleague's edit);
    - the job set write-only credentials over a before-state that had storage:
      the old ones were never readable, so they cannot come back ->
      ``credential_guard`` (even when the visible fields already match);
      ``allow_credential_reset`` restores the rest and leaves no credentials.
    """
    if write_state == "failed" or current is None:
        return Unchanged()
    shown_after = strip_secrets(after)
    wrote = [after] if landed_after is None else [after, landed_after]
    # a field the API grew since (in no document of the job, at its default) is nobody's edit
    _, now = without_grown(before, project(current), wrote)
    wrote_credentials = any(sets_secret(doc) for doc in wrote) and storage_of(before) is not None
    if same(now, before) and not wrote_credentials:
        return Unchanged()
    is_jobs = same(now, shown_after) or (landed_after is not None and same(now, strip_secrets(landed_after)))
    if not same(now, before) and not is_jobs:
        if write_state == "earlier":
            return Refuse(
                "conflict",
                "the job's latest write of this meeting failed, but an earlier write of the job (before a --force "
                "or --retry-failed run) may have landed, and the meeting shows neither its before-state nor a "
                "write of the job: not overwritten, not even with --force (it may be a colleague's edit); check the "
                "meeting by hand",
            )
        if write_state != "landed":
            return Refuse(
                "conflict",
                "the job's write of this meeting has an unknown outcome and the meeting now shows neither its "
                "before-state nor the job's change, so nothing shows the job changed it: not overwritten, not even "
                "with --force (it may be a colleague's edit); check the meeting by hand",
            )
        if not options.force:
            return Refuse(
                "conflict", "the meeting changed again after the job; not overwritten (use --force to restore anyway)"
            )
    if storage_of(before) is not None and not options.allow_credential_reset:
        if wrote_credentials:
            return Refuse(
                "credential_guard",
                "the job set write-only storage credentials, and the ones before it were never readable (GET hides "
                "them): set them back by hand, or pass --allow-credential-reset to restore the other fields and "
                "leave the storage without credentials",
            )
        return Refuse(
            "credential_guard",
            "the before-state had storage credentials, which GET never returns; "
            "restore them by hand or pass --allow-credential-reset",
        )
    return Send("PUT", before, None if sets_secret(before) else before)
