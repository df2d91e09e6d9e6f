"""``batcher fake-api``: the command that serves the local RealtimeKit-compatible API (fake/server.py)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from ..core.config import parse_rate
from .preflight import finite_float

FAKE_API_EXAMPLES = """examples:
  batcher fake-api --seed inputs/seed-meetings.jsonl --port 8787
  batcher fake-api --meetings 10000 --rate-limit 40/10 --fail-rate 0.05"""


def add_fake_api_parser(sub: Any, fmt: type[argparse.HelpFormatter]) -> None:
    """The ``fake-api`` sub-command and its options."""
    fake = sub.add_parser(
        "fake-api", help="serve a local RealtimeKit-compatible API", epilog=FAKE_API_EXAMPLES, formatter_class=fmt
    )
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    fake.add_argument("--port", type=int, default=8787, help="port to listen on; 0 picks a free one (default 8787)")
    fake.add_argument("--port-file", help="write the bound port here (useful with --port 0)")
    group = fake.add_mutually_exclusive_group()
    group.add_argument("--seed", metavar="FILE", help="JSONL of meetings: {account_id, id, ...fields}")
    group.add_argument("--meetings", type=int, help="make N meetings with random ids")
    fake.add_argument("--account-id", default="demo-account", help="account of --meetings (default demo-account)")
    fake.add_argument("--ids-out", metavar="FILE", help="where --meetings writes the ids (default fake-meetings.csv)")
    fake.add_argument("--token", help="accept only this bearer token (default: any non-empty one)")
    fake.add_argument("--rate-limit", help="N/SECONDS: answer 429 + Retry-After beyond it")
    fake.add_argument(
        "--fail-rate", type=finite_float, default=0.0, help="share of requests answered 500/502/503 or dropped"
    )
    fake.add_argument(
        "--latency-ms", type=finite_float, default=0.0, help="delay every answer by MS milliseconds (default 0)"
    )
    fake.add_argument(
        "--no-ratelimit-headers", action="store_true", help="do not send Ratelimit / Ratelimit-Policy headers"
    )
    fake.add_argument(
        "--record-arrivals", action="store_true", help="keep request arrival times for GET /__arrivals (benchmarks)"
    )
    fake.add_argument(
        "--chaos",
        metavar="JSON",
        help='random faults, e.g. \'{"p_429": 0.02, "p_drop": 0.01, "hang_s": 5, "auth_window": [100, 3]}\' (see batcher.fake.chaos.ChaosSpec)',
    )
    fake.add_argument("--chaos-seed", type=int, help="seed of --chaos and --fail-rate (same seed, same faults)")
    fake.add_argument(
        "--extra-fields",
        metavar="PATHS",
        help="comma-separated unknown field paths a PUT may carry (default: every unknown path in --seed)",
    )
    fake.add_argument(
        "--ignores-fields",
        metavar="PATHS",
        help="comma-separated field paths a write is answered 200 for but that keep their old value "
        "(a field the account does not support: what run --canary finds)",
    )
    fake.add_argument(
        "--x-ratelimit-headers", action="store_true", help="also send the older X-RateLimit-Limit/-Remaining/-Reset"
    )


def cmd_fake_api(args: argparse.Namespace) -> int:
    """``batcher fake-api``: serve until interrupted."""
    from ..fake.chaos import parse_chaos
    from ..fake.server import FakeApi, start

    rate = None
    if args.rate_limit:
        spec = parse_rate(args.rate_limit)
        rate = (spec.max_requests, spec.window_s) if spec else None
    api = FakeApi(
        token=args.token,
        rate_limit=rate,
        fail_rate=args.fail_rate,
        latency_ms=args.latency_ms,
        record_arrivals=args.record_arrivals,
        ratelimit_headers=not args.no_ratelimit_headers,
        x_ratelimit_headers=args.x_ratelimit_headers,
        seed=args.chaos_seed,
        chaos=parse_chaos(args.chaos) if args.chaos else None,
        extra_fields=[f for f in args.extra_fields.split(",") if f] if args.extra_fields is not None else None,
        ignores_fields=[f for f in (args.ignores_fields or "").split(",") if f],
    )
    if args.seed:
        with open(args.seed, "rb") as fh:
            count = api.load_seed(fh.readlines())
        print(f"fake-api: loaded {count} meetings from {args.seed}", file=sys.stderr)
    elif args.meetings:
        ids_out = args.ids_out or "fake-meetings.csv"
        with open(ids_out, "w", encoding="utf-8") as out:
            out.write("meeting_id,account_id\n")
            for _ in range(args.meetings):
                out.write(f"{api.add_meeting(args.account_id)},{args.account_id}\n")
        print(f"fake-api: made {args.meetings} meetings under {args.account_id}; ids in {ids_out}", file=sys.stderr)

    async def serve() -> None:
        runner, port = await start(api, args.host, args.port)
        if args.port_file:
            with open(args.port_file, "w") as fh:
                fh.write(str(port))
        print(f"fake-api: listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    from .signals import run_async  # one event-loop runner for every command

    return run_async(serve()) or 0
