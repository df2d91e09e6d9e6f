"""Another client of the same token: GETs one meeting at a steady rate until stopped (SIGTERM).

It reads no rate-limit header and never backs off: it spends its share of the
budget whatever batcher does (a 429 it gets is simply counted by the server).
Requests leave on a fixed schedule (start + k / rate), each in its own task,
so a slow answer does not delay the next. Usage:
    python bench/other_client.py BASE_URL ACCOUNT MEETING_ID REQUESTS_PER_S
"""

import asyncio
import contextlib
import signal
import sys

import aiohttp


async def main(base: str, account: str, meeting: str, per_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    url = f"{base}/accounts/{account}/realtimekit/meetings/{meeting}"
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer bench"}) as session:

        async def get() -> None:
            try:
                async with session.get(url) as resp:
                    await resp.read()
            except aiohttp.ClientError:
                pass  # the server saw it (or not): it counts what arrived

        tasks = set()
        start, k = loop.time(), 0
        while not stop.is_set():
            task = asyncio.create_task(get())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(0.0, start + k / per_s - loop.time()))
        await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
