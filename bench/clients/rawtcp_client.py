"""The upper limit of a client on this event loop: an ``asyncio.Protocol`` that
writes a premasked frame and counts the bytes of the reply, no WebSocket code.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import cast
from urllib.parse import urlsplit

from bench.clients import common

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = bytes((0x37, 0xFA, 0x21, 0x3D))


def masked_text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + MASK + masked


class RawClient(asyncio.Protocol):
    def __init__(self, request: bytes, frame: bytes, reply_len: int, pacer: common.Pacer):
        self.request = request
        self.frame = frame
        self.reply_len = reply_len
        self.pacer = pacer
        self.head = b""
        self.got = 0
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, _, rest = self.head.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(f"upgrade refused: {head[:40]!r}")
            self.open = True
            self.transport.write(self.frame)
            data = rest
        self.got += len(data)
        if self.got >= self.reply_len:
            self.got -= self.reply_len
            if self.pacer.on_reply():
                self.transport.write(self.frame)


async def main(args: argparse.Namespace) -> None:
    url = urlsplit(args.uri)
    assert url.hostname is not None and url.port is not None and args.size < 126
    request = (
        f"GET {url.path or '/'} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    frame = masked_text_frame(common.text_message(args.size).encode())
    pacer = common.Pacer(args)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(
        lambda: RawClient(request, frame, 2 + args.size, pacer), url.hostname, url.port
    )
    await pacer.done
    transport.close()


if __name__ == "__main__":
    common.run(main)
