"""Django Channels 4 consumers under uvicorn with tidewire's engine: a chat
room through the in-memory channel layer's groups, an echo, origin checks.

Django is configured here, with no project: the settings Channels needs, an
in-memory channel layer, and the ASGI application a project's asgi.py would
hold (ProtocolTypeRouter, AllowedHostsOriginValidator, URLRouter).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        ALLOWED_HOSTS=["127.0.0.1"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        SECRET_KEY="only-for-the-framework-tests",
        USE_TZ=True,
    )
    django.setup()

from channels.generic.websocket import (  # noqa: E402 (needs the settings above)
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

import tidewire  # noqa: E402
from tidewire.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

from .conftest import ErrorRecords, Served, serve_app, within  # noqa: E402


def make_application(disconnects: asyncio.Queue[int]) -> Any:
    """What a project's asgi.py holds; consumers put each close code they
    see in ``disconnects``."""

    class RoomConsumer(AsyncJsonWebsocketConsumer):
        """``/rooms/<room>/?name=...``: JSON ``{"text": ...}`` in, to the
        room's group; ``{"from": ..., "text": ...}`` out to every member."""

        async def connect(self) -> None:
            self.room = "room-" + self.scope["url_route"]["kwargs"]["room"]
            query = parse_qs(self.scope["query_string"].decode())
            self.name = query.get("name", ["anonymous"])[0]
            await self.channel_layer.group_add(self.room, self.channel_name)
            await self.accept(subprotocol="chat.v1" if "chat.v1" in self.scope[
                "subprotocols"] else None)

        async def receive_json(self, content: Any, **kwargs: Any) -> None:
            await self.channel_layer.group_send(
                self.room, {"type": "chat.message", "from": self.name, "text": content["text"]}
            )

        async def chat_message(self, event: dict[str, Any]) -> None:
            await self.send_json({"from": event["from"], "text": event["text"]})

        async def disconnect(self, code: int) -> None:
            await self.channel_layer.group_discard(self.room, self.channel_name)
            disconnects.put_nowait(code)

    class EchoConsumer(AsyncWebsocketConsumer):
        """Echo text and bytes; the text ``close CODE`` closes with CODE."""

        async def receive(
            self, text_data: str | None = None, bytes_data: bytes | None = None
        ) -> None:
            if text_data is not None and text_data.startswith("close "):
                await self.close(code=int(text_data.split()[1]))
            elif text_data is not None:
                await self.send(text_data=text_data)
            else:
                await self.send(bytes_data=bytes_data)

        async def disconnect(self, code: int) -> None:
            disconnects.put_nowait(code)

    return ProtocolTypeRouter({
        "websocket": AllowedHostsOriginValidator(URLRouter([
            path("rooms/<str:room>/", RoomConsumer.as_asgi()),
            path("echo/", EchoConsumer.as_asgi()),
        ])),
    })


class Project:
    def __init__(self, served: Served, disconnects: asyncio.Queue[int]) -> None:
        self.served = served
        self.disconnects = disconnects
        self.origin = served.base

    async def connect(self, path: str, **options: Any) -> tidewire.ClientConnection:
        options.setdefault("origin", self.origin)
        return await within(tidewire.connect(self.served.url(path), **options))

    async def disconnect(self) -> int:
        """The next close code a consumer saw."""
        return await within(self.disconnects.get())


@pytest.fixture
async def project() -> AsyncIterator[Project]:
    disconnects: asyncio.Queue[int] = asyncio.Queue()
    # ProtocolTypeRouter has no lifespan application: uvicorn is told so.
    async with serve_app(make_application(disconnects), lifespan="off") as served:
        yield Project(served, disconnects)
    # The layer lives as long as the process: leave no group or channel behind.
    await get_channel_layer().flush()


async def received_json(ws: tidewire.ClientConnection) -> Any:
    message = await within(ws.recv())
    assert isinstance(message, str)
    return json.loads(message)


async def test_a_group_message_reaches_both_members_and_no_one_else(project: Project) -> None:
    ada = await project.connect("/rooms/lobby/?name=Ada", subprotocols=["chat.v1"])
    bob = await project.connect("/rooms/lobby/?name=Bob")
    cy = await project.connect("/rooms/kitchen/?name=Cy")
    assert ada.subprotocol == "chat.v1"
    assert bob.subprotocol is None

    await ada.send(json.dumps({"text": "hello, lobby"}))
    for ws in (ada, bob):
        assert await received_json(ws) == {"from": "Ada", "text": "hello, lobby"}
    await bob.send(json.dumps({"text": "hi Ada 🌊"}))
    for ws in (ada, bob):
        assert await received_json(ws) == {"from": "Bob", "text": "hi Ada 🌊"}

    await cy.send(json.dumps({"text": "anyone in the kitchen?"}))
    assert await received_json(cy) == {"from": "Cy", "text": "anyone in the kitchen?"}
    # Ada and Bob got nothing of the kitchen's: their next message is the lobby's.
    await ada.send(json.dumps({"text": "bye"}))
    assert await received_json(bob) == {"from": "Ada", "text": "bye"}

    await ada.close()
    assert await project.disconnect() == 1000
    await bob.send(json.dumps({"text": "alone now"}))
    assert await received_json(bob) == {"from": "Bob", "text": "alone now"}
    for ws in (bob, cy):
        await ws.close(4000)
        assert await project.disconnect() == 4000


async def test_a_member_lost_without_a_close_leaves_the_group(project: Project) -> None:
    ada = await project.connect("/rooms/lobby/?name=Ada")
    bob = await project.connect("/rooms/lobby/?name=Bob")
    assert bob.transport is not None
    bob.transport.abort()
    assert await project.disconnect() == 1006
    await ada.send(json.dumps({"text": "still there?"}))
    assert await received_json(ada) == {"from": "Ada", "text": "still there?"}
    await ada.close()
    assert await project.disconnect() == 1000


async def test_echo_consumer_round_trips_and_closes_with_a_code(project: Project) -> None:
    ws = await project.connect("/echo/")
    for message in ("hello", "ünïcödé", b"\x00\x01\xff", b""):
        await ws.send(message)
        assert await within(ws.recv()) == message
    await ws.send("close 4321")
    with pytest.raises(ConnectionClosed) as caught:
        await within(ws.recv())
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 4321
    # The consumer closed: its disconnect() gets the code the client echoed.
    assert await project.disconnect() == 4321


@pytest.mark.parametrize("origin", [None, "http://evil.example"])
async def test_a_foreign_or_missing_origin_is_refused_with_403(
    project: Project, origin: str | None
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await project.connect("/echo/", origin=origin)
    assert caught.value.response.status == 403
    assert project.disconnects.empty()  # no consumer ran


async def test_an_unrouted_path_is_a_500_and_one_logged_error(
    project: Project, server_errors: ErrorRecords
) -> None:
    # URLRouter raises for a path it doesn't know: the app failed before
    # accepting, which is a 500, and the app's exception is logged once.
    with pytest.raises(InvalidStatus) as caught:
        await project.connect("/nowhere/")
    assert caught.value.response.status == 500
    assert caught.value.response.body == b"Internal Server Error"
    [record] = server_errors.records
    assert record.getMessage().startswith("Exception in ASGI application")
    assert record.exc_info is not None
    assert "No route found for path 'nowhere/'" in str(record.exc_info[1])
    server_errors.records.clear()


async def test_consumers_see_1012_when_the_server_shuts_down() -> None:
    disconnects: asyncio.Queue[int] = asyncio.Queue()
    async with serve_app(make_application(disconnects), lifespan="off") as served:
        project = Project(served, disconnects)
        ada = await project.connect("/rooms/lobby/?name=Ada")
        echo = await project.connect("/echo/")
    # uvicorn waited for the consumers: both saw the restart code.
    assert [disconnects.get_nowait(), disconnects.get_nowait()] == [1012, 1012]
    for ws in (ada, echo):
        await within(ws.wait_closed())
        assert ws.close_code == 1012
    await get_channel_layer().flush()
