"""The aiohttp client: ``await send_str()``, ``await receive()``."""

from __future__ import annotations

import argparse

import aiohttp

from bench.clients import common


async def main(args: argparse.Namespace) -> None:
    message = common.text_message(args.size)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            args.uri, compress=0, autoping=True, heartbeat=None, max_msg_size=common.MAX_SIZE
        ) as ws,
    ):

        async def roundtrip() -> None:
            await ws.send_str(message)
            reply = await ws.receive()
            assert reply.type is aiohttp.WSMsgType.TEXT and len(reply.data) == args.size

        await common.Pacer(args).loop(roundtrip)


if __name__ == "__main__":
    common.run(main)
