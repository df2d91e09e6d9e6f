"""The peer: the 30-line script batcher must not be slower than.

Bare aiohttp + a semaphore + gather: reads the CSV, PUTs each row's body as-is
(replace semantics, no validation, no state, no report). Usage:
    python bench/peer.py INPUT.csv BASE_URL ACCOUNT CONCURRENCY
"""

import asyncio
import csv
import sys

import aiohttp
import orjson


async def main(path: str, base: str, account: str, concurrency: int) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def put(row: dict) -> int:
            body = {"title": row["title"], "persist_chat": row["persist_chat"] == "true"}
            async with (
                sem,
                session.put(
                    f"{base}/accounts/{account}/realtimekit/meetings/{row['meeting_id']}", data=orjson.dumps(body)
                ) as resp,
            ):
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(put(r) for r in rows))
    bad = sum(1 for s in statuses if s != 200)
    if bad:
        print(f"peer: {bad} non-200", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
