"""Server-side subscriptions: from the connect proxy, the token's
``channels_subscribe`` claim and the HTTP API; their pushes and their recovery
on reconnect. Subscription tokens, and presence stats."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tidewire.hub import Hub, Namespace, ProxyConfig

from .backend import Backend
from .conftest import NAMESPACES, MakeHub
from .helpers import API_KEY, Client, ReplyError, token, within

AUTH = {"Authorization": f"Bearer {API_KEY}"}

WITH_SECRET = {**NAMESPACES, "secret": Namespace(history_size=10, history_ttl=300,
                                                 presence=True, anonymous=True, private=True)}


async def api(hub: Hub, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}", headers=AUTH,
                                 timeout=10) as http:
        if body is None:
            return await http.get(path, params=params)
        return await http.post(path, json=body)


def subscribe_token(user: str, channel: str, **claims: Any) -> str:
    return token(user, channel=channel, **claims)


# Sources.


async def test_connect_proxy_channels_are_pushed_after_the_connect_reply(
    make_hub: MakeHub, backend: Backend
) -> None:
    hub = await make_hub(proxy=ProxyConfig(connect=backend.url("connect")))
    backend.answers["connect"] = {"result": {"user": "ann",
                                             "channels": ["news:ann", "private:ann"]}}
    await hub.publish("news:ann", '"before"')
    client = await Client.open(hub)  # the connect reply comes first
    pushes = [await client.push("subscribe") for _ in range(2)]
    assert [p["channel"] for p in pushes] == ["news:ann", "private:ann"]
    assert pushes[0]["offset"] == 1 and isinstance(pushes[0]["epoch"], str)
    assert "recovered" not in pushes[0]  # no position was given
    await hub.publish("news:ann", '"live"')
    push = await client.push("pub")
    assert (push["channel"], push["offset"], push["data"]) == ("news:ann", 2, "live")
    # A server-side channel can't be subscribed again by the client.
    with pytest.raises(ReplyError) as info:
        await client.request("subscribe", channel="news:ann")
    assert info.value.code == 409 and "server-side" in info.value.message
    await client.close()


async def test_token_channels_subscribe_claim(hub: Hub) -> None:
    client = await Client.open(hub, token=token("ann", channels_subscribe=["private:ann"]))
    push = await client.push("subscribe")
    assert push == {"push": "subscribe", "channel": "private:ann", "epoch": push["epoch"],
                    "offset": 0}
    await hub.publish("private:ann", '{"n": 1}')
    assert await client.pubs(1) == [{"n": 1}]
    await client.close()


async def test_token_channels_subscribe_of_an_unknown_namespace_is_refused(hub: Hub) -> None:
    client = await Client.open(hub, connect=False)
    await client.send({"id": 1, "op": "connect",
                       "token": token("ann", channels_subscribe=["nowhere:x"])})
    reply = await client._read()
    assert reply["error"]["code"] == 401 and "nowhere:x" in reply["error"]["message"]
    assert (await client.closed())[0] == 4500


async def test_api_subscribe_and_unsubscribe_a_user_and_a_client(hub: Hub) -> None:
    first = await Client.open(hub, token=token("ann"))
    second = await Client.open(hub, token=token("ann"))
    other = await Client.open(hub, token=token("bob"))
    response = await api(hub, "/api/subscribe", {"user": "ann", "channel": "news:flash"})
    assert (response.status_code, response.json()) == (200, {})
    for client in (first, second):
        assert (await client.push("subscribe"))["channel"] == "news:flash"
    response = await api(hub, "/api/subscribe",
                         {"client": other.connected["client"], "channel": "news:bob"})
    assert response.status_code == 200
    assert (await other.push("subscribe"))["channel"] == "news:bob"
    await hub.publish("news:flash", '"one"')
    for client in (first, second):
        assert await client.pubs(1) == ["one"]
    response = await api(hub, "/api/unsubscribe",
                         {"client": first.connected["client"], "channel": "news:flash"})
    assert response.status_code == 200
    assert await first.push("unsubscribe") == {"push": "unsubscribe", "channel": "news:flash"}
    await hub.publish("news:flash", '"two"')
    assert await second.pubs(1) == ["two"]
    # `first` gets nothing more: the next thing it sees is its ping's reply.
    assert await first.request("ping") == {}
    assert not first.pushes
    # bob's channel is untouched.
    await hub.publish("news:bob", '"bob"')
    assert await other.pubs(1) == ["bob"]
    for client in (first, second, other):
        await client.close()


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
async def test_api_subscribe_acts_on_every_node(make_hub: MakeHub) -> None:
    a, b = await make_hub(), await make_hub()
    on_a = await Client.open(a, token=token("ann"))
    on_b = await Client.open(b, token=token("ann"))
    await api(a, "/api/subscribe", {"user": "ann", "channel": "news:nodes"})
    for client in (on_a, on_b):
        assert (await client.push("subscribe"))["channel"] == "news:nodes"
    await a.publish("news:nodes", '"everywhere"')
    for client in (on_a, on_b):
        assert await client.pubs(1) == ["everywhere"]
    await api(a, "/api/unsubscribe", {"client": on_b.connected["client"],
                                      "channel": "news:nodes"})
    assert (await on_b.push("unsubscribe"))["channel"] == "news:nodes"
    await b.publish("news:nodes", '"a only"')
    assert await on_a.pubs(1) == ["a only"]
    assert await on_b.request("ping") == {} and not on_b.pushes
    await on_a.close()
    await on_b.close()


async def test_api_unsubscribe_also_ends_a_clients_own_subscription(hub: Hub) -> None:
    client = await Client.open(hub, token=token("ann"))
    await client.request("subscribe", channel="chat:room")
    await api(hub, "/api/unsubscribe", {"user": "ann", "channel": "chat:room"})
    assert (await client.push("unsubscribe"))["channel"] == "chat:room"
    presence = await client.request("presence", channel="chat:room")
    assert presence["clients"] == []
    await client.close()


@pytest.mark.parametrize(
    "path", ["/api/subscribe", "/api/unsubscribe"]
)
@pytest.mark.parametrize(
    "body, status, needle",
    [
        ({"channel": "news:x"}, 400, "exactly one of user or client"),
        ({"user": "a", "client": "b", "channel": "news:x"}, 400, "exactly one"),
        ({"user": 5, "channel": "news:x"}, 400, "must be strings"),
        ({"user": "a"}, 400, "channel"),
        ({"user": "a", "channel": "nowhere:x"}, 404, "nowhere:x"),
    ],
)
async def test_api_subscribe_refuses_bad_bodies(
    hub: Hub, path: str, body: dict[str, Any], status: int, needle: str
) -> None:
    response = await api(hub, path, body)
    assert response.status_code == status and needle in response.json()["error"]


async def test_api_subscribe_of_a_subscribed_channel_changes_nothing(hub: Hub) -> None:
    client = await Client.open(hub, token=token("ann"))
    await client.request("subscribe", channel="news:x")
    await api(hub, "/api/subscribe", {"user": "ann", "channel": "news:x"})
    await api(hub, "/api/subscribe", {"user": "ann", "channel": "news:y"})
    assert (await client.push("subscribe"))["channel"] == "news:y"  # not news:x
    await client.close()


# Recovery on reconnect.


async def _reconnect(hub: Hub, server_subs: dict[str, Any]) -> Client:
    return await Client.open(
        hub, token=token("ann", channels_subscribe=["news:feed"]), server_subs=server_subs
    )


async def test_reconnect_recovers_server_side_subscriptions(hub: Hub) -> None:
    client = await _reconnect(hub, {})
    sub = await client.push("subscribe")
    await hub.publish("news:feed", '"seen"')
    assert await client.pubs(1) == ["seen"]
    await client.close()
    for i in range(3):  # missed while away; news keeps 5
        await hub.publish("news:feed", json.dumps(f"missed {i}"))
    again = await _reconnect(hub, {"news:feed": {"epoch": sub["epoch"], "offset": 1}})
    push = await again.push("subscribe")
    assert push["recovered"] is True and push["epoch"] == sub["epoch"] and push["offset"] == 4
    assert [p["data"] for p in push["publications"]] == ["missed 0", "missed 1", "missed 2"]
    assert [p["offset"] for p in push["publications"]] == [2, 3, 4]
    await hub.publish("news:feed", '"live"')
    live = await again.push("pub")
    assert (live["offset"], live["data"]) == (5, "live")
    await again.close()


async def test_reconnect_outside_the_history_is_not_recovered(hub: Hub) -> None:
    client = await _reconnect(hub, {})
    sub = await client.push("subscribe")
    await client.close()
    for i in range(8):  # news keeps 5
        await hub.publish("news:feed", json.dumps(i))
    again = await _reconnect(hub, {"news:feed": {"epoch": sub["epoch"], "offset": 0}})
    push = await again.push("subscribe")
    assert push["recovered"] is False
    assert [p["data"] for p in push["publications"]] == [3, 4, 5, 6, 7]
    await again.close()


async def test_a_position_for_a_channel_not_granted_again_gets_an_unsubscribe(hub: Hub
                                                                            ) -> None:
    client = await _reconnect(hub, {"news:gone": {"epoch": "e", "offset": 3}})
    assert await client.push() == {"push": "subscribe", "channel": "news:feed",
                                   "epoch": (await client.request("history",
                                                                  channel="news:feed"))["epoch"],
                                   "offset": 0}
    assert await client.push() == {"push": "unsubscribe", "channel": "news:gone"}
    await client.close()


@pytest.mark.parametrize(
    "server_subs, needle",
    [([], "server_subs must be an object"), ({"news:a": 3}, "server_subs['news:a'] must be"),
     ({"news:a": None}, "must be a position"), ({"": {"epoch": "e", "offset": 1}}, "channel")],
)
async def test_bad_server_subs_are_400(hub: Hub, server_subs: Any, needle: str) -> None:
    client = await Client.open(hub, connect=False)
    with pytest.raises(ReplyError) as info:
        await client.request("connect", server_subs=server_subs)
    assert info.value.code == 400 and needle in info.value.message
    await client.close()


# Subscription tokens.


async def test_a_subscription_token_opens_one_private_channel(make_hub: MakeHub) -> None:
    hub = await make_hub(namespaces=WITH_SECRET)
    client = await Client.open(hub, token=token("ann"))
    with pytest.raises(ReplyError) as info:
        await client.request("subscribe", channel="secret:room")
    assert info.value.code == 403 and "subscription token" in info.value.message
    await client.request("subscribe", channel="secret:room",
                         token=subscribe_token("ann", "secret:room"))
    await hub.publish("secret:room", '"psst"')
    assert await client.pubs(1) == ["psst"]
    # Subscribed, it may read the channel's history and presence.
    history = await client.request("history", channel="secret:room")
    assert [p["data"] for p in history["publications"]] == ["psst"]
    assert len((await client.request("presence", channel="secret:room"))["clients"]) == 1
    # Anonymous clients too, with a token made for user "".
    anonymous = await Client.open(hub)
    await anonymous.request("subscribe", channel="secret:room",
                            token=subscribe_token("", "secret:room"))
    await client.close()
    await anonymous.close()


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda: subscribe_token("ann", "secret:other"), "isn't for channel secret:room"),
        (lambda: subscribe_token("bob", "secret:room"), "for another user"),
        (lambda: subscribe_token("ann", "secret:room", exp=int(time.time()) - 10),
         "subscription token expired"),
        (lambda: token("ann"), "isn't for channel"),
        (lambda: "garbage", "invalid subscription token"),
    ],
    ids=["channel", "user", "expired", "connection-token", "garbage"],
)
async def test_bad_subscription_tokens_are_401_and_the_connection_stays(
    make_hub: MakeHub, make: Any, needle: str
) -> None:
    hub = await make_hub(namespaces=WITH_SECRET)
    client = await Client.open(hub, token=token("ann"))
    with pytest.raises(ReplyError) as info:
        await client.request("subscribe", channel="secret:room", token=make())
    assert info.value.code == 401 and needle in info.value.message
    assert await client.request("ping") == {}
    await client.close()


async def test_a_subscription_token_cant_connect(hub: Hub) -> None:
    client = await Client.open(hub, connect=False)
    await client.send({"id": 1, "op": "connect", "token": subscribe_token("ann", "news:x")})
    reply = await client._read()
    assert reply["error"]["code"] == 401 and "can't connect" in reply["error"]["message"]
    assert (await client.closed())[0] == 4500


async def test_server_side_subscriptions_need_no_subscription_token(make_hub: MakeHub) -> None:
    hub = await make_hub(namespaces=WITH_SECRET)
    client = await Client.open(hub, token=token("ann", channels_subscribe=["secret:ann"]))
    assert (await client.push("subscribe"))["channel"] == "secret:ann"
    await client.close()


# Presence stats.


@pytest.fixture
async def crowd(hub: Hub) -> AsyncIterator[list[Client]]:
    clients = [await Client.open(hub, token=token(user)) for user in ("ann", "ann", "bob")]
    clients.append(await Client.open(hub))  # anonymous: a client, no user
    for client in clients:
        await client.request("subscribe", channel="chat:stats")
    yield clients
    for client in clients:
        await client.close()


async def test_presence_stats_op(hub: Hub, crowd: list[Client]) -> None:
    result = await crowd[0].request("presence_stats", channel="chat:stats")
    assert result == {"num_clients": 4, "num_users": 2}
    with pytest.raises(ReplyError) as info:
        await crowd[0].request("presence_stats", channel="news:x")  # presence off
    assert info.value.code == 403


async def test_presence_stats_api(hub: Hub, crowd: list[Client]) -> None:
    response = await api(hub, "/api/presence_stats", params={"channel": "chat:stats"})
    assert response.json() == {"channel": "chat:stats", "num_clients": 4, "num_users": 2}
    response = await api(hub, "/api/presence_stats", params={"channel": "nowhere:x"})
    assert response.status_code == 404
    response = await api(hub, "/api/presence_stats")
    assert response.status_code == 400
    await within(crowd[3].close())
