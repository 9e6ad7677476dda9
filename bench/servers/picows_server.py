"""The picows server under test (frame callbacks; no compression in picows)."""

from __future__ import annotations

import argparse
import asyncio
from importlib.metadata import version

import picows
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest

from bench.servers import common


class Echo(WSListener):
    """Sends every data frame back; the benchmark's messages are single frames."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())


class FanOut(WSListener):
    """Joins the group; a text frame triggers a fan-out (sends never wait)."""

    clients: set[WSTransport] = set()
    payload = common.fanout_payload()

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.clients.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.clients.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type is WSMsgType.TEXT:
            count = common.trigger_count(frame.get_payload_as_ascii_text())
            asyncio.get_running_loop().create_task(self.fan_out(count))

    @classmethod
    async def fan_out(cls, count: int) -> None:
        for _ in range(count):
            for transport in list(cls.clients):
                transport.send(WSMsgType.BINARY, cls.payload)
            await asyncio.sleep(0)
        for transport in list(cls.clients):
            transport.send(WSMsgType.TEXT, common.END.encode())


async def main(args: argparse.Namespace) -> None:
    if args.compression:
        raise SystemExit("picows has no permessage-deflate")
    listener = Echo if args.mode == "echo" else FanOut

    def factory(request: WSUpgradeRequest) -> WSListener:
        return listener()

    server = await picows.ws_create_server(
        factory,
        common.HOST,
        args.port,
        enable_auto_ping=False,
        max_frame_size=common.MAX_SIZE,
        backlog=common.BACKLOG,
    )
    port = server.sockets[0].getsockname()[1]
    common.announce(port, library=f"picows {version('picows')}", fanout="loop of transport.send()")
    await common.until_terminated()
    server.close()


if __name__ == "__main__":
    common.run(main)
