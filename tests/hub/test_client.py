"""tidewire.hub.client's HubClient against real hubs, on the memory broker and
on Redis: subscriptions, recovery, reconnection, tokens, requests, errors."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import jwt
import pytest

from tidewire.hub import Hub
from tidewire.hub.client import (
    ClientInfo,
    DisconnectEvent,
    HubClientError,
    HubError,
    Join,
    Leave,
    NotConnected,
    Position,
    Publication,
    SubscribedContext,
    Unsubscribed,
    backoff,
)

from .client_helpers import (
    FakeHub,
    MakeBackend,
    MakeClient,
    datas,
    make_backend_fixture,  # noqa: F401 - the fixture make_backend
    make_client_fixture,  # noqa: F401 - the fixture make_client
    requests,
    subscribed,
    take,
    url,
)
from .conftest import MakeHub
from .helpers import API_KEY, token, within
from .redis_server import free_port
from .tcp_proxy import Proxy


def events(client: Any, name: str) -> asyncio.Queue[Any]:
    """A queue of the client's ``name`` events."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.on(name, lambda *args: queue.put_nowait(args[0] if len(args) == 1 else args))
    return queue


async def next_event(queue: asyncio.Queue[Any], where: Any = None) -> Any:
    """The next event of ``queue`` for which ``where(event)`` holds."""
    while True:
        event = await within(queue.get())
        if where is None or where(event):
            return event


# Connecting.


async def test_client_connects_anonymously_and_with_a_token(
    hub: Hub, make_client: MakeClient
) -> None:
    anonymous = await within(make_client(url(hub)).connect())
    assert anonymous.user == "" and anonymous.client and anonymous.heartbeat == 25
    session = await within(make_client(url(hub), token=token("ada")).connect())
    assert session.user == "ada"
    assert session.client != anonymous.client


async def test_http_url_means_the_ws_endpoint(hub: Hub, make_client: MakeClient) -> None:
    client = make_client(f"http://127.0.0.1:{hub.port}")
    assert client.url == url(hub)
    assert (await within(client.connect())).user == ""


async def test_api_key_connects_a_backend_that_may_publish_anywhere(
    hub: Hub, make_client: MakeClient
) -> None:
    anonymous = await within(make_client(url(hub)).connect()) and None
    client = make_client(url(hub))
    await within(client.connect())
    with pytest.raises(HubError) as refused:
        await within(client.publish("news:today", {"n": 1}))
    assert refused.value.code == 403
    backend = make_client(url(hub), api_key=API_KEY)
    await within(backend.connect())
    position = await within(backend.publish("news:today", {"n": 1}))
    assert position.offset == 1
    assert anonymous is None


async def test_a_refused_token_ends_the_client_without_reconnecting(
    hub: Hub, make_client: MakeClient
) -> None:
    bad = jwt.encode({"sub": "eve"}, "another-secret-of-at-least-32-bytes!", algorithm="HS256")
    client = make_client(url(hub), token=bad)
    disconnects = events(client, "disconnect")
    with pytest.raises(HubError) as refused:
        await within(client.connect())
    assert refused.value.code == 401
    event = await next_event(disconnects)
    assert event.reconnect is False
    assert client.state == "disconnected"
    with pytest.raises(NotConnected):
        await within(client.publish("chat:a", 1))


async def test_get_token_is_called_again_when_the_token_expires(
    hub: Hub, make_client: MakeClient
) -> None:
    calls: list[str] = []

    async def get_token() -> str:
        # The first token expires within 2 s: the hub closes with 4001.
        exp = int(time.time() + 2) if not calls else int(time.time() + 3600)
        calls.append(f"t{len(calls)}")
        return token("ada", exp=exp)

    client = make_client(url(hub), get_token=get_token)
    disconnects = events(client, "disconnect")
    connects = events(client, "connect")
    await within(client.connect())
    await next_event(connects)
    sub = client.subscribe("chat:room")
    await within(sub.wait_subscribed())
    event = await next_event(disconnects)
    assert event.code == 4001, event
    assert event.reconnect is True
    session = await next_event(connects)
    assert session.user == "ada"
    assert len(calls) >= 2
    context = await within(sub.wait_subscribed())
    assert context.resubscribed is True


async def test_get_token_is_asked_once_more_after_a_refused_token(
    hub: Hub, make_client: MakeClient
) -> None:
    tokens = [jwt.encode({"sub": "ada"}, "stale-secret-of-at-least-32-bytes!!", algorithm="HS256"),
              token("ada")]

    async def get_token() -> str:
        return tokens.pop(0)

    client = make_client(url(hub), get_token=get_token)
    session = await within(client.connect())
    assert session.user == "ada" and tokens == []


async def test_get_token_failing_is_reported_and_retried(
    hub: Hub, make_client: MakeClient
) -> None:
    attempts = 0

    async def get_token() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("auth service down")
        return token("ada")

    client = make_client(url(hub), get_token=get_token)
    errors = events(client, "error")
    session = await within(client.connect())
    assert session.user == "ada"
    error = await next_event(errors)
    assert "auth service down" in str(error) and isinstance(error.__cause__, RuntimeError)


# Subscriptions.


async def test_subscription_yields_publications_once_in_order(
    hub: Hub, make_client: MakeClient, make_backend: MakeBackend
) -> None:
    client = make_client(url(hub), info={"name": "Ada"})
    await within(client.connect())
    sub = client.subscribe("chat:room")
    context = await within(sub.wait_subscribed())
    assert context == SubscribedContext("chat:room", context.epoch, 0, False, False)
    backend = make_backend(hub)
    for n in range(3):
        await within(backend.publish("chat:room", {"n": n}))
    position = await within(client.publish("chat:room", {"n": 3}))
    pubs = await take(sub, 4)
    assert [p.data for p in pubs] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]
    assert [p.offset for p in pubs] == [1, 2, 3, 4]
    assert {p.epoch for p in pubs} == {context.epoch}
    assert [p.sender for p in pubs[:3]] == [None] * 3
    assert pubs[3].sender == ClientInfo(client.session.client, "", {"name": "Ada"})  # type: ignore[union-attr]
    assert position == Position(context.epoch, 4)
    assert sub.position == position


async def test_subscribe_since_a_saved_position_recovers(
    hub: Hub, make_client: MakeClient, make_backend: MakeBackend
) -> None:
    backend = make_backend(hub)
    published = [await within(backend.publish("chat:room", n)) for n in range(5)]
    client = make_client(url(hub))
    await within(client.connect())
    sub = client.subscribe("chat:room", since=published[1].position)
    items = await take(sub.events(), 4)
    assert isinstance(items[0], SubscribedContext) and items[0].recovered is True
    assert datas(items) == [2, 3, 4]


async def test_subscriptions_see_joins_leaves_and_presence(
    hub: Hub, make_client: MakeClient, make_backend: MakeBackend
) -> None:
    ada = make_client(url(hub), token=token("ada"))
    await within(ada.connect())
    sub = ada.subscribe("chat:room", presence=True)
    context = await within(sub.wait_subscribed())
    assert context.presence is not None
    assert [c.user for c in context.presence] == ["ada"]
    bob = make_client(url(hub), token=token("bob"), info={"name": "Bob"})
    await within(bob.connect())
    bob_sub = bob.subscribe("chat:room")
    await within(bob_sub.wait_subscribed())
    joins = [e async for e in _until(sub.events(), lambda e: isinstance(e, Join)
                                      and e.client.user == "bob")]
    assert joins[-1].client.info == {"name": "Bob"}
    assert {c.user for c in await within(sub.presence())} == {"ada", "bob"}
    stats = await within(ada.presence_stats("chat:room"))
    assert (stats.num_clients, stats.num_users) == (2, 2)
    backend = make_backend(hub)
    assert {c.user for c in await within(backend.presence("chat:room"))} == {"ada", "bob"}
    assert (await within(backend.presence_stats("chat:room"))).num_users == 2
    await within(bob_sub.unsubscribe())
    leaves = [e async for e in _until(sub.events(), lambda e: isinstance(e, Leave))]
    assert leaves[-1].client.user == "bob"
    assert bob_sub.state == "unsubscribed"
    assert [p async for p in bob_sub] == []


async def _until(iterator: Any, last: Any) -> Any:
    async def gen() -> Any:
        async for item in iterator:
            yield item
            if last(item):
                return

    async for item in gen():
        yield item


async def test_history_by_limit_and_since(
    hub: Hub, make_client: MakeClient, make_backend: MakeBackend
) -> None:
    backend = make_backend(hub)
    for n in range(4):
        await within(backend.publish("chat:room", n))
    client = make_client(url(hub))
    await within(client.connect())
    latest = await within(client.history("chat:room", limit=2))
    assert [p.data for p in latest.publications] == [2, 3]
    assert latest.offset == 4 and latest.recovered is None
    since = await within(client.history("chat:room", since=Position(latest.epoch, 1)))
    assert [p.offset for p in since.publications] == [2, 3, 4] and since.recovered is True
    api = await within(backend.history("chat:room", limit=3))
    assert [p.data for p in api.publications] == [1, 2, 3]
    api_since = await within(backend.history("chat:room", since=Position(latest.epoch, 3)))
    assert [p.data for p in api_since.publications] == [3] and api_since.recovered is True
    assert (await within(backend.channels())).get("chat:room") == 0


async def test_a_refused_subscription_raises_from_its_iterator(
    hub: Hub, make_client: MakeClient
) -> None:
    client = make_client(url(hub))
    await within(client.connect())
    sub = client.subscribe("nowhere:room")
    with pytest.raises(HubError) as refused:
        async for _ in sub:
            pass
    assert refused.value.code == 404 and "nowhere" in refused.value.message
    assert sub.state == "unsubscribed" and client.subscription("nowhere:room") is None
    private = client.subscribe("private:room")  # no subscription token
    with pytest.raises(HubError) as denied:
        await within(private.wait_subscribed())
    assert denied.value.code in (401, 403)
    with pytest.raises(ValueError, match="already subscribed"):
        client.subscribe("chat:x")
        client.subscribe("chat:x")


async def test_a_subscription_token_from_get_token(
    hub: Hub, make_client: MakeClient
) -> None:
    asked: list[str] = []

    async def get_token(channel: str) -> str:
        asked.append(channel)
        return token("", channel=channel)

    client = make_client(url(hub))
    await within(client.connect())
    sub = client.subscribe("private:room", get_token=get_token)
    await within(sub.wait_subscribed())
    assert asked == ["private:room"]


async def test_a_request_error_carries_the_hubs_code_and_message(
    hub: Hub, make_client: MakeClient
) -> None:
    client = make_client(url(hub))
    await within(client.connect())
    with pytest.raises(HubError) as error:
        await within(client.publish("nowhere:x", 1))
    assert error.value.code == 404 and str(error.value).startswith("404 ")
    with pytest.raises(ValueError):
        await within(client.publish("chat:x", math.nan))  # not JSON: refused here
    with pytest.raises(HubError) as no_rpc:
        await within(client.rpc("add", [1, 2]))
    assert no_rpc.value.code == 501
    assert client.state == "connected"


# Reconnection and recovery.


async def test_publication_made_while_disconnected_is_delivered_after_reconnect(
    hub: Hub, make_client: MakeClient, make_backend: MakeBackend
) -> None:
    async with Proxy(hub.port) as proxy:
        client = make_client(url(proxy.port))
        await within(client.connect())
        sub = client.subscribe("chat:room")
        await within(sub.wait_subscribed())
        backend = make_backend(hub)
        await within(backend.publish("chat:room", "before"))
        assert datas(await take(sub, 1)) == ["before"]
        disconnects = events(client, "disconnect")
        proxy.hold()
        proxy.cut()  # the network drops; the next attempt waits in the proxy
        await next_event(disconnects)
        await within(backend.publish("chat:room", "while away"))
        proxy.release()
        await within(backend.publish("chat:room", "after"))  # maybe before the resubscribe
        items = await take(sub.events(), 3)
        assert isinstance(items[0], SubscribedContext)
        assert items[0].resubscribed is True and items[0].recovered is True
        assert datas(items) == ["while away", "after"]
        assert [p.offset for p in items[1:]] == [2, 3]


async def test_hub_restart_mid_stream(
    broker_url: str, make_client: MakeClient, make_hub: MakeHub
) -> None:
    """Redis keeps the history across the restart: nothing is lost, nothing
    comes twice, what was published while the node was down included. The
    memory broker loses it: the subscription says ``recovered`` false, in a
    new epoch, and goes on from there."""
    port = free_port()
    first: Hub | None = Hub(_config(broker_url, port))
    assert first is not None
    await within(first.start())
    second: Hub | None = None
    try:
        client = make_client(url(port), token=token("ada"))
        await within(client.connect())
        sub = client.subscribe("room")
        context = await within(sub.wait_subscribed())
        stream = sub.events()
        for n in range(1, 6):
            await first.publish("room", json.dumps(n))
        assert datas(await take(stream, 6)) == [1, 2, 3, 4, 5]  # after its context
        disconnects = events(client, "disconnect")
        stopping, first = first, None
        await within(stopping.close())
        event: DisconnectEvent = await next_event(disconnects)
        assert event.code == 1001 and event.reconnect is True
        if broker_url != "memory":  # another node of the hub takes publications meanwhile
            other = await make_hub(broker=broker_url)
            for n in range(6, 9):
                await other.publish("room", json.dumps(n))
        second = Hub(_config(broker_url, port))
        await within(second.start())
        for n in range(9, 11):
            await second.publish("room", json.dumps(n))
        if broker_url == "memory":
            items = await take(stream, 3)
            again = items[0]
            assert isinstance(again, SubscribedContext) and again.resubscribed
            assert again.recovered is False and again.epoch != context.epoch
            assert datas(items) == [9, 10]
            assert [p.offset for p in items[1:]] == [1, 2]
        else:
            items = await take(stream, 6)
            again = items[0]
            assert isinstance(again, SubscribedContext) and again.resubscribed
            assert again.recovered is True and again.epoch == context.epoch
            assert datas(items) == [6, 7, 8, 9, 10]
            assert [p.offset for p in items[1:]] == [6, 7, 8, 9, 10]
        await second.publish("room", json.dumps("live"))
        last = await take(sub, 1)
        assert datas(last) == ["live"]  # nothing else came in between: no duplicates
    finally:
        if second is not None:
            await within(second.close())
        if first is not None:
            await within(first.close())


def _config(broker_url: str, port: int) -> Any:
    from .conftest import config

    return config(broker=broker_url, port=port)


async def test_duplicates_are_skipped_by_offset(make_client: MakeClient) -> None:
    async def script(ws: Any, connect: dict[str, Any]) -> None:
        async for request in requests(ws):
            if request["op"] == "subscribe":
                await ws.send(json.dumps({"id": request["id"], "result": {
                    "channel": "c", "epoch": "e", "offset": 2, "recovered": False,
                    "publications": [{"offset": 1, "data": "a"}, {"offset": 2, "data": "b"}]}}))
                for offset, data in [(2, "b"), (1, "a"), (3, "c"), (3, "c"), (4, "d")]:
                    await ws.send(json.dumps({"push": "pub", "channel": "c",
                                              "offset": offset, "data": data}))

    async with FakeHub(script) as fake:
        client = make_client(fake.url)
        await within(client.connect())
        sub = client.subscribe("c")
        assert [p.data for p in await take(sub, 4)] == ["a", "b", "c", "d"]


async def test_dead_hub_is_detected_by_the_heartbeat(make_client: MakeClient) -> None:
    async def silent(ws: Any, connect: dict[str, Any]) -> None:
        await ws.wait_closed()  # reads nothing, answers no ping

    async with FakeHub(silent, heartbeat=0.05) as fake:
        client = make_client(fake.url, heartbeat_timeout=0.1)
        disconnects = events(client, "disconnect")
        session = await within(client.connect())
        assert session.heartbeat == 0.05
        event = await next_event(disconnects)
        assert event.reason == "no reply to ping in 0.1 s" and event.reconnect is True
        await next_event(events(client, "connect"))
        assert fake.connections >= 2


async def test_heartbeat_pings_keep_a_live_connection(make_client: MakeClient) -> None:
    answered = asyncio.Event()

    async def pong(ws: Any, connect: dict[str, Any]) -> None:
        pings = 0
        async for request in requests(ws):
            assert request["op"] == "ping"
            await ws.send(json.dumps({"id": request["id"], "result": {}}))
            pings += 1
            if pings == 5:
                answered.set()

    async with FakeHub(pong, heartbeat=0.02) as fake:
        client = make_client(fake.url, heartbeat_timeout=5)
        disconnects = events(client, "disconnect")
        await within(client.connect())
        await within(answered.wait())
        assert disconnects.empty() and client.state == "connected"
        assert fake.connections == 1


async def test_the_hubs_heartbeat_setting_reaches_the_client(
    make_hub: MakeHub, make_client: MakeClient
) -> None:
    hub = await make_hub(heartbeat=0.05)
    client = make_client(url(hub))
    assert (await within(client.connect())).heartbeat == 0.05
    for _ in range(3):  # requests go on between pings
        await within(client.presence_stats("chat:room"))


async def test_reconnection_backoff_is_bounded(make_client: MakeClient) -> None:
    client = make_client(url(free_port()), min_delay=0.01, max_delay=0.04)
    disconnects = events(client, "disconnect")
    task = asyncio.ensure_future(client.connect())
    delays = [(await next_event(disconnects)).delay for _ in range(8)]
    assert all(0.01 <= d <= 0.04 for d in delays), delays
    assert client.state == "connecting"
    task.cancel()


def test_backoff_doubles_its_ceiling_up_to_max_delay() -> None:
    assert backoff(0, 0.5, 20, lambda: 0.0) == 0.5
    ceilings = [backoff(n, 0.5, 20, lambda: 1.0) for n in range(8)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0, 20.0]
    assert backoff(10_000, 0.5, 20, lambda: 1.0) == 20.0


# Server-side subscriptions.


async def test_server_side_subscriptions_are_surfaced_and_recovered(
    hub: Hub, make_client: MakeClient, make_backend: MakeBackend
) -> None:
    async with Proxy(hub.port) as proxy:
        client = make_client(url(proxy.port), token=token("ada", channels_subscribe=["notify-ada"]))
        stream = client.server_events()
        await within(client.connect())
        first = (await take(stream, 1))[0]
        assert first == SubscribedContext("notify-ada", first.epoch, 0, False, False)
        backend = make_backend(hub)
        await within(backend.publish("notify-ada", "one"))
        await within(backend.subscribe("news:all", user="ada"))
        items = await take(stream, 2)
        assert isinstance(items[0], Publication) and items[0].data == "one"
        assert isinstance(items[1], SubscribedContext) and items[1].channel == "news:all"
        proxy.hold()
        proxy.cut()
        await within(backend.publish("notify-ada", "two"))
        proxy.release()
        items = await take(stream, 3)
        assert items[0] == SubscribedContext("notify-ada", first.epoch, 2, True, True)
        assert datas(items) == ["two"]
        # /api/subscribe lasts as long as the connection; the token's claim stays.
        assert items[2] == Unsubscribed("news:all")
        assert set(client.server_subscriptions()) == {"notify-ada"}
        await within(backend.unsubscribe("notify-ada", user="ada"))
        assert (await take(stream, 1)) == [Unsubscribed("notify-ada")]
        assert client.server_subscriptions() == {}


async def test_backend_disconnect_stops_the_client(
    hub: Hub, make_client: MakeClient, make_backend: MakeBackend
) -> None:
    client = make_client(url(hub), token=token("ada"))
    disconnects = events(client, "disconnect")
    await within(client.connect())
    assert await within(make_backend(hub).disconnect(user="ada")) == 1
    event = await next_event(disconnects)
    assert (event.code, event.reconnect) == (4501, False)
    assert client.state == "disconnected"


async def test_close_fails_waiting_requests_and_keeps_subscriptions(
    hub: Hub, make_client: MakeClient
) -> None:
    client = make_client(url(hub))
    sub = await subscribed(client, "chat:room")
    await within(client.close())
    assert client.state == "disconnected" and client.session is None
    with pytest.raises(NotConnected):
        await within(client.presence("chat:room"))
    assert sub.state == "subscribing"
    await within(client.connect())
    assert (await within(sub.wait_subscribed())).resubscribed is True


# The rpc, through a real backend.


async def test_rpc_calls_the_application_backend(
    make_hub: MakeHub, make_client: MakeClient, backend: Any
) -> None:
    from tidewire.hub import ProxyConfig

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        if body["method"] == "add":
            return {"result": {"data": sum(body["data"])}}
        return {"error": {"code": 404, "message": f"no method {body['method']}"}}

    backend.answers["rpc"] = answer
    hub = await make_hub(proxy=ProxyConfig(rpc=backend.url("rpc")))
    client = make_client(url(hub))
    await within(client.connect())
    assert await within(client.rpc("add", [1, 2])) == 3
    with pytest.raises(HubError) as error:
        await within(client.rpc("fly"))
    assert (error.value.code, error.value.message) == (404, "no method fly")
    backend.modes["rpc"] = "500"
    with pytest.raises(HubError) as unavailable:
        await within(client.rpc("add", [1]))
    assert (unavailable.value.code, unavailable.value.message) == (
        503, "backend unavailable, retry")


async def test_close_runs_the_closing_handshake(make_client: MakeClient) -> None:
    closed: asyncio.Future[tuple[int | None, str | None]] = \
        asyncio.get_running_loop().create_future()

    async def wait(ws: Any, connect: dict[str, Any]) -> None:
        await ws.wait_closed()
        closed.set_result((ws.close_code, ws.close_reason))

    async with FakeHub(wait) as fake:
        client = make_client(fake.url)
        await within(client.connect())
        await within(client.close())
        assert await within(closed) == (1000, "close() was called")
        assert client.state == "disconnected"


async def test_redis_restart_under_a_steady_stream_loses_and_doubles_nothing(
    redis_url: str, make_client: MakeClient
) -> None:
    """Another node publishes all along, never more than 50 ahead of what the
    client has (so the gap stays inside the history of 100) while the
    client's node stops and starts again on the same port."""
    total, ahead = 300, 50
    port = free_port()
    received: list[int] = []
    progress = asyncio.Event()

    async def publisher(node: Hub) -> None:
        for n in range(1, total + 1):
            while len(received) < n - ahead:
                progress.clear()
                await progress.wait()
            await node.publish("chat:steady", json.dumps(n))

    async with Hub(_config(redis_url, 0)) as other:
        node: Hub | None = Hub(_config(redis_url, port))
        await within(node.start())
        try:
            client = make_client(url(port))
            await within(client.connect())
            sub = client.subscribe("chat:steady")
            await within(sub.wait_subscribed())
            publishing = asyncio.ensure_future(publisher(other))
            contexts: list[SubscribedContext] = []

            async def read() -> None:
                nonlocal node
                async for event in sub.events():
                    if isinstance(event, SubscribedContext):
                        contexts.append(event)
                    elif isinstance(event, Publication):
                        received.append(event.data)
                        progress.set()
                        if len(received) == 100:  # mid-stream: restart the client's node
                            stopping, node = node, None
                            assert stopping is not None
                            await stopping.close()
                            node = Hub(_config(redis_url, port))
                            await node.start()
                        if len(received) == total:
                            return

            await within(read(), 30)
            await within(publishing)
        finally:
            if node is not None:
                await within(node.close())
    assert received == list(range(1, total + 1))
    assert [(c.resubscribed, c.recovered) for c in contexts] == [(False, False), (True, True)]


async def test_a_malformed_connect_reply_ends_the_client_with_a_clear_error(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    import tidewire

    async def handler(ws: Any) -> None:
        request = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": request["id"], "result": {"hello": "world"}}))
        await ws.wait_closed()

    async with tidewire.serve(handler, "127.0.0.1", 0) as server:
        client = make_client(url(server.port))
        with pytest.raises(HubClientError, match="the client failed"):
            await within(client.connect())
        assert client.state == "disconnected"
    assert "the hub client failed" in caplog.text


async def test_every_reader_of_a_subscription_sees_its_end(
    hub: Hub, make_client: MakeClient
) -> None:
    client = make_client(url(hub))
    sub = await subscribed(client, "chat:room")
    readers = [asyncio.ensure_future(_drain(sub)) for _ in range(2)]
    await asyncio.sleep(0)  # both readers wait on the subscription
    await within(sub.unsubscribe())
    assert await within(asyncio.gather(*readers)) == [[], []]
    assert [p async for p in sub] == []  # and a reader that comes later


async def _drain(sub: Any) -> list[Any]:
    return [p async for p in sub]


async def test_connect_proxy_sees_the_cookie_and_the_data(
    make_hub: MakeHub, make_client: MakeClient, backend: Any
) -> None:
    from tidewire.hub import ProxyConfig

    backend.answers["connect"] = lambda body: {"result": {
        "user": "ada", "data": {"echo": body.get("data")}}}
    hub = await make_hub(proxy=ProxyConfig(connect=backend.url("connect"), headers=("Cookie",)))
    client = make_client(url(hub), data={"page": "home"},
                         connect_options={"additional_headers": {"Cookie": "session=s1"}})
    session = await within(client.connect())
    assert (session.user, session.data) == ("ada", {"echo": {"page": "home"}})
    call = await within(backend.next("connect"))
    assert call.headers.get("Cookie") == "session=s1"
