"""The intake: the input is checked in a pre-flight pass and trusted once; a row that changed before it is sent stops the job, and pre-flight answers interrupts and cancellation."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest

from batcher.errors import InputChangedError, Interrupted
from batcher.run import engine, intake
from batcher.run.engine import run_job

from ..conftest import config, write_jsonl
from ..fake_time import VirtualTime


async def test_a_file_rewritten_between_preflight_and_send_stops_the_job(server, tmp_path):
    a, b = server.add(2, title="old")
    good = [{"meeting_id": a, "title": "new"}, {"meeting_id": b, "title": "new"}, {"meeting_id": "bad"}]
    src = write_jsonl(tmp_path / "in.jsonl", good)

    def rewrite(_err):  # pre-flight's last row: the file changes under the job before the send pass
        write_jsonl(src, [good[0], {"meeting_id": f"{b}/../../../x?y=", "title": "injected"}, good[2]])

    with pytest.raises(InputChangedError, match="row 2"):
        await run_job(config(tmp_path, server, src, skip_invalid=True, concurrency=1), on_invalid=rewrite)
    # row 1 may or may not have started before row 2 was read; nothing starts after the change is seen
    assert server.api.requests["PUT"] <= 1 and not server.api.puts.get(b), "nothing for the rewritten row"
    assert server.doc(b)["title"] == "old"


async def test_a_row_whose_content_changed_is_never_sent(server, tmp_path):
    [a] = server.add(title="old")
    src = write_jsonl(tmp_path / "in.jsonl", [{"meeting_id": a, "title": "new"}, {"meeting_id": "bad"}])

    def rewrite(_err):
        write_jsonl(src, [{"meeting_id": a, "title": "other"}, {"meeting_id": "bad"}])

    with pytest.raises(InputChangedError, match="row 1"):
        await run_job(config(tmp_path, server, src, skip_invalid=True), on_invalid=rewrite)
    assert sum(server.api.requests.values()) == 0 and server.doc(a)["title"] == "old"


async def test_stdin_resumed_with_a_different_stream_is_refused_naming_the_row(server, tmp_path):
    a, b = server.add(2)
    stream_a = b"".join(orjson.dumps({"meeting_id": m, "title": "A"}) + b"\n" for m in (a, b))
    assert (await run_job(config(tmp_path, server, "-"), stdin=io.BytesIO(stream_a))).exit_code == 0
    sent = sum(server.api.requests.values())
    stream_b = orjson.dumps({"meeting_id": a, "title": "A"}) + b"\n" + orjson.dumps({"meeting_id": b, "title": "B"})
    with pytest.raises(InputChangedError, match="row 2"):
        await run_job(config(tmp_path, server, "-"), stdin=io.BytesIO(stream_b + b"\n"))
    assert sum(server.api.requests.values()) == sent and server.doc(b)["title"] == "A"


async def test_an_interrupt_during_preflight_is_seen_at_once_and_leaves_no_state(server, tmp_path):
    [mid] = server.add()
    rows = [{"meeting_id": "bad"}] + [{"meeting_id": mid, "title": f"t{i}"} for i in range(5000)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    t = VirtualTime()
    control = t.control()
    loop = asyncio.get_running_loop()

    async def interrupt() -> None:
        control.interrupt()

    def on_invalid(_err):  # runs in pre-flight's thread; only a free event loop can run interrupt()
        asyncio.run_coroutine_threadsafe(interrupt(), loop).result(timeout=10)

    with pytest.raises(Interrupted, match="pre-flight"):
        await run_job(config(tmp_path, server, src, skip_invalid=True), control=control, on_invalid=on_invalid)
    assert sum(server.api.requests.values()) == 0
    assert not (tmp_path / "job.state.db").exists()


async def test_cancelling_during_preflight_waits_for_it_and_the_job_still_runs_after(server, tmp_path):
    import threading

    rows = [{"meeting_id": "bad"}, *[{"meeting_id": m, "title": "x"} for m in server.add(3)]]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    loop = asyncio.get_running_loop()
    in_preflight, go_on = asyncio.Event(), threading.Event()
    released = []

    def on_invalid(_err):  # pre-flight's thread: tell the test, wait until the job was cancelled
        loop.call_soon_threadsafe(in_preflight.set)
        released.append(go_on.wait(10))  # False if pre-flight held the event loop

    job = asyncio.ensure_future(run_job(config(tmp_path, server, src, skip_invalid=True), on_invalid=on_invalid))
    await in_preflight.wait()
    job.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert released == [True] and sum(server.api.requests.values()) == 0
    again = await run_job(config(tmp_path, server, src, skip_invalid=True))
    assert again.summary["succeeded"] == 3 and again.summary["failed"] == 1


async def test_no_row_starts_after_the_input_change_is_seen_and_the_report_is_still_written(
    server, tmp_path, monkeypatch
):
    """Guards the send pass: once a change of the input is seen no row starts, and the failure report and summary are still written."""
    ids = server.add(20, title="orig")
    server.api.latency_s = 0.05
    rows = [{"meeting_id": m, "title": "new"} for m in ids]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    seen = {"changed": False, "started_after": 0}
    load_rows, rows_to_send, handle = intake.Intake.load_rows, intake.Intake.rows_to_send, engine.Job.handle

    def load_then_edit(self, **kw):  # the file changes under the job after its pre-flight
        n = load_rows(self, **kw)
        write_jsonl(src, [*rows[:12], {**rows[12], "title": "EDITED"}, *rows[13:]])
        return n

    def noticing(self, source):
        try:
            yield from rows_to_send(self, source)
        except InputChangedError:
            seen["changed"] = True
            raise

    async def counting(self, item):
        seen["started_after"] += seen["changed"]
        return await handle(self, item)

    monkeypatch.setattr(intake.Intake, "load_rows", load_then_edit)
    monkeypatch.setattr(intake.Intake, "rows_to_send", noticing)
    monkeypatch.setattr(engine.Job, "handle", counting)
    with pytest.raises(InputChangedError, match="row 13"):
        await run_job(config(tmp_path, server, src, summary_path=str(tmp_path / "summary.json")))
    assert seen == {"changed": True, "started_after": 0}
    assert server.doc(ids[12])["title"] == "orig"
    assert (tmp_path / "failures.jsonl").exists(), "the failure report is written even when the job stops on an edit"
    assert (tmp_path / "summary.json").read_bytes().startswith(b"{")
