"""Running an episode: the fake API, batcher CLI subprocesses, interrupts, edits, rollback.

``run_episode(plan, workdir)`` returns a ``Record`` of everything the checks in
``invariants`` need: the seeded and final server state, the request log, each
process's command, exit code and printed streams, the files batcher wrote.
Batcher is only ever run as ``python -m batcher``, so the harness tests
whatever code that import resolves to.
"""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batcher.fake.server import FakeApi

from .plan import COLLEAGUE_FIELD, EDIT_MARKER, EpisodePlan, JobPlan, render_input
from .server import ServerThread

PROCESS_TIMEOUT_S = 180.0
POLL_S = 0.05


@dataclass
class Proc:
    """One batcher process of the episode."""

    job: str
    kind: str  # run | resume | edited | final | rollback | status
    argv: list[str]
    rc: int | None = None
    stdout: str = ""
    stderr: str = ""
    signal_sent: str | None = None
    started_t: float = 0.0
    ended_t: float = 0.0


@dataclass
class JobFiles:
    """Where a job's input and outputs live."""

    input: Path
    state: Path
    report: Path
    results: Path
    summary: Path
    rollback_report: Path
    rollback_results: Path


@dataclass
class Record:
    """What an episode did and what it left behind."""

    plan: EpisodePlan
    workdir: Path
    files: dict[str, JobFiles]
    initial: dict[str, dict[str, Any]]
    after_run: dict[str, dict[str, Any]] = field(default_factory=dict)
    after_rollback: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    rollback_from: float = 0.0  # wall-clock time the rollback phase began (log entries after are rollback's)
    procs: list[Proc] = field(default_factory=list)
    status_json: dict[str, Any] = field(default_factory=dict)  # job -> status --json (None: no such command)
    chaos_drawn: dict[str, int] = field(default_factory=dict)
    edits: list[dict[str, Any]] = field(default_factory=list)  # {job, t, row, running_rc, resume_rc}
    colleague: list[dict[str, Any]] = field(default_factory=list)  # {t, meeting, value}: the colleague's edits
    elapsed_s: float = 0.0


def _files(workdir: Path, job: JobPlan) -> JobFiles:
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "stdin": ".stdin.jsonl"}[job.fmt]
    d = workdir / job.name
    d.mkdir(parents=True, exist_ok=True)
    return JobFiles(
        input=d / f"input{suffix}",
        state=d / "job.state.db",
        report=d / "failures.jsonl",
        results=d / "results.jsonl",
        summary=d / "summary.json",
        rollback_report=d / "rollback.failures.jsonl",
        rollback_results=d / "rollback.results.jsonl",
    )


class Runner:
    """Drives one episode."""

    def __init__(self, plan: EpisodePlan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.streams = workdir / "streams"  # what processes printed: scanned, not "files batcher wrote"
        self.streams.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "CLOUDFLARE_API_TOKEN": plan.token, "BATCHER_NO_UVLOOP": "1"}
        for name in ("CLOUDFLARE_ACCOUNT_ID", "BATCHER_BASE_URL", "BATCHER_APP_ID"):
            self.env.pop(name, None)
        self.files = {job.name: _files(workdir, job) for job in plan.jobs}
        self.counter = 0

    def start_server(self) -> ServerThread:
        plan = self.plan
        api = FakeApi(
            token=plan.token,
            rate_limit=plan.server_rate,
            seed=plan.seed,
            chaos=plan.chaos,
            ratelimit_headers=not plan.x_ratelimit,
            x_ratelimit_headers=plan.x_ratelimit,
        )
        api.load_seed(orjson.dumps(m) for m in plan.meetings)
        return ServerThread(api)

    def job_argv(self, job: JobPlan, server: ServerThread, command: str = "run") -> list[str]:
        f = self.files[job.name]
        n, t = self.plan.rate
        common = [
            "--base-url",
            server.base_url,
            "--state",
            str(f.state),
            "--concurrency",
            str(job.concurrency),
            "--rate",
            f"{n}/{t:g}",
            "--timeout",
            f"{self.plan.timeout_s:g}",
        ]
        if job.verbose:
            common.append("--verbose")
        if command == "rollback":
            return ["rollback", *common, "--report", str(f.rollback_report), "--results", str(f.rollback_results)]
        source = "-" if job.fmt == "stdin" else str(f.input)
        return [
            "run",
            source,
            "--mode",
            job.mode,
            *common,
            "--report",
            str(f.report),
            "--results",
            str(f.results),
            "--summary-json",
            str(f.summary),
        ]

    def spawn(self, job: JobPlan, kind: str, argv: list[str]) -> tuple[Proc, subprocess.Popen[bytes], list[Any]]:
        self.counter += 1
        out = open(self.streams / f"{self.counter:03d}-{job.name}-{kind}.out", "w+b")  # noqa: SIM115
        err = open(self.streams / f"{self.counter:03d}-{job.name}-{kind}.err", "w+b")  # noqa: SIM115
        stdin = open(self.files[job.name].input, "rb") if job.fmt == "stdin" and argv[0] == "run" else None  # noqa: SIM115
        proc = Proc(job.name, kind, argv, started_t=time.time())
        popen = subprocess.Popen(
            [sys.executable, "-m", "batcher", *argv],
            stdin=stdin or subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=self.env,
            cwd=self.workdir,
        )
        return proc, popen, [out, err, stdin]

    @staticmethod
    def finish(proc: Proc, popen: subprocess.Popen[bytes], handles: list[Any]) -> Proc:
        try:
            proc.rc = popen.wait(timeout=PROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            proc.rc = popen.wait()
            proc.signal_sent = (proc.signal_sent or "") + " TIMEOUT"
        proc.ended_t = time.time()
        out, err, stdin = handles
        for handle, attr in ((out, "stdout"), (err, "stderr")):
            handle.seek(0)
            setattr(proc, attr, handle.read().decode("utf-8", "replace"))
            handle.close()
        if stdin is not None:
            stdin.close()
        return proc


class Episode(Runner):
    """One episode from plan to ``Record``."""

    def run(self) -> Record:
        plan = self.plan
        started = time.time()
        for job in plan.jobs:
            self.files[job.name].input.write_bytes(render_input(job))
        server = self.start_server()
        done = threading.Event()  # the colleague stops when it is set
        try:
            record = Record(plan, self.workdir, self.files, initial=server.meetings())
            self.record = record
            colleague = _Thread(self.colleague, server, done) if plan.colleague_targets else None
            threads = [_Thread(self.job_flow, job, server) for job in plan.jobs]
            for thread in threads:
                thread.join()
            record.chaos_drawn = server.chaos_drawn()
            server.set_chaos(None)  # the last pass runs clean: every row must then end succeeded/unchanged
            for job in plan.jobs:
                self.run_to_end(job, server, "final", [*self.job_argv(job, server), "--retry-failed"])
            record.after_run = server.meetings()
            for job in plan.jobs:
                record.status_json[job.name] = self.status(job)
            record.rollback_from = time.time()
            for job in plan.jobs:
                self.run_to_end(job, server, "rollback", self.job_argv(job, server, "rollback"))
            done.set()
            if colleague is not None:
                colleague.join()
            record.after_rollback = server.meetings()
            record.log = server.log()
        finally:
            done.set()
            server.stop()
        record.elapsed_s = round(time.time() - started, 2)
        return record

    def run_to_end(self, job: JobPlan, server: ServerThread, kind: str, argv: list[str]) -> Proc:
        proc = self.finish(*self.spawn(job, kind, argv))
        self.record.procs.append(proc)
        return proc

    def status(self, job: JobPlan) -> dict[str, Any] | None:
        """``batcher status --state S --json``, or None when this batcher has no status command."""
        argv = ["status", "--state", str(self.files[job.name].state), "--json"]
        proc = self.finish(*self.spawn(job, "status", argv))
        self.record.procs.append(proc)
        if proc.rc == 2 and "invalid choice" in proc.stderr:
            return None
        try:
            return orjson.loads(proc.stdout)
        except orjson.JSONDecodeError:
            return {"unparsable": proc.stdout[:200], "rc": proc.rc}

    def job_flow(self, job: JobPlan, server: ServerThread) -> None:
        files = self.files[job.name]
        ids = {f"{r.account_id}/{r.meeting_id}" for r in job.rows}
        interrupts = list(job.interrupts)
        edit_after = job.edit_after
        counter = server.write_counter(ids)
        for runs in range(len(job.interrupts) + 6):
            argv = self.job_argv(job, server)
            if runs and job.retry_failed[min(runs, len(job.retry_failed) - 1)]:
                argv.append("--retry-failed")
            proc, popen, handles = self.spawn(job, "run" if runs == 0 else "resume", argv)
            edit: dict[str, Any] | None = None
            while popen.poll() is None:
                applied = counter.poll(after=proc.started_t)  # this process's writes only
                if edit_after is not None and edit is None and applied >= edit_after:
                    edit = self.edit(job)
                if interrupts and applied >= interrupts[0][1]:
                    name = interrupts.pop(0)[0]
                    popen.send_signal(getattr(signal, f"SIG{name}"))
                    proc.signal_sent = name
                    break
                time.sleep(POLL_S)
            self.finish(proc, popen, handles)
            self.record.procs.append(proc)
            if edit is not None:
                edit["running_rc"] = proc.rc
                edit["running_end"] = proc.ended_t
                edited = self.run_to_end(job, server, "edited", self.job_argv(job, server))
                edit["resume_rc"] = edited.rc
                files.input.write_bytes(render_input(job))  # the original again: the job goes on
                edit_after = None
            if proc.signal_sent or proc.rc == 3:
                continue
            if proc.rc in (0, 1) or (proc.rc == 2 and edit is None):
                return

    def colleague(self, server: ServerThread, done: threading.Event) -> None:
        """Someone editing meetings in the dashboard while the jobs, their resumes and the rollbacks
        run: a field no row names, on meetings of merge and patch jobs, every ``colleague_every_s``."""
        rng = random.Random(self.plan.seed)
        count = 0
        while not done.wait(self.plan.colleague_every_s):
            count += 1
            key = rng.choice(self.plan.colleague_targets)
            value = f"colleague-{count}"
            t = server.edit(key, {COLLEAGUE_FIELD: value})
            self.record.colleague.append({"t": t, "meeting": key, "value": value})

    def edit(self, job: JobPlan) -> dict[str, Any]:
        """Change the last row of the input while the job runs (the job must refuse it)."""
        edited = copy.deepcopy(job)
        edited.rows[-1].patch["title"] = EDIT_MARKER
        self.files[job.name].input.write_bytes(render_input(edited))
        entry = {"job": job.name, "t": time.time(), "row": job.rows[-1].number}
        entry["meeting"] = f"{job.rows[-1].account_id}/{job.rows[-1].meeting_id}"
        self.record.edits.append(entry)
        return entry


class _Thread:
    """A job's flow on a thread; re-raises its exception on join (a harness bug must not pass silently)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.error: BaseException | None = None

        def target() -> None:
            try:
                fn(*args)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def run_episode(plan: EpisodePlan, workdir: Path) -> Record:
    """Run ``plan`` in ``workdir`` (created) and return its record."""
    workdir.mkdir(parents=True, exist_ok=True)
    return Episode(plan, workdir).run()
