"""docs/hub-client.md's examples run against a real hub and do what the page
says."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tidewire.hub import Namespace, ProxyConfig
from tidewire.hub.client import HubClient

from .backend import Backend as AppBackend
from .client_helpers import MakeBackend, MakeClient, make_backend_fixture, make_client_fixture, url  # noqa: F401 - fixtures
from .conftest import NAMESPACES, MakeHub
from .helpers import API_KEY, token, within
from .tcp_proxy import Proxy

DOC = Path(__file__).parents[2] / "docs" / "hub-client.md"

DOC_NAMESPACES = {
    **NAMESPACES,
    "ticker": Namespace(history_size=10, history_ttl=300, anonymous=True),
    "notify": Namespace(history_size=10, history_ttl=300),
}


def example(containing: str, hub_port: int | None = None) -> dict[str, Any]:
    """Run the page's Python block that holds ``containing``; its globals."""
    for match in re.finditer(r"```python\n(.*?)```", DOC.read_text(), re.S):
        code = match.group(1)
        if containing in code:
            if hub_port is not None:
                code = code.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{hub_port}")
                code = code.replace('"the-api-key"', repr(API_KEY))
            namespace: dict[str, Any] = {"__name__": "example"}
            exec(compile(code, str(DOC), "exec"), namespace)
            return namespace
    raise AssertionError(f"no python block with {containing!r} in {DOC}")


def watched(subscribed: asyncio.Event) -> type[HubClient]:
    """A HubClient that sets ``subscribed`` once a subscription is confirmed."""

    class Watched(HubClient):
        def subscribe(self, channel: str, **options: Any) -> Any:
            sub = super().subscribe(channel, **options)
            task = asyncio.ensure_future(sub.wait_subscribed())
            task.add_done_callback(lambda _: subscribed.set())
            return sub

    return Watched


@pytest.fixture
async def doc_hub(make_hub: MakeHub, backend: AppBackend) -> Any:
    backend.answers["rpc"] = lambda body: {"result": {"data": sum(body["data"])}}
    return await make_hub(namespaces=DOC_NAMESPACES, proxy=ProxyConfig(rpc=backend.url("rpc")))


async def test_read_lobby(doc_hub: Any, make_backend: MakeBackend) -> None:
    code = example("async def read_lobby")
    subscribed = asyncio.Event()
    code["HubClient"] = watched(subscribed)
    reading = asyncio.ensure_future(code["read_lobby"](url(doc_hub), token("ada"), 2))
    await within(subscribed.wait())
    backend = make_backend(doc_hub)
    for text in ("one", "two", "three"):
        await within(backend.publish("chat:lobby", text))
    assert await within(reading) == ["one", "two"]


async def test_follow_ticker_says_when_nothing_was_missed(
    doc_hub: Any, make_backend: MakeBackend
) -> None:
    subscribed = asyncio.Event()
    async with Proxy(doc_hub.port) as proxy:
        client = watched(subscribed)(url(proxy.port), min_delay=0.02, max_delay=0.1)
        try:
            await within(client.connect())
            following = asyncio.ensure_future(example("follow_ticker")["follow_ticker"](client, 2))
            await within(subscribed.wait())
            proxy.hold()
            proxy.cut()
            backend = make_backend(doc_hub)
            await within(backend.publish("ticker:prices", 101))
            await within(backend.publish("ticker:prices", 102))
            proxy.release()
            assert await within(following) == ["back, nothing missed", "1: 101", "2: 102"]
        finally:
            await within(client.close())


async def test_tour(doc_hub: Any, make_client: MakeClient) -> None:
    client = make_client(url(doc_hub), token=token("ada"))
    await within(client.connect())
    client.subscribe("chat:lobby")
    await within(client.subscription("chat:lobby").wait_subscribed())  # type: ignore[union-attr]
    result = await within(example("async def tour")["tour"](client))
    assert result == {"offset": 1, "history": [{"text": "hi"}], "users": ["ada"],
                      "clients": 1, "total": 3}


async def test_notifications(doc_hub: Any, make_client: MakeClient,
                             make_backend: MakeBackend) -> None:
    client = make_client(url(doc_hub), token=token("ada", channels_subscribe=["notify:42"]))
    await within(client.connect())  # server-side subscriptions are made by now
    reading = asyncio.ensure_future(example("async def notifications")["notifications"](client))
    backend = make_backend(doc_hub)
    await within(backend.publish("notify:42", {"n": 1}))
    await within(backend.unsubscribe("notify:42", user="ada"))
    assert await within(reading) == ["subscribed to notify:42", {"n": 1}]


async def test_sync_backend_block(doc_hub: Any, make_client: MakeClient) -> None:
    client = make_client(url(doc_hub), token=token("42"))
    stream = client.server_events()
    await within(client.connect())
    code = await within(asyncio.to_thread(example, "with Backend(", doc_hub.port))
    assert (await within(anext(stream))).channel == "notify:42"
    assert [p.data for p in code["last"]] == [{"text": "deploy finished"}]
    assert code["online"] == 0
    assert code["busiest"][0] in {"chat:lobby", "chat:a", "chat:b", "notify:42"}


async def test_announce(doc_hub: Any) -> None:
    code = example("async def announce", doc_hub.port)
    assert await within(code["announce"]("hello")) == 1
    assert await within(code["announce"]("again")) == 2
    with pytest.raises(RuntimeError, match="not announced"):
        await within(example("async def announce", 1)["announce"]("nobody listens"))
