"""The upper limit: a raw TCP server on the same event loop, no WebSocket at all.

``echo`` writes back every chunk it reads. ``fanout`` unmasks the client's
trigger frame and writes prebuilt WebSocket frames, so the load generator can
count them; it is what any WebSocket server's fan-out ends up writing.
"""

from __future__ import annotations

import argparse
import asyncio
import struct
from typing import cast

from bench.servers import common

FRAME = b"\x82\x7e" + struct.pack("!H", common.FANOUT_SIZE) + common.fanout_payload()
END_FRAME = b"\x81\x03" + common.END.encode()


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's isn't a subclass

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class FanOut(asyncio.Protocol):
    clients: set[asyncio.Transport] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's isn't a subclass
        self.buffer = bytearray()
        self.clients.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.clients.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # A trigger is one short masked text frame: 2-byte header, 4-byte key.
        while len(self.buffer) >= 2:
            length = self.buffer[1] & 0x7F
            if len(self.buffer) < 6 + length:
                return
            key = self.buffer[2:6]
            text = bytes(b ^ key[i % 4] for i, b in enumerate(self.buffer[6 : 6 + length]))
            opcode = self.buffer[0] & 0x0F
            del self.buffer[: 6 + length]
            if opcode == 1:
                count = common.trigger_count(text.decode())
                asyncio.get_running_loop().create_task(self.fan_out(count))

    @classmethod
    async def fan_out(cls, count: int) -> None:
        for _ in range(count):
            for transport in list(cls.clients):
                transport.write(FRAME)
            await asyncio.sleep(0)
        for transport in list(cls.clients):
            transport.write(END_FRAME)


async def main(args: argparse.Namespace) -> None:
    if args.compression:
        raise SystemExit("raw TCP has no compression")
    loop = asyncio.get_running_loop()
    protocol = Echo if args.mode == "echo" else FanOut
    server = await loop.create_server(protocol, common.HOST, args.port, backlog=common.BACKLOG)
    library = f"asyncio.Protocol on {args.loop}"
    port = server.sockets[0].getsockname()[1]
    common.announce(port, library=library, fanout="loop of transport.write()")
    await common.until_terminated()
    server.close()


if __name__ == "__main__":
    common.run(main)
