"""The tidewire server under test: echo, or fan-out through ``tidewire.broadcast``.

Echo takes messages in with ``async for``, or with ``--callback`` through
``ws.on_message(ws.send_nowait)``: no task wakes up per message.

``--mode pubsub`` is the reference row of the hub scenario: publications pushed
with ``tidewire.broadcast()`` and none of the hub (sessions, broker, history).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

    async def echo_callback(ws: Any) -> None:
        ws.on_message(ws.send_nowait)  # messages handed over as they are parsed
        await ws.wait_closed()

    async def fanout(ws: Any) -> None:
        clients.add(ws)
        try:
            async for message in ws:
                if isinstance(message, str):
                    await fan_out(common.trigger_count(message))
        finally:
            clients.discard(ws)

    offset = 0

    async def pubsub(ws: Any) -> None:
        """connect, subscribe and publish, answered as the hub would; one channel."""
        nonlocal offset
        try:
            async for message in ws:
                request = json.loads(message)
                rid = json.dumps(request.get("id"))
                op = request.get("op")
                if op == "publish":
                    offset += 1
                    data = json.dumps(request["data"], separators=(",", ":"))
                    channel = json.dumps(request["channel"])
                    push = f'{{"push":"pub","channel":{channel},"offset":{offset},"data":{data}}}'
                    tidewire.broadcast(clients, push)
                    await ws.send(f'{{"id":{rid},"result":{{"offset":{offset}}}}}')
                elif op == "subscribe":
                    await ws.send(f'{{"id":{rid},"result":{{"offset":{offset}}}}}')
                    clients.add(ws)
                else:
                    await ws.send(f'{{"id":{rid},"result":{{}}}}')
        finally:
            clients.discard(ws)

    handlers = {"echo": echo, "fanout": fanout, "pubsub": pubsub}
    if args.callback and args.mode != "echo":
        raise SystemExit("--callback applies to --mode echo")
    async with tidewire.serve(
        echo_callback if args.callback else handlers[args.mode],
        common.HOST,
        args.port,
        compression="deflate" if args.compression else None,
        deflate_options=tidewire.DeflateOptions(
            level=common.ZLIB_LEVEL,
            mem_level=common.ZLIB_MEM_LEVEL,
            server_no_context_takeover=args.server_no_context_takeover,
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
