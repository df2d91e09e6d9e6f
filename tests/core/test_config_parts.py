"""Each edge gets its part of the job's configuration, derived from the flat ``JobConfig`` fields."""

from __future__ import annotations

import dataclasses

from batcher.core.config import HttpConfig, JobConfig, PacingConfig, PathsConfig, RateSpec, Secret

TOKEN = Secret("t0k")  # one instance: a Secret compares by identity


def job(**fields) -> JobConfig:
    return JobConfig(input="in.csv", token=TOKEN, **fields)


def test_the_parts_carry_the_fields_they_are_derived_from():
    cfg = job(rate=RateSpec(10, 2.0), concurrency=3, timeout_s=7.0, max_attempts=2, insecure=True, budget_path="b.db")
    assert cfg.pacing == PacingConfig(RateSpec(10, 2.0), 3, "b.db")
    assert cfg.http == HttpConfig(cfg.base_url, None, cfg.token, 7.0, 2, 3, True, "b.db")
    assert cfg.paths == PathsConfig("in.csv.state.db", "in.csv.failures.jsonl", None, None)


def test_the_parts_are_not_fields_so_construction_equality_and_repr_stay_the_flat_ones():
    cfg = job()
    _ = cfg.http, cfg.pacing, cfg.paths  # computed (and cached) before comparing
    assert [f.name for f in dataclasses.fields(JobConfig)][:3] == ["input", "token", "base_url"]
    assert not {"http", "pacing", "paths"} & {f.name for f in dataclasses.fields(JobConfig)}
    assert cfg == job() and "pacing" not in repr(cfg) and "t0k" not in repr(cfg.http)


def test_a_replaced_config_derives_its_parts_again():
    cfg = job(concurrency=2)
    assert cfg.pacing.max_in_flight == 2
    assert dataclasses.replace(cfg, concurrency=5).pacing.max_in_flight == 5


def test_a_jobs_meeting_url_is_its_http_parts():
    cfg = job(app_id="app1", base_url="https://api.example.com/v4/")
    assert cfg.meeting_url("acct", "m-1") == cfg.http.meeting_url("acct", "m-1")
    assert (
        cfg.http.meeting_url("acct", "m-1") == "https://api.example.com/v4/accounts/acct/realtime/kit/app1/meetings/m-1"
    )
