"""The tidewire client with ``on_message()``: each reply sends the next message."""

from __future__ import annotations

import argparse

import tidewire
from bench.clients import common


async def main(args: argparse.Namespace) -> None:
    message = common.text_message(args.size)
    pacer = common.Pacer(args)
    async with tidewire.connect(
        args.uri, compression=None, ping_interval=None, max_size=common.MAX_SIZE
    ) as ws:

        def on_reply(reply: str | bytes) -> None:
            assert len(reply) == args.size
            if pacer.on_reply():
                ws.send_nowait(message)

        ws.on_message(on_reply)
        ws.send_nowait(message)
        await pacer.done


if __name__ == "__main__":
    common.run(main)
