"""The Autobahn client loop: run every case of a fuzzing server with tidewire's client.

    python compliance/autobahn_client.py ws://127.0.0.1:9001 [PARALLELISM [LEVEL]]

Each case is an echo: whatever the server sends comes back, until it closes.
Cases are independent connections, so several run at once to save time.
"""

from __future__ import annotations

import asyncio
import sys
import urllib.parse

from tidewire import ConnectionClosed, DeflateOptions, InvalidHandshake, connect

AGENT = "tidewire"
MAX_SIZE = 16 * 1024 * 1024
# Our compressor's zlib level when the LEVEL argument gives none: the cases
# check what the peer decodes, not the ratio; 1 is the fastest that compresses.
LEVEL = 1


async def case_count(server: str) -> int:
    async with connect(f"{server}/getCaseCount") as ws:
        return int(await ws.recv())


async def run_case(server: str, case: int, deflate: DeflateOptions) -> None:
    uri = f"{server}/runCase?case={case}&agent={urllib.parse.quote(AGENT)}"
    try:
        async with connect(uri, max_size=MAX_SIZE, deflate_options=deflate) as ws:
            async for message in ws:
                await ws.send(message)
    except (ConnectionClosed, InvalidHandshake, OSError):
        pass  # many cases end in a protocol error on purpose


async def main(server: str, parallelism: int, level: int) -> None:
    deflate = DeflateOptions(level=level)
    count = await case_count(server)
    cases = iter(range(1, count + 1))

    async def worker() -> None:
        for case in cases:
            await run_case(server, case, deflate)

    await asyncio.gather(*(worker() for _ in range(parallelism)))
    try:
        async with connect(f"{server}/updateReports?agent={AGENT}") as ws:
            await ws.wait_closed()
    except ConnectionClosed:
        pass  # the fuzzing server drops this one without a close frame


if __name__ == "__main__":
    server = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:9001"
    parallelism = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    level = int(sys.argv[3]) if len(sys.argv) > 3 else LEVEL
    asyncio.run(main(server, parallelism, level))
