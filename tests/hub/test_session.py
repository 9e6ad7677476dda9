"""The client protocol on /ws, as docs/protocol.md states it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jwt
import pytest

from tidewire.hub import ClientInfo, Hub, MemoryBroker

from .conftest import MakeHub, config
from .helpers import API_KEY, SECRET, Client, ReplyError, expiring, token, within


async def test_connect_reply_names_client_user_and_heartbeat(hub: Hub) -> None:
    client = await Client.open(hub, token=token("alice"))
    result = client.connected
    assert result["user"] == "alice"
    assert isinstance(result["client"], str) and result["client"]
    assert result["version"] == hub.version
    assert result["heartbeat"] == hub.config.heartbeat
    await client.close()


async def test_requests_before_connect_get_401_and_connection_stays(hub: Hub) -> None:
    client = await Client.open(hub, connect=False)
    with pytest.raises(ReplyError) as info:
        await client.request("subscribe", channel="news:x")
    assert info.value.code == 401 and "connect first" in info.value.message
    await client.request("connect")
    await client.request("subscribe", channel="news:x")
    await client.close()


async def test_second_connect_is_a_conflict(hub: Hub) -> None:
    client = await Client.open(hub)
    with pytest.raises(ReplyError) as info:
        await client.request("connect")
    assert info.value.code == 409
    await client.close()


@pytest.mark.parametrize(
    "message, needle",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"id": 1}', "missing op"),
        ('{"id": 1, "op": "dance"}', "unknown op"),
        ('{"id": [1], "op": "ping"}', "id must be"),
        ('{"id": 1, "op": "subscribe"}', "channel must be"),
        ('{"id": 1, "op": "subscribe", "channel": ""}', "channel must be"),
        ('{"id": 1, "op": "subscribe", "channel": "' + "x" * 300 + '"}', "at most 255"),
        ('{"id": 1, "op": "subscribe", "channel": "a\\u0000b"}', "control characters"),
        ('{"id": 1, "op": "subscribe", "channel": "news:a", "since": 3}', "since must be"),
        ('{"id": 1, "op": "publish", "channel": "chat:a"}', "needs data"),
        ('{"op": "publish", "channel": "chat:a", "data": NaN}', "NaN isn't JSON"),
        ('{"id": 1, "op": "history", "channel": "chat:a", "limit": -1}', "limit must be"),
    ],
)
async def test_malformed_requests_get_400_and_the_connection_goes_on(
    hub: Hub, message: str, needle: str
) -> None:
    client = await Client.open(hub)
    await client.send(message)
    reply = await client._read()
    assert reply["error"]["code"] == 400, reply
    assert needle in reply["error"]["message"], reply
    assert reply["id"] == (None if '"id": 1' not in message else 1)
    assert await client.request("ping") == {}
    await client.close()


async def test_binary_frames_get_an_error_reply(hub: Hub) -> None:
    client = await Client.open(hub)
    await client.send(b'{"op": "ping"}')
    reply = await client._read()
    assert reply["error"]["code"] == 400 and "text frames" in reply["error"]["message"]
    assert await client.request("ping") == {}
    await client.close()


async def test_request_without_id_gets_a_reply_with_null_id(hub: Hub) -> None:
    client = await Client.open(hub)
    await client.send({"op": "ping"})
    assert await client._read() == {"id": None, "result": {}}
    await client.close()


async def test_replies_come_in_the_order_of_requests(hub: Hub) -> None:
    client = await Client.open(hub)
    for i in range(20):
        await client.send({"id": f"r{i}", "op": "ping" if i % 2 else "nope"})
    ids = [(await client._read())["id"] for _ in range(20)]
    assert ids == [f"r{i}" for i in range(20)]
    await client.close()


async def test_publishes_sent_together_go_to_the_broker_together_replies_in_order(
    hub: Hub,
) -> None:
    """A backend's publishes that arrive together reach the broker as one batch
    (one round trip on Redis); the replies keep the order of the requests, an
    error and another request between them included."""
    subscriber = await Client.open(hub)
    await subscriber.request("subscribe", channel="chat:batch")
    backend = await Client.open(hub, api_key=API_KEY)
    batches: list[int] = []
    publish_many = hub.broker.publish_many

    async def counted(batch: Any) -> Any:
        batches.append(len(batch))
        return await publish_many(batch)

    hub.broker.publish_many = counted  # type: ignore[method-assign]
    requests: list[dict[str, Any]] = [
        {"id": i, "op": "publish", "channel": "chat:batch", "data": i} for i in range(12)
    ]
    requests[4] = {"id": 4, "op": "publish", "channel": "nowhere:x", "data": 4}
    requests[7] = {"id": 7, "op": "ping"}
    for request in requests:  # in one turn of the loop: the hub reads them together
        backend.ws.send_nowait(json.dumps(request))
    replies = [await backend._read() for _ in requests]
    assert [r["id"] for r in replies] == list(range(12))
    assert replies[4]["error"]["code"] == 404
    assert replies[7]["result"] == {}
    published = [i for i in range(12) if i not in (4, 7)]
    assert [replies[i]["result"]["offset"] for i in published] == list(range(1, 11))
    assert await subscriber.pubs(10) == published
    assert max(batches) > 1 and sum(batches) == 10
    await backend.close()
    await subscriber.close()


# Subscriptions and publications.


async def test_publication_reaches_every_subscriber_in_order(hub: Hub) -> None:
    clients = [await Client.open(hub) for _ in range(3)]
    for c in clients:
        result = await c.request("subscribe", channel="chat:room")
        assert result["channel"] == "chat:room" and result["offset"] == 0
        assert isinstance(result["epoch"], str)
    for i in range(10):
        await clients[0].request("publish", channel="chat:room", data={"n": i})
    for c in clients:
        assert await c.pubs(10) == [{"n": i} for i in range(10)]
        await c.close()


async def test_publish_reply_gives_the_position(hub: Hub) -> None:
    client = await Client.open(hub)
    sub = await client.request("subscribe", channel="chat:pos")
    first = await client.request("publish", channel="chat:pos", data="a")
    second = await client.request("publish", channel="chat:pos", data="b")
    assert first == {"epoch": sub["epoch"], "offset": 1}
    assert second == {"epoch": sub["epoch"], "offset": 2}
    push = await client.push("pub")
    assert push["channel"] == "chat:pos" and push["offset"] == 1 and push["data"] == "a"
    await client.close()


async def test_publication_from_a_client_says_who_sent_it(hub: Hub) -> None:
    sender = await Client.open(hub, token=token("bob"), info={"name": "Bob"})
    reader = await Client.open(hub)
    await reader.request("subscribe", channel="chat:from")
    await sender.request("publish", channel="chat:from", data={"text": "hi"})
    push = await reader.push("pub")
    assert push["from"] == {
        "client": sender.connected["client"], "user": "bob", "info": {"name": "Bob"}
    }
    await sender.close()
    await reader.close()


async def test_backend_publications_carry_no_sender(hub: Hub) -> None:
    backend = await Client.open(hub, api_key=API_KEY)
    reader = await Client.open(hub)
    await reader.request("subscribe", channel="news:x")
    await backend.request("publish", channel="news:x", data=1)
    push = await reader.push("pub")
    assert "from" not in push and push["data"] == 1
    await backend.close()
    await reader.close()


async def test_unsubscribed_client_gets_no_more_publications(hub: Hub) -> None:
    client = await Client.open(hub)
    await client.request("subscribe", channel="chat:u")
    await client.request("unsubscribe", channel="chat:u")
    await client.request("unsubscribe", channel="chat:u")  # again: not an error
    await client.request("subscribe", channel="chat:v")
    await hub.publish("chat:u", '"gone"')
    await hub.publish("chat:v", '"here"')
    assert (await client.push("pub"))["channel"] == "chat:v"
    await client.close()


async def test_double_subscribe_is_a_conflict(hub: Hub) -> None:
    client = await Client.open(hub)
    await client.request("subscribe", channel="chat:d")
    with pytest.raises(ReplyError) as info:
        await client.request("subscribe", channel="chat:d")
    assert info.value.code == 409
    await client.close()


async def test_subscriptions_per_connection_are_limited(make_hub: MakeHub) -> None:
    hub = await make_hub(max_subscriptions=3)
    client = await Client.open(hub)
    for i in range(3):
        await client.request("subscribe", channel=f"chat:{i}")
    with pytest.raises(ReplyError) as info:
        await client.request("subscribe", channel="chat:3")
    assert info.value.code == 429
    await client.request("unsubscribe", channel="chat:0")
    await client.request("subscribe", channel="chat:3")
    await client.close()


async def test_unknown_namespace_is_404(hub: Hub) -> None:
    client = await Client.open(hub)
    for op, fields in [("subscribe", {}), ("publish", {"data": 1}), ("history", {})]:
        with pytest.raises(ReplyError) as info:
            await client.request(op, channel="nowhere:x", **fields)
        assert info.value.code == 404, op
    await client.close()


# Permissions.


async def test_anonymous_clients_only_where_the_namespace_allows(hub: Hub) -> None:
    anonymous = await Client.open(hub)
    with pytest.raises(ReplyError) as info:
        await anonymous.request("subscribe", channel="private:x")
    assert info.value.code == 403 and "anonymous" in info.value.message
    user = await Client.open(hub, token=token("carol"))
    await user.request("subscribe", channel="private:x")
    await anonymous.close()
    await user.close()


async def test_clients_publish_only_where_the_namespace_allows(hub: Hub) -> None:
    client = await Client.open(hub, token=token("dave"))
    with pytest.raises(ReplyError) as info:
        await client.request("publish", channel="news:x", data=1)
    assert info.value.code == 403
    backend = await Client.open(hub, api_key=API_KEY)
    await backend.request("publish", channel="news:x", data=1)
    await client.close()
    await backend.close()


async def test_token_channels_claim_limits_subscriptions(hub: Hub) -> None:
    client = await Client.open(hub, token=token("erin", channels=["private:erin", "chat:*"]))
    await client.request("subscribe", channel="private:erin")
    await client.request("subscribe", channel="chat:anything")
    with pytest.raises(ReplyError) as info:
        await client.request("subscribe", channel="private:frank")
    assert info.value.code == 403 and "token" in info.value.message
    await client.close()


async def test_token_info_shows_in_presence(hub: Hub) -> None:
    client = await Client.open(hub, token=token("gail", info={"name": "Gail"}), info={"x": 1})
    result = await client.request("subscribe", channel="chat:p", presence=True)
    assert result["presence"] == [
        {"client": client.connected["client"], "user": "gail", "info": {"name": "Gail"}}
    ]
    await client.close()


@pytest.mark.parametrize(
    "bad, needle",
    [
        (lambda: token("x", exp=expiring(-10)), "expired"),
        (lambda: "not.a.jwt", "invalid token"),
        (lambda: jwt.encode({"sub": "x"}, "another-secret-" + "x" * 32, algorithm="HS256"),
         "invalid token"),
        (lambda: jwt.encode({"name": "x"}, SECRET, algorithm="HS256"), "invalid token"),
        # A message of 120 characters but over 123 bytes: the close reason is cut by bytes.
        (lambda: token("x", channels_subscribe=["nowhere:" + "\u00e9" * 100]), "no namespace"),
    ],
    ids=["expired", "garbage", "wrong-secret", "no-sub", "long-non-ascii-message"],
)
async def test_bad_token_gets_401_then_close_4500(hub: Hub, bad: object, needle: str) -> None:
    client = await Client.open(hub, connect=False)
    await client.send({"id": 1, "op": "connect", "token": bad()})  # type: ignore[operator]
    reply = await client._read()
    assert reply["error"]["code"] == 401 and needle in reply["error"]["message"]
    code, reason = await client.closed()
    assert code == 4500 and reason and reply["error"]["message"].startswith(reason)


async def test_wrong_api_key_gets_401_then_close_4500(hub: Hub) -> None:
    client = await Client.open(hub, connect=False)
    await client.send({"id": 1, "op": "connect", "api_key": "guess"})
    assert (await client._read())["error"]["code"] == 401
    assert (await client.closed())[0] == 4500


async def test_hub_without_secret_refuses_tokens(make_hub: MakeHub) -> None:
    hub = await make_hub(token_secret=None)
    client = await Client.open(hub, connect=False)
    await client.send({"id": 1, "op": "connect", "token": token()})
    reply = await client._read()
    assert reply["error"]["code"] == 401 and "no token secret" in reply["error"]["message"]


async def test_connection_closes_with_4001_when_its_token_expires(hub: Hub) -> None:
    exp = expiring(2)  # 1 to 2 s from now
    client = await Client.open(hub, token=token("hal", exp=exp))
    assert client.connected["expires"] == exp
    code, reason = await client.closed()
    assert (code, reason) == (4001, "token expired")


async def test_connection_without_connect_closes_with_4002(make_hub: MakeHub) -> None:
    hub = await make_hub(connect_timeout=0.2)
    client = await Client.open(hub, connect=False)
    code, reason = await client.closed()
    assert code == 4002 and reason is not None and "connect" in reason


async def test_info_over_1_kib_is_refused(hub: Hub) -> None:
    client = await Client.open(hub, connect=False)
    with pytest.raises(ReplyError) as info:
        await client.request("connect", info={"blob": "x" * 2000})
    assert info.value.code == 400 and "1024" in info.value.message
    await client.close()


# Presence.


async def test_presence_lists_subscribers_and_pushes_join_and_leave(hub: Hub) -> None:
    first = await Client.open(hub, token=token("ann"))
    await first.request("subscribe", channel="chat:lobby")
    assert (await first.push("join"))["client"]["user"] == "ann"  # its own join
    second = await Client.open(hub, token=token("ben"))
    await second.request("subscribe", channel="chat:lobby")
    join = await first.push("join")
    assert join["channel"] == "chat:lobby" and join["client"]["user"] == "ben"
    users = {c["user"] for c in (await first.request("presence", channel="chat:lobby"))["clients"]}
    assert users == {"ann", "ben"}
    await second.close()
    leave = await first.push("leave")
    assert leave["client"]["user"] == "ben"
    clients = (await first.request("presence", channel="chat:lobby"))["clients"]
    assert [c["user"] for c in clients] == ["ann"]
    await first.close()


async def test_presence_is_refused_where_the_namespace_has_it_off(hub: Hub) -> None:
    client = await Client.open(hub)
    with pytest.raises(ReplyError) as info:
        await client.request("presence", channel="news:x")
    assert info.value.code == 403
    await client.close()


# History and recovery.


async def test_history_returns_the_latest_oldest_first(hub: Hub) -> None:
    for i in range(8):
        await hub.publish("news:h", json.dumps(i))
    client = await Client.open(hub)
    result = await client.request("history", channel="news:h")
    assert [p["data"] for p in result["publications"]] == [3, 4, 5, 6, 7]  # history_size 5
    assert result["offset"] == 8
    result = await client.request("history", channel="news:h", limit=2)
    assert [p["offset"] for p in result["publications"]] == [7, 8]
    await client.close()


async def test_subscribe_since_recovers_missed_publications(hub: Hub) -> None:
    client = await Client.open(hub)
    sub = await client.request("subscribe", channel="chat:r")
    await hub.publish("chat:r", '"seen"')
    assert await client.pubs(1) == ["seen"]
    await client.close()
    for i in range(3):
        await hub.publish("chat:r", json.dumps(f"missed {i}"))
    again = await Client.open(hub)
    result = await again.request(
        "subscribe", channel="chat:r", since={"epoch": sub["epoch"], "offset": 1}
    )
    assert result["recovered"] is True
    assert [p["offset"] for p in result["publications"]] == [2, 3, 4]
    assert [p["data"] for p in result["publications"]] == ["missed 0", "missed 1", "missed 2"]
    await hub.publish("chat:r", '"live"')
    push = await again.push("pub")
    assert push["offset"] == 5 and push["data"] == "live"
    await again.close()


async def test_recovery_from_a_position_older_than_history_is_not_recovered(hub: Hub) -> None:
    client = await Client.open(hub)
    sub = await client.request("subscribe", channel="news:old")
    await client.close()
    for i in range(8):  # history keeps 5
        await hub.publish("news:old", json.dumps(i))
    again = await Client.open(hub)
    result = await again.request(
        "subscribe", channel="news:old", since={"epoch": sub["epoch"], "offset": 0}
    )
    assert result["recovered"] is False
    assert [p["data"] for p in result["publications"]] == [3, 4, 5, 6, 7]
    await again.close()


async def test_recovery_in_another_epoch_is_not_recovered(hub: Hub) -> None:
    await hub.publish("news:e", '"new epoch"')
    client = await Client.open(hub)
    result = await client.request(
        "subscribe", channel="news:e", since={"epoch": "gone", "offset": 40}
    )
    assert result["recovered"] is False
    assert [p["data"] for p in result["publications"]] == ["new epoch"]
    await client.close()


async def test_recovery_with_nothing_missed_is_recovered(hub: Hub) -> None:
    client = await Client.open(hub)
    sub = await client.request("subscribe", channel="news:n")
    result = await client.request(
        "history", channel="news:n", since={"epoch": sub["epoch"], "offset": 0}
    )
    assert result["recovered"] is True and result["publications"] == []
    await client.close()


async def test_publications_during_a_subscribe_are_neither_lost_nor_doubled(hub: Hub) -> None:
    """Publish while subscribers join with recovery: each sees every offset once."""
    publisher = await Client.open(hub, api_key=API_KEY)
    await publisher.request("publish", channel="chat:race", data=0)
    first = await Client.open(hub)
    epoch = (await first.request("subscribe", channel="chat:race"))["epoch"]
    joiners = [await Client.open(hub) for _ in range(5)]
    for i, joiner in enumerate(joiners):
        await joiner.send({"id": "s", "op": "subscribe", "channel": "chat:race",
                           "since": {"epoch": epoch, "offset": 1}})
        await publisher.send({"id": i, "op": "publish", "channel": "chat:race", "data": i + 1})
    for i in range(len(joiners)):
        await publisher.reply(i)
    total = len(joiners) + 1  # offsets 2..6 after the first
    for joiner in joiners:
        reply = await joiner.reply("s")
        offsets = [p["offset"] for p in reply["result"]["publications"]]
        while len(offsets) < total - 1:
            offsets.append((await joiner.push("pub"))["offset"])
        assert offsets == list(range(2, total + 1)), offsets
        await joiner.close()
    await first.close()
    await publisher.close()


async def test_ping_answers_empty_result(hub: Hub) -> None:
    client = await Client.open(hub)
    assert await within(client.request("ping")) == {}
    await client.close()


async def test_hub_refuses_websockets_from_other_origins(make_hub: MakeHub) -> None:
    import tidewire

    hub = await make_hub(origins=("http://good.example",))
    url = f"ws://127.0.0.1:{hub.port}/ws"
    with pytest.raises(tidewire.InvalidStatus) as info:
        await within(tidewire.connect(url, origin="http://evil.example"))
    assert info.value.response.status == 403
    ws = await within(tidewire.connect(url, origin="http://good.example"))
    await ws.close()


class SlowToForget(MemoryBroker):
    """A memory broker whose presence removal takes a while, as a remote one can."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self.removed: list[tuple[str, bool]] = []  # (client, was the broker closed?)

    async def presence_remove(self, channel: str, client: ClientInfo, *, notify: bool) -> None:
        await asyncio.sleep(0.05)
        await super().presence_remove(channel, client, notify=notify)
        self.removed.append((client.client, self.closed))

    async def close(self) -> None:
        self.closed = True
        await super().close()


async def test_hub_close_waits_for_sessions_to_leave_before_closing_the_broker() -> None:
    # The client leaves, and the hub closes while its session is still
    # taking it out of presence: that must finish on an open broker.
    broker = SlowToForget()
    hub = Hub(config(), broker=broker)
    await hub.start()
    try:
        client = await Client.open(hub)
        await client.request("subscribe", channel="chat:bye")
        await client.close()
    finally:
        await within(hub.close())
    assert broker.removed == [(client.connected["client"], False)]
