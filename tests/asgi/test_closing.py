"""How connections end through uvicorn: the close the app sends, the
``websocket.disconnect`` it receives for each way the peer can leave, a
graceful shutdown, sends after the end, protocol violations and app errors."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

import tidewire
from tests.asgi.conftest import Probe, bounded
from tests.asgi.test_messages import echo
from tests.asyncio.rawclient import RawClient, build_frame
from tidewire.exceptions import ClientDisconnected

CLOSE = 0x8


async def test_app_close_code_and_reason_reach_the_client(serve: Any) -> None:
    probe = Probe()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})
        await probe.events.put(await receive())

    async with serve(app) as server:
        async with tidewire.connect(server.url) as ws:
            await bounded(ws.wait_closed())
            assert (ws.close_code, ws.close_reason) == (4001, "bye now")
        assert await probe.event() == {
            "type": "websocket.disconnect", "code": 4001, "reason": "bye now"
        }


async def test_disconnect_has_the_peers_code_and_reason(serve: Any) -> None:
    probe = Probe()
    async with serve(echo(probe)) as server:
        ws = await tidewire.connect(server.url)
        await bounded(ws.close(4002, "done here"))
        assert await probe.event() == {
            "type": "websocket.disconnect", "code": 4002, "reason": "done here"
        }


async def test_disconnect_is_1005_when_the_peers_close_has_no_code(serve: Any) -> None:
    probe = Probe()
    async with serve(echo(probe)) as server:
        client = await RawClient.connect(server.port)
        await client.handshake()
        await client.write(build_frame(CLOSE, b""))
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (CLOSE, b"")  # echoed as it came
        await client.expect_eof()
        await client.close()
        event = await probe.event()
        assert (event["type"], event["code"]) == ("websocket.disconnect", 1005)


async def test_disconnect_is_1006_when_the_connection_drops(serve: Any) -> None:
    probe = Probe()
    async with serve(echo(probe)) as server:
        client = await RawClient.connect(server.port)
        await client.handshake()
        client.writer.transport.abort()
        assert await probe.event() == {"type": "websocket.disconnect", "code": 1006}


async def test_graceful_shutdown_closes_with_1012(serve: Any) -> None:
    probe = Probe()
    async with serve(echo(probe)) as server:
        ws = await tidewire.connect(server.url)
        await ws.send("ping")
        assert await bounded(ws.recv()) == "ping"
        await server.shutdown()  # returns once the app did
        await bounded(ws.wait_closed())
        assert ws.close_code == 1012
        event = await probe.event()
        assert (event["type"], event["code"]) == ("websocket.disconnect", 1012)


async def test_shutdown_before_the_app_answers_refuses_with_503(serve: Any) -> None:
    probe = Probe()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        probe.scope.set_result(scope)
        await probe.events.put(await receive())  # the shutdown's disconnect
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            probe.send_error.set_result(exc)

    async with serve(app) as server:
        connecting = asyncio.ensure_future(tidewire.connect(server.url))
        await bounded(probe.scope)
        await server.shutdown()
        with pytest.raises(tidewire.InvalidStatus) as caught:
            await bounded(connecting)
        assert caught.value.response.status == 503
        assert await probe.event() == {"type": "websocket.disconnect", "code": 1006}
        assert isinstance(await bounded(probe.send_error), ClientDisconnected)


async def test_send_after_the_client_left_raises_client_disconnected(serve: Any) -> None:
    probe = Probe()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await probe.events.put(await receive())
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            probe.send_error.set_result(exc)

    async with serve(app) as server:
        async with tidewire.connect(server.url):
            pass
        assert (await probe.event())["type"] == "websocket.disconnect"
        error = await bounded(probe.send_error)
        assert isinstance(error, ClientDisconnected)


@pytest.mark.parametrize(
    "frame, code",
    [
        pytest.param(build_frame(0x1, b"hi", mask=False), 1002, id="unmasked"),
        pytest.param(build_frame(0x3, b"hi"), 1002, id="reserved-opcode"),
        pytest.param(build_frame(0x1, b"hi", rsv2=True), 1002, id="reserved-bit"),
        pytest.param(build_frame(0x9, b"p" * 126), 1002, id="long-ping"),
        pytest.param(build_frame(0x1, b"\xff\xfe"), 1007, id="invalid-utf8"),
    ],
)
async def test_protocol_violation_closes_with_its_code(
    serve: Any, frame: bytes, code: int
) -> None:
    probe = Probe()
    async with serve(echo(probe)) as server:
        client = await RawClient.connect(server.port)
        await client.handshake()
        await client.write(build_frame(0x1, b"before") + frame)
        echoed = await client.read_frame()
        assert echoed.payload == b"before"  # what came before it is answered
        close = await client.read_frame()
        assert close.close_code_reason()[0] == code
        await client.expect_eof()
        await client.close()
        event = await probe.event()
        assert (event["type"], event["code"]) == ("websocket.disconnect", code)


async def test_app_exception_after_accept_drops_the_connection_logged_once(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("boom after accept")

    async with serve(app) as server:
        ws = await tidewire.connect(server.url)
        await ws.send("go")
        await bounded(ws.wait_closed())
        assert ws.close_code == 1006
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1, errors
    assert errors[0].name == "uvicorn.error"
    assert "boom after accept" in str(errors[0].exc_info[1])  # type: ignore[index]
    caplog.records.remove(errors[0])


async def test_server_keeps_serving_others_after_a_violation(serve: Any) -> None:
    async with serve(echo()) as server:
        async with tidewire.connect(server.url) as healthy:
            bad = await RawClient.connect(server.port)
            await bad.handshake()
            await bad.write(struct.pack("!BB", 0x81, 0x05) + b"hello")  # unmasked
            assert (await bad.read_frame()).close_code_reason()[0] == 1002
            await bad.close()
            await healthy.send("still here")
            assert await bounded(healthy.recv()) == "still here"
