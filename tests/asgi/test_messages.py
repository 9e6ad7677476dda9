"""Messages through uvicorn: text and bytes both ways, large ones, the size
limit, and flow control: reading pauses while the app doesn't receive, before
and after it accepts."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

import tidewire
from tests.asgi.conftest import Probe, bounded
from tests.asyncio.rawclient import RawClient, build_frame, new_key, upgrade_request
from tests.conftest import timeout
from tidewire.exceptions import ClientDisconnected

TEXT, PING, PONG = 0x1, 0x9, 0xA


def echo(probe: Probe | None = None) -> Any:
    """Accepts, echoes every message as it came, reports the disconnect."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                if probe is not None:
                    await probe.events.put(message)
                return
            await send({"type": "websocket.send", "text": message.get("text"),
                        "bytes": message.get("bytes")})

    return app


async def test_text_and_bytes_go_both_ways(serve: Any) -> None:
    async with serve(echo()) as server:
        async with tidewire.connect(server.url) as ws:
            await ws.send("héllo")
            assert await bounded(ws.recv()) == "héllo"
            await ws.send(b"\x00\xff")
            assert await bounded(ws.recv()) == b"\x00\xff"
            await ws.send("")
            assert await bounded(ws.recv()) == ""


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_large_messages_go_both_ways(serve: Any, compression: str | None) -> None:
    data = os.urandom(3 * 1024 * 1024)
    text = "ab" * (2 * 1024 * 1024)
    async with serve(echo()) as server:
        async with tidewire.connect(
            server.url, max_size=None, compression=compression
        ) as ws:
            await ws.send(data)
            assert await bounded(ws.recv(), 20) == data
            await ws.send(text)
            assert await bounded(ws.recv(), 20) == text


async def test_message_over_ws_max_size_closes_with_1009(serve: Any) -> None:
    probe = Probe()
    async with serve(echo(probe), ws_max_size=1024) as server:
        async with tidewire.connect(server.url) as ws:
            await ws.send(b"x" * 1024)  # at the limit: fine
            assert await bounded(ws.recv()) == b"x" * 1024
            await ws.send(b"x" * 1025)
            await bounded(ws.wait_closed())
            assert ws.close_code == 1009
        disconnect = await probe.disconnect()
        assert disconnect["code"] == 1009


async def test_reading_pauses_while_the_app_does_not_receive(serve: Any) -> None:
    go = asyncio.Event()
    probe = Probe()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await go.wait()
        size = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            size += len(message["bytes"])
            if message["bytes"] == b"last":
                await probe.events.put({"type": "size", "size": size})

    chunk, count = 64 * 1024, 256  # 16 MiB in all
    async with serve(app) as server:
        client = await RawClient.connect(server.port)
        await client.handshake()
        conn = server.connection()
        # One message and a ping in one write: the pong proves the server read
        # the message, which nobody receives.
        await client.write(build_frame(0x2, b"first") + build_frame(PING, b"p"))
        pong = await client.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"p")
        assert conn.transport is not None
        assert not conn.transport.is_reading()

        async def flood() -> None:
            frame = build_frame(0x2, b"y" * chunk)
            for _ in range(count):
                await client.write(frame, bytewise=False)
            await client.write(build_frame(0x2, b"last"))

        sending = asyncio.create_task(flood())
        # The client's writes stop draining long before 16 MiB: the server
        # doesn't read, and the kernel's buffers don't grow for a socket
        # nobody reads. (Nothing signals "stuck": a bounded wait shows it, and
        # a slower machine only makes it surer.)
        done, _ = await asyncio.wait([sending], timeout=timeout(0.5))
        assert not done, "16 MiB went into a connection whose app doesn't receive"
        assert not conn.transport.is_reading()
        go.set()  # the app receives: reading resumes and everything arrives
        await bounded(sending, 30)
        assert await probe.event(30) == {"type": "size", "size": 5 + chunk * count + 4}
        assert conn.transport.is_reading()
        await client.close()


async def test_bytes_sent_before_accept_are_capped(serve: Any) -> None:
    accept = asyncio.Event()
    probe = Probe()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await accept.wait()
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            probe.send_error.set_result(exc)
        await probe.events.put(await receive())

    async with serve(app, ws_max_size=4096) as server:
        client = await RawClient.connect(server.port)
        await client.write(upgrade_request(new_key()))
        # A client must wait for the answer to its upgrade (RFC 6455 section
        # 4.1); this one sends far more than one message's worth instead.
        try:
            for _ in range(64):
                await client.write(build_frame(0x2, b"z" * 1024))
            rest = await client.read_to_eof()
        except ConnectionError:
            rest = b""  # reset: the server closed with our bytes unread
        assert not rest.startswith(b"HTTP/1.1 101"), rest[:100]
        await client.close()
        accept.set()
        assert isinstance(await bounded(probe.send_error), ClientDisconnected)
        assert await probe.event() == {"type": "websocket.disconnect", "code": 1006}
