"""The picows client, in its callback style: each reply sends the next message."""

from __future__ import annotations

import argparse

import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport

from bench.clients import common


class Echo(WSListener):
    def __init__(self, message: bytes, pacer: common.Pacer) -> None:
        self.message = message
        self.pacer = pacer

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, self.message)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.TEXT:
            return
        # Decoded to str, as the other clients hand text to their users.
        reply = frame.get_payload_as_utf8_text()
        assert len(reply) == len(self.message)
        if self.pacer.on_reply():
            transport.send(WSMsgType.TEXT, self.message)


async def main(args: argparse.Namespace) -> None:
    message = common.text_message(args.size).encode()
    pacer = common.Pacer(args)
    transport, _ = await picows.ws_connect(
        lambda: Echo(message, pacer),
        args.uri,
        enable_auto_ping=False,
        max_frame_size=common.MAX_SIZE,
    )
    await pacer.done
    transport.send_close()
    transport.disconnect()
    await transport.wait_disconnected()


if __name__ == "__main__":
    common.run(main)
