"""Pure document logic: projection, deep merge, diff, the credential guard, redaction."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from batcher.core.documents import deep_merge, diff, missing_credentials, project, redact, strip_secrets
from batcher.core.schema import DEFAULT_DOCUMENT


def test_project_drops_only_read_only_fields_and_carries_unknown_ones():
    got = {
        "id": "x",
        "created_at": "t",
        "updated_at": "t",
        "status": "ACTIVE",
        "title": "a",
        "ai_config": {"transcription": {"language": "fr", "future": 1}},
    }
    assert project(got) == {"title": "a", "ai_config": {"transcription": {"language": "fr", "future": 1}}}


def test_merge_objects_key_by_key_arrays_and_null_replace():
    base = {
        "ai_config": {"transcription": {"language": "en-US", "keywords": ["a"]}},
        "title": "t",
        "transcribe_on_end": True,
    }
    patch = {"ai_config": {"transcription": {"keywords": ["b"]}}, "title": None}
    assert deep_merge(base, patch) == {
        "ai_config": {"transcription": {"language": "en-US", "keywords": ["b"]}},
        "title": None,
        "transcribe_on_end": True,
    }
    assert base["ai_config"]["transcription"]["keywords"] == ["a"], "inputs are not mutated"


def test_diff_lists_leaf_changes():
    before = {"a": {"b": 1, "c": [1]}, "d": True}
    after = {"a": {"b": 2, "c": [1]}, "d": True, "e": None}
    assert diff(before, after) == [{"path": "a.b", "before": 1, "after": 2}]
    assert diff(before, {"a": {"b": 1, "c": [1, 2]}, "d": True}) == [{"path": "a.c", "before": [1], "after": [1, 2]}]


def test_guard_requires_the_credentials_of_the_storage_type():
    stored = {"recording_config": {"storage_config": {"type": "aws", "bucket": "b"}}}
    assert missing_credentials(stored, {"title": "x"}) == ["access_key", "secret"]
    assert missing_credentials(stored, {"recording_config": {"storage_config": {"type": "aws", "secret": "s"}}}) == [
        "access_key"
    ]
    both = {"recording_config": {"storage_config": {"type": "aws", "access_key": "a", "secret": "s"}}}
    assert missing_credentials(deep_merge(stored, both), both) == []


def test_guard_sftp_accepts_password_or_key_and_gcs_secret_alone():
    sftp = {"recording_config": {"storage_config": {"type": "sftp"}}}
    assert (
        missing_credentials(sftp, {"recording_config": {"storage_config": {"type": "sftp", "private_key": "k"}}}) == []
    )
    assert missing_credentials(sftp, {}) == ["password or private_key"]
    gcs = {"recording_config": {"storage_config": {"type": "gcs"}}}
    assert missing_credentials(gcs, {"recording_config": {"storage_config": {"type": "gcs", "secret": "s"}}}) == []


def test_guard_is_quiet_without_storage():
    assert missing_credentials({"recording_config": {"storage_config": None}}, {}) == []
    assert missing_credentials(DEFAULT_DOCUMENT, {}) == []


def test_redact_and_strip_secrets():
    doc = {"recording_config": {"storage_config": {"type": "aws", "access_key": "AK", "secret": "S", "bucket": "b"}}}
    assert redact(doc)["recording_config"]["storage_config"] == {
        "type": "aws",
        "access_key": "***",
        "secret": "***",
        "bucket": "b",
    }
    assert strip_secrets(doc)["recording_config"]["storage_config"] == {"type": "aws", "bucket": "b"}
    assert doc["recording_config"]["storage_config"]["secret"] == "S"


leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3))
docs = st.recursive(leaf, lambda inner: st.dictionaries(st.sampled_from("abcde"), inner, max_size=4), max_leaves=12)
objects = st.dictionaries(st.sampled_from("abcde"), docs, max_size=5)


@given(objects, objects)
def test_merging_a_patch_twice_equals_once(base, patch):
    once = deep_merge(base, patch)
    assert deep_merge(once, patch) == once


@given(objects, objects)
def test_merge_result_has_no_diff_from_itself_and_patch_leaves_win(base, patch):
    merged = deep_merge(base, patch)
    assert diff(merged, merged) == []
    for key, value in patch.items():
        if not isinstance(value, dict):
            assert merged[key] == value


@given(objects, objects)
def test_merging_the_diff_into_before_reproduces_the_target(before, after):
    patch: dict = {}
    for change in diff(before, after):
        *parents, leaf = change["path"].split(".")
        node = patch
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = change["after"]
    assert _prune(deep_merge(before, patch)) == _prune(after)


def _prune(doc):
    # diff shows a missing key as None, so compare with None-valued keys dropped
    if isinstance(doc, dict):
        return {k: _prune(v) for k, v in doc.items() if v is not None}
    return doc
