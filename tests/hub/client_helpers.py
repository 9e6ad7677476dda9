"""Helpers of the tests of tidewire.hub.client: clients closed at the end,
the backend helper in both twins, and a scripted fake hub."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

import tidewire
from tidewire.hub import Hub
from tidewire.hub.client import AsyncBackend, Backend, HubClient, Subscription
from tidewire.hub.client.models import Publication, SubscriptionEvent

from .helpers import API_KEY, within

MakeClient = Callable[..., HubClient]


def url(hub: Hub | int) -> str:
    return f"ws://127.0.0.1:{hub if isinstance(hub, int) else hub.port}/ws"


@pytest.fixture(name="make_client")
async def make_client_fixture() -> AsyncIterator[MakeClient]:
    """``make_client(url, **options)``: a HubClient closed when the test ends.
    Delays are short so that reconnections don't slow the suite."""
    clients: list[HubClient] = []

    def make(target: str, **options: Any) -> HubClient:
        options.setdefault("min_delay", 0.02)
        options.setdefault("max_delay", 0.2)
        client = HubClient(target, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await within(client.close())


class Threaded:
    """The sync ``Backend`` with awaitable methods: each call in a thread."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.backend, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


MakeBackend = Callable[..., Any]


@pytest.fixture(name="make_backend", params=["sync", "async"])
async def make_backend_fixture(request: pytest.FixtureRequest) -> AsyncIterator[MakeBackend]:
    """``make_backend(hub)``: the backend helper on ``hub``, in each twin:
    ``Backend`` driven from a thread, or ``AsyncBackend``."""
    async with AsyncExitStack() as stack:

        def make(hub: Hub | str, api_key: str = API_KEY) -> Any:
            base = hub if isinstance(hub, str) else f"http://127.0.0.1:{hub.port}"
            if request.param == "sync":
                backend = Backend(base, api_key)
                stack.callback(backend.close)
                return Threaded(backend)
            async_backend = AsyncBackend(base, api_key)
            stack.push_async_callback(async_backend.close)
            return async_backend

        yield make


async def take(events: AsyncIterator[SubscriptionEvent] | Subscription,
               n: int) -> list[Any]:
    """The next ``n`` items of a subscription or an event stream."""
    iterator = aiter(events)
    return [await within(anext(iterator)) for _ in range(n)]


async def subscribed(client: HubClient, channel: str, **options: Any) -> Subscription:
    """Connect ``client`` and subscribe it to ``channel``; the subscription, confirmed."""
    await within(client.connect())
    sub = client.subscribe(channel, **options)
    await within(sub.wait_subscribed())
    return sub


def datas(items: list[Any]) -> list[Any]:
    return [item.data for item in items if isinstance(item, Publication)]


Script = Callable[[tidewire.ServerConnection, dict[str, Any]], Awaitable[None]]


class FakeHub:
    """A WebSocket server that answers ``connect`` like a hub, then does what
    the test's ``script(ws, connect_request)`` says: for behaviours a real
    hub doesn't show on demand (duplicates, silence)."""

    def __init__(self, script: Script, heartbeat: float = 25) -> None:
        self.script = script
        self.heartbeat = heartbeat
        self.connections = 0
        self.server: tidewire.Server | None = None

    async def __aenter__(self) -> FakeHub:
        self.server = await tidewire.serve(self._handler, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return url(self.server.port)

    async def _handler(self, ws: tidewire.ServerConnection) -> None:
        self.connections += 1
        request = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": request["id"], "result": {
            "client": f"fake-{self.connections}", "user": "", "version": "0",
            "heartbeat": self.heartbeat}}))
        await self.script(ws, request)


async def requests(ws: tidewire.ServerConnection) -> AsyncIterator[dict[str, Any]]:
    async for message in ws:
        value = json.loads(message)
        assert isinstance(value, dict)
        yield value
