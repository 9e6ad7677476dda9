"""The aiohttp server under test: echo, or fan-out through a loop of awaited sends."""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import WSMsgType, web

from bench.servers import common


async def main(args: argparse.Namespace) -> None:
    clients: set[web.WebSocketResponse] = set()
    payload = common.fanout_payload()

    async def fan_out(count: int) -> None:
        for _ in range(count):
            for ws in list(clients):
                await ws.send_bytes(payload)
            await asyncio.sleep(0)
        for ws in list(clients):
            await ws.send_str(common.END)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            compress=args.compression,  # level 1 (fixed), see common.ZLIB_LEVEL
            max_msg_size=common.MAX_SIZE,
            heartbeat=None,
            autoping=True,
        )
        await ws.prepare(request)
        if args.mode == "fanout":
            clients.add(ws)
        try:
            async for msg in ws:
                if args.mode == "fanout":
                    if msg.type is WSMsgType.TEXT:
                        await fan_out(common.trigger_count(msg.data))
                elif msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        finally:
            clients.discard(ws)
        return ws

    app = web.Application(client_max_size=common.MAX_SIZE)
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, common.HOST, args.port, backlog=common.BACKLOG)
    await site.start()
    try:
        common.announce(
            runner.addresses[0][1],
            library=f"aiohttp {aiohttp.__version__}",
            fanout="loop of awaited send_bytes()",
        )
        await common.until_terminated()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    common.run(main)
