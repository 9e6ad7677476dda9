"""The tidewire server under test: echo, or fan-out through ``tidewire.broadcast``."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import tidewire
from bench.servers import common


async def main(args: argparse.Namespace) -> None:
    clients: set[Any] = set()
    payload = common.fanout_payload()
    # tidewire.broadcast() is new; before it, a loop of awaited sends.
    broadcast = getattr(tidewire, "broadcast", None)

    async def fan_out(count: int) -> None:
        for _ in range(count):
            if broadcast is not None:
                broadcast(clients, payload)
            else:
                for ws in list(clients):
                    await ws.send(payload)
            await asyncio.sleep(0)
        for ws in list(clients):
            await ws.send(common.END)

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    async def fanout(ws: Any) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                if isinstance(message, str):
                    await fan_out(common.trigger_count(message))
        finally:
            clients.discard(ws)

    async with tidewire.serve(
        echo if args.mode == "echo" else fanout,
        common.HOST,
        args.port,
        compression="deflate" if args.compression else None,
        deflate_options=tidewire.DeflateOptions(
            level=common.ZLIB_LEVEL, mem_level=common.ZLIB_MEM_LEVEL
        ),
        max_size=common.MAX_SIZE,
        ping_interval=None,
        backlog=common.BACKLOG,
    ) as server:
        common.announce(
            server.port,
            library=f"tidewire {tidewire.__version__}",
            fanout="tidewire.broadcast()" if broadcast else "loop of awaited send()",
        )
        await common.until_terminated()


if __name__ == "__main__":
    common.run(main)
