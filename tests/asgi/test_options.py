"""uvicorn's options for WebSocket engines, as tidewire's engine honours them:
keepalive pings (ws_ping_interval, ws_ping_timeout) and permessage-deflate
(ws_per_message_deflate). ws_max_size is in test_messages.py."""

from __future__ import annotations

from typing import Any

import pytest

import tidewire
from tests.asgi.conftest import Probe, bounded
from tests.asgi.test_messages import echo
from tests.asyncio.rawclient import RawClient
from tests.conftest import timeout

PING = 0x9


async def test_client_that_does_not_answer_pings_is_dropped(serve: Any) -> None:
    probe = Probe()
    options = dict(ws_ping_interval=timeout(0.2), ws_ping_timeout=timeout(0.5))
    async with serve(echo(probe), **options) as server:
        async with tidewire.connect(server.url, ping_interval=None) as healthy:
            silent = await RawClient.connect(server.port)
            await silent.handshake()
            ping = await silent.read_frame()
            assert ping.opcode == PING
            # No pong: after ws_ping_timeout the server gives up on it.
            close = await silent.read_frame()
            assert close.close_code_reason() == (1011, "keepalive ping timeout")
            await silent.expect_eof()
            await silent.close()
            event = await probe.event()
            assert (event["type"], event["code"]) == ("websocket.disconnect", 1011)
            # The client that answers its pings (tidewire does by itself) stays.
            (conn,) = [
                c for c in server.connections()
                if c.remote_address[1] == healthy.local_address[1]
            ]
            assert conn.ping_sent_at, "the healthy client wasn't pinged"
            await healthy.send("still here")
            assert await bounded(healthy.recv()) == "still here"


async def test_no_pings_when_ws_ping_interval_is_zero(serve: Any) -> None:
    async with serve(echo(), ws_ping_interval=0) as server:
        async with tidewire.connect(server.url) as ws:
            await ws.send("x")
            assert await bounded(ws.recv()) == "x"
            (conn,) = server.connections()
            assert conn.ping_timer is None


@pytest.mark.parametrize("deflate", [True, False])
async def test_per_message_deflate_is_negotiated_only_when_on(
    serve: Any, deflate: bool
) -> None:
    async with serve(echo(), ws_per_message_deflate=deflate) as server:
        async with tidewire.connect(server.url) as ws:  # offers permessage-deflate
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            assert extensions.startswith("permessage-deflate") is deflate, extensions
            message = "compressible " * 1000
            await ws.send(message)
            assert await bounded(ws.recv()) == message
