"""A Starlette app under uvicorn with tidewire's engine, on both of uvicorn's
HTTP protocols: round trips, close codes both ways, refusals and denials."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

import tidewire
from tidewire.exceptions import ConnectionClosed, InvalidStatus

from .conftest import Served, serve_app, within

TOKEN = "let-me-in"


def make_app() -> tuple[Starlette, asyncio.Queue[dict[str, Any]]]:
    """The app, and the queue where it puts each disconnect event it gets."""
    disconnects: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def echo(websocket: WebSocket) -> None:
        """Echo text and bytes; the text ``close CODE REASON`` closes."""
        offered = websocket.scope["subprotocols"]
        await websocket.accept(
            subprotocol="echo.v1" if "echo.v1" in offered else None,
            headers=[(b"x-echo", b"ready")],
        )
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                disconnects.put_nowait(message)
                return
            text = message.get("text")
            if text is None:
                await websocket.send_bytes(message["bytes"])
            elif text.startswith("close "):
                _, code, reason = text.split(" ", 2)
                await websocket.close(int(code), reason)
                return
            else:
                await websocket.send_text(text)

    async def whoami(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({
            "name": websocket.path_params["name"],
            "query": dict(websocket.query_params),
            "path": websocket.url.path,
            "agent": websocket.headers.get("user-agent"),
            "client_host": websocket.client.host if websocket.client else None,
        })
        await websocket.close()

    async def members(websocket: WebSocket) -> None:
        if websocket.query_params.get("token") != TOKEN:
            await websocket.send_denial_response(PlainTextResponse(
                "members only: bring a token\n", status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="members"'},
            ))
            return
        await websocket.accept()
        await websocket.send_text("welcome")
        await websocket.close()

    async def closed(websocket: WebSocket) -> None:
        await websocket.close(4403)  # before accept: refused

    class Counter(WebSocketEndpoint):
        encoding = "json"

        async def on_connect(self, websocket: WebSocket) -> None:
            self.count = 0
            await websocket.accept()

        async def on_receive(self, websocket: WebSocket, data: Any) -> None:
            self.count += 1
            await websocket.send_json({"count": self.count, "echo": data})

        async def on_disconnect(self, websocket: WebSocket, close_code: int) -> None:
            disconnects.put_nowait({"endpoint": "counter", "code": close_code})

    app = Starlette(routes=[
        WebSocketRoute("/echo", echo),
        WebSocketRoute("/whoami/{name}", whoami),
        WebSocketRoute("/members", members),
        WebSocketRoute("/closed", closed),
        WebSocketRoute("/counter", Counter),
    ])
    return app, disconnects


class App:
    def __init__(self, served: Served, disconnects: asyncio.Queue[dict[str, Any]]) -> None:
        self.served = served
        self.disconnects = disconnects

    def url(self, path: str) -> str:
        return self.served.url(path)

    async def disconnect(self) -> dict[str, Any]:
        """The next disconnect event the app received."""
        return await within(self.disconnects.get())


@pytest.fixture(params=["h11", "httptools"])
async def app(request: pytest.FixtureRequest) -> AsyncIterator[App]:
    starlette, disconnects = make_app()
    async with serve_app(starlette, http=request.param, lifespan="off") as served:
        yield App(served, disconnects)


async def test_text_and_bytes_come_back_as_sent(app: App) -> None:
    async with tidewire.connect(app.url("/echo")) as ws:
        for message in ("hello", "", "ünïcödé 🌊", "x" * 100_000):
            await ws.send(message)
            assert await within(ws.recv()) == message
        for data in (b"\x00\xff", b"", bytes(range(256)) * 400):
            await ws.send(data)
            assert await within(ws.recv()) == data


async def test_accept_sends_the_chosen_subprotocol_and_headers(app: App) -> None:
    async with tidewire.connect(app.url("/echo"), subprotocols=["chat", "echo.v1"]) as ws:
        assert ws.subprotocol == "echo.v1"
        assert ws.response is not None
        assert ws.response.headers.get("x-echo") == "ready"
    async with tidewire.connect(app.url("/echo"), subprotocols=["chat"]) as ws:
        assert ws.subprotocol is None


async def test_path_params_query_and_headers_reach_the_app(app: App) -> None:
    url = app.url("/whoami/ad%C3%A0?lang=fr&x=1%202")
    async with tidewire.connect(url, user_agent_header="framework-test/1") as ws:
        assert json.loads(await within(ws.recv())) == {
            "name": "adà",
            "query": {"lang": "fr", "x": "1 2"},
            "path": "/whoami/adà",
            "agent": "framework-test/1",
            "client_host": "127.0.0.1",
        }
        with pytest.raises(ConnectionClosed):
            await within(ws.recv())
        assert ws.close_code == 1000


async def test_json_endpoint_round_trips(app: App) -> None:
    async with tidewire.connect(app.url("/counter")) as ws:
        for data in ({"a": [1, 2.5, None]}, "text", [True, {"é": "🌊"}]):
            await ws.send(json.dumps(data))
            reply = json.loads(await within(ws.recv()))
            assert reply["echo"] == data
        assert reply["count"] == 3
        # WebSocketEndpoint takes JSON in binary messages too.
        await ws.send(json.dumps({"bin": 1}).encode())
        assert json.loads(await within(ws.recv())) == {"count": 4, "echo": {"bin": 1}}
    assert await app.disconnect() == {"endpoint": "counter", "code": 1000}


async def test_the_client_sees_the_apps_close_code_and_reason(app: App) -> None:
    async with tidewire.connect(app.url("/echo")) as ws:
        await ws.send("close 4001 come back later")
        with pytest.raises(ConnectionClosed) as caught:
            await within(ws.recv())
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, "come back later")
    assert (ws.close_code, ws.close_reason) == (4001, "come back later")


async def test_the_app_sees_the_clients_close_code_and_reason(app: App) -> None:
    ws = await within(tidewire.connect(app.url("/echo")))
    await ws.close(4002, "bye for now")
    assert await app.disconnect() == {
        "type": "websocket.disconnect", "code": 4002, "reason": "bye for now"}


async def test_the_app_sees_1005_for_a_close_frame_without_code(app: App) -> None:
    ws = await within(tidewire.connect(app.url("/echo")))
    assert ws.transport is not None
    ws.transport.write(b"\x88\x80\x00\x00\x00\x00")  # masked, empty close frame
    assert (await app.disconnect())["code"] == 1005
    await within(ws.wait_closed())


async def test_the_app_sees_1006_when_the_client_vanishes(app: App) -> None:
    ws = await within(tidewire.connect(app.url("/echo")))
    await ws.send("are you there?")
    assert await within(ws.recv()) == "are you there?"
    assert ws.transport is not None
    ws.transport.abort()
    assert (await app.disconnect())["code"] == 1006


async def test_a_close_before_accept_is_a_403(app: App) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await within(tidewire.connect(app.url("/closed")))
    assert caught.value.response.status == 403


async def test_a_denial_response_reaches_the_client_whole(app: App) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await within(tidewire.connect(app.url("/members")))
    response = caught.value.response
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="members"'
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.body == b"members only: bring a token\n"
    async with tidewire.connect(app.url(f"/members?token={TOKEN}")) as ws:
        assert await within(ws.recv()) == "welcome"


async def test_an_unknown_path_is_refused(app: App) -> None:
    # Starlette closes before accepting when no route matches.
    with pytest.raises(InvalidStatus) as caught:
        await within(tidewire.connect(app.url("/nowhere")))
    assert caught.value.response.status == 403


async def test_uvicorns_ws_options_reach_the_engine() -> None:
    starlette, _ = make_app()
    async with serve_app(
        starlette, lifespan="off", ws_max_size=1024, ws_per_message_deflate=False
    ) as served:
        async with tidewire.connect(served.url("/echo")) as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("x" * 1024)
            assert await within(ws.recv()) == "x" * 1024
            await ws.send("x" * 1025)
            with pytest.raises(ConnectionClosed) as caught:
                await within(ws.recv())
        assert caught.value.rcvd is not None
        assert caught.value.rcvd.code == 1009
    async with serve_app(starlette, lifespan="off") as served:
        async with tidewire.connect(served.url("/echo")) as ws:
            assert ws.response is not None
            extensions = ws.response.headers["Sec-WebSocket-Extensions"]
            assert extensions.startswith("permessage-deflate")
            # The client offered client_max_window_bits: the engine asks for 4 KiB.
            assert "client_max_window_bits=12" in extensions
