"""The websockets server under test: echo, or fan-out through ``broadcast()``."""

from __future__ import annotations

import argparse
import asyncio
from importlib.metadata import version

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from bench.servers import common


async def main(args: argparse.Namespace) -> None:
    clients: set[ServerConnection] = set()
    payload = common.fanout_payload()

    async def fan_out(count: int) -> None:
        for _ in range(count):
            broadcast(clients, payload)
            await asyncio.sleep(0)
        for ws in list(clients):
            await ws.send(common.END)

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def fanout(ws: ServerConnection) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                if isinstance(message, str):
                    await fan_out(common.trigger_count(message))
        finally:
            clients.discard(ws)

    # websockets' own "deflate" default trades speed for memory (12-bit windows,
    # memLevel 5); here it matches the others (see common.ZLIB_LEVEL).
    settings = {"level": common.ZLIB_LEVEL, "memLevel": common.ZLIB_MEM_LEVEL}
    extensions = (
        [ServerPerMessageDeflateFactory(compress_settings=settings)] if args.compression else None
    )
    async with serve(
        echo if args.mode == "echo" else fanout,
        common.HOST,
        args.port,
        compression=None,
        extensions=extensions,
        max_size=common.MAX_SIZE,
        ping_interval=None,
        backlog=common.BACKLOG,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        common.announce(port, library=f"websockets {version('websockets')}", fanout="broadcast()")
        await common.until_terminated()


if __name__ == "__main__":
    common.run(main)
