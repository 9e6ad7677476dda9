"""tidewire.hub.client's Backend and AsyncBackend against real hubs: each
method of the HTTP API, its errors, and its kept-alive connections."""

from __future__ import annotations

import asyncio
import math

import pytest

from tidewire.hub import Hub
from tidewire.hub.client import AsyncBackend, Backend, BackendError, Published

from .client_helpers import (  # noqa: F401 - fixtures
    MakeBackend,
    MakeClient,
    make_backend_fixture,
    make_client_fixture,
    take,
    url,
)
from .helpers import API_KEY, token, within
from .redis_server import free_port
from .test_http_keepalive import Accepted


async def test_publish_and_broadcast_reach_subscribers(
    hub: Hub, make_backend: MakeBackend, make_client: MakeClient
) -> None:
    client = make_client(url(hub))
    await within(client.connect())
    room, other = client.subscribe("news:a"), client.subscribe("news:b")
    context = await within(room.wait_subscribed())
    await within(other.wait_subscribed())
    backend = make_backend(hub)
    published = await within(backend.publish("news:a", {"text": "hi"}))
    assert published == Published("news:a", context.epoch, 1)
    results = await within(backend.broadcast(["news:a", "news:b"], [1, "two"]))
    assert [(r.channel, r.offset) for r in results] == [("news:a", 2), ("news:b", 1)]
    assert [p.data for p in await take(room, 2)] == [{"text": "hi"}, [1, "two"]]
    assert [p.data for p in await take(other, 1)] == [[1, "two"]]
    assert await within(backend.channels()) == {"news:a": 1, "news:b": 1}


async def test_errors_carry_the_status_and_the_hubs_message(
    hub: Hub, make_backend: MakeBackend
) -> None:
    backend = make_backend(hub)
    with pytest.raises(BackendError) as unknown:
        await within(backend.publish("nowhere:a", 1))
    assert unknown.value.status == 404 and "nowhere" in unknown.value.message
    with pytest.raises(BackendError) as nothing:
        await within(backend.broadcast(["news:a", "nowhere:b"], 1))
    assert nothing.value.status == 404
    assert await within(backend.history("news:a")) is not None  # nothing was published
    assert (await within(backend.history("news:a"))).publications == []
    wrong = make_backend(hub, api_key="not-the-key")
    with pytest.raises(BackendError) as refused:
        await within(wrong.publish("news:a", 1))
    assert refused.value.status == 401
    with pytest.raises(ValueError):
        await within(backend.publish("news:a", math.inf))  # not JSON: refused here
    with pytest.raises(ValueError, match="exactly one"):
        await within(backend.disconnect())


async def test_a_hub_that_is_down_raises_without_a_status(make_backend: MakeBackend) -> None:
    backend = make_backend(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendError) as down:
        await within(backend.presence("chat:a"))
    assert down.value.status is None and "GET /api/presence" in down.value.message


async def test_server_side_subscribe_unsubscribe_and_disconnect(
    hub: Hub, make_backend: MakeBackend, make_client: MakeClient
) -> None:
    client = make_client(url(hub), token=token("ada"))
    stream = client.server_events()
    await within(client.connect())
    backend = make_backend(hub)
    await within(backend.subscribe("news:ada", user="ada"))
    assert (await take(stream, 1))[0].channel == "news:ada"
    await within(backend.unsubscribe("news:ada", client=client.session.client))  # type: ignore[union-attr]
    assert (await take(stream, 1))[0].channel == "news:ada"
    assert client.server_subscriptions() == {}
    assert await within(backend.disconnect(user="nobody")) == 0
    assert await within(backend.disconnect(user="ada")) == 1


async def test_each_twin_keeps_one_connection_for_its_requests(hub: Hub) -> None:
    accepted = Accepted(hub)
    base = f"http://127.0.0.1:{hub.port}"
    async with AsyncBackend(base, API_KEY) as backend:
        for n in range(20):
            await within(backend.publish("news:a", n))
    assert len(accepted.conns) == 1

    def publish_from_a_thread() -> None:
        with Backend(base, API_KEY) as sync_backend:
            for n in range(20):
                sync_backend.publish("news:a", n)

    await within(asyncio.to_thread(publish_from_a_thread))
    assert len(accepted.conns) == 2
