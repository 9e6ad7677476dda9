"""examples/fastapi_chat.py under uvicorn with tidewire's engine: every message
reaches every client, and clients that leave, cleanly or not, break nobody."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import tidewire
from examples.fastapi_chat import app, room
from tidewire.exceptions import ConnectionClosed, InvalidStatus

from .conftest import Served, serve_app, within


@pytest.fixture
async def chat() -> AsyncIterator[Served]:
    async with serve_app(app) as served:
        yield served
    assert not room.members, "the room kept clients that left"


async def join(chat: Served, name: str, *others: tidewire.ClientConnection
               ) -> tidewire.ClientConnection:
    """Connect as ``name``; everyone, the newcomer included, hears of it."""
    ws = await within(tidewire.connect(chat.url(f"/ws?name={name}")))
    for client in (*others, ws):
        assert await within(client.recv()) == f"* {name} joined"
    return ws


async def received(ws: tidewire.ClientConnection, count: int) -> list[str | bytes]:
    return [await within(ws.recv()) for _ in range(count)]


async def test_every_message_reaches_every_client(chat: Served) -> None:
    ada = await join(chat, "Ada")
    bob = await join(chat, "Bob", ada)
    cy = await join(chat, "Cy", ada, bob)
    clients = (ada, bob, cy)
    for sender, text in ((ada, "hello"), (bob, "hi Ada"), (cy, "héllo 🌊")):
        await sender.send(text)
    for client in clients:
        assert await received(client, 3) == ["Ada: hello", "Bob: hi Ada", "Cy: héllo 🌊"]
    await cy.close()
    await bob.close()
    assert await received(ada, 2) == ["* Cy left", "* Bob left"]
    await ada.close()
    assert ada.close_code == 1000


async def test_a_client_lost_mid_broadcast_breaks_nobody(chat: Served) -> None:
    ada = await join(chat, "Ada")
    bob = await join(chat, "Bob", ada)
    cy = await join(chat, "Cy", ada, bob)
    burst = [f"message {i}" for i in range(200)]
    for text in burst:
        cy.send_nowait(text)
    # Bob's socket dies without a close frame while the burst is broadcast.
    assert bob.transport is not None
    bob.transport.abort()
    expected = [f"Cy: {text}" for text in burst]
    for client in (ada, cy):
        got = await received(client, len(burst) + 1)
        assert [m for m in got if m != "* Bob left"] == expected
        assert "* Bob left" in got
    await ada.send("still here?")
    assert await within(cy.recv()) == "Ada: still here?"
    assert await within(ada.recv()) == "Ada: still here?"
    await ada.close()
    assert await within(cy.recv()) == "* Ada left"
    await cy.close()


async def test_a_client_that_sends_bytes_is_closed_with_1003(chat: Served) -> None:
    ada = await join(chat, "Ada")
    bob = await join(chat, "Bob", ada)
    await bob.send(b"\x00\x01")
    with pytest.raises(ConnectionClosed) as caught:
        await within(bob.recv())
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (
        1003, "this room takes text messages only")
    assert await within(ada.recv()) == "* Bob left"
    await ada.close()


@pytest.mark.parametrize("query", ["", "?name=", "?name=" + "x" * 21])
async def test_a_missing_or_bad_name_is_refused_with_403(chat: Served, query: str) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await within(tidewire.connect(chat.url(f"/ws{query}")))
    assert caught.value.response.status == 403


async def test_names_come_from_the_query_string_decoded(chat: Served) -> None:
    zoe = await within(tidewire.connect(chat.url("/ws?name=Zo%C3%A9%20K")))
    assert await within(zoe.recv()) == "* Zoé K joined"
    await zoe.send("bonjour")
    assert await within(zoe.recv()) == "Zoé K: bonjour"
    await zoe.close()


async def test_clients_get_1012_when_the_server_shuts_down() -> None:
    async with serve_app(app) as chat:
        ada = await join(chat, "Ada")
        bob = await join(chat, "Bob", ada)
    # Shutdown returns once the app's handlers finished: the room is empty.
    assert not room.members
    for client in (ada, bob):
        await within(client.wait_closed())
        assert client.close_code == 1012
        # Only the close frame came after the join notices.
        with pytest.raises(ConnectionClosed):
            await within(client.recv())


async def test_many_clients_each_get_every_message(chat: Served) -> None:
    names = [f"user{i}" for i in range(20)]
    clients = []
    for name in names:
        clients.append(await join(chat, name, *clients))
    for client in clients:
        await client.send("ping")
    results = await asyncio.gather(*(received(c, len(names)) for c in clients))
    for got in results:
        assert got == results[0]
        assert sorted(got) == sorted(f"{name}: ping" for name in names)
    while clients:
        leaving = clients.pop()
        await leaving.close()
        assert leaving.close_code == 1000
        # Read as clients do: one that leaves 16 messages unread stops reading
        # (the client's max_queue), and then can't see the close frame either.
        for client in clients:
            assert await within(client.recv()) == f"* {names[len(clients)]} left"
