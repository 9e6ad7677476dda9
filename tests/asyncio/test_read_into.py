"""Large messages read straight into place: while the rest of a big binary
message comes in, the transport reads into the message itself, then hands the
socket back to the connection."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import tidewire
from tidewire import ServerConnection

from .rawclient import RawClient, build_frame
from .test_connection import within

SIZE = 300_000  # over the size from which the rest is read in place


async def settle(condition: Callable[[], object], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(what)


async def start(handler_conns: list[ServerConnection]) -> tuple[tidewire.Server, RawClient]:
    async def echo(ws: ServerConnection) -> None:
        handler_conns.append(ws)
        async for message in ws:
            await ws.send(message)

    server = await tidewire.serve(echo, "127.0.0.1", 0, compression=None, ping_interval=None)
    client = await RawClient.connect(server.port)
    response = await client.handshake()
    assert response.status == 101
    return server, client


async def test_rest_of_a_large_message_is_read_in_place_then_the_socket_handed_back() -> None:
    conns: list[ServerConnection] = []
    server, client = await start(conns)
    try:
        payload = os.urandom(SIZE)
        frame = build_frame(0x2, payload)
        after = build_frame(0x1, b"next")
        await settle(lambda: conns, "the handler never started")
        ws = conns[0]
        assert ws.transport is not None
        await client.write(frame[:1000])  # the header and a little of the payload
        await settle(
            lambda: ws.transport.get_protocol() is not ws,  # type: ignore[union-attr]
            "the transport kept reading through the connection",
        )
        for start_at in range(1000, len(frame), 70_000):
            await client.write(frame[start_at : start_at + 70_000])
        await client.write(after)
        echoed = await client.read_frame()
        assert (echoed.opcode, echoed.payload == payload) == (0x2, True)
        nxt = await client.read_frame()
        assert (nxt.opcode, nxt.payload) == (0x1, b"next")
        assert ws.transport.get_protocol() is ws  # back for what follows
    finally:
        await client.close()
        server.close()
        await within(server.wait_closed())


async def test_a_connection_failed_while_reading_in_place_drops_the_rest() -> None:
    conns: list[ServerConnection] = []
    server, client = await start(conns)
    try:
        frame = build_frame(0x2, os.urandom(SIZE))
        await settle(lambda: conns, "the handler never started")
        ws = conns[0]
        await client.write(frame[:1000])
        await settle(
            lambda: ws.transport.get_protocol() is not ws,  # type: ignore[union-attr]
            "the transport kept reading through the connection",
        )
        stand_in = ws.transport.get_protocol()  # type: ignore[union-attr]
        ws.fail(1011, "giving up")
        close = await client.read_frame()
        assert close.close_code_reason() == (1011, "giving up")
        try:
            await client.write(frame[1000:])  # read and dropped, or refused: no error
        except ConnectionError:
            pass
        await within(ws.wait_closed())
        # The socket stopped reading when it closed; a loop that read once more
        # would still get somewhere to write, and no error.
        space = stand_in.get_buffer(-1)
        assert len(space) > 0
        stand_in.buffer_updated(len(space))
        async with tidewire.connect(f"ws://127.0.0.1:{server.port}/") as other:
            await other.send("still serving")
            assert await within(other.recv()) == "still serving"
    finally:
        await client.close()
        server.close()
        await within(server.wait_closed())
