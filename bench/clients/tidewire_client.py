"""The tidewire client: ``await send()``, ``await recv()``."""

from __future__ import annotations

import argparse

import tidewire
from bench.clients import common


async def main(args: argparse.Namespace) -> None:
    message = common.text_message(args.size)
    async with tidewire.connect(
        args.uri, compression=None, ping_interval=None, max_size=common.MAX_SIZE
    ) as ws:

        async def roundtrip() -> None:
            await ws.send(message)
            reply = await ws.recv()
            assert len(reply) == args.size

        await common.Pacer(args).loop(roundtrip)


if __name__ == "__main__":
    common.run(main)
