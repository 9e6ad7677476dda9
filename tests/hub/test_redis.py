"""Many hub nodes on one real redis-server: one channel namespace, one order,
recovery through any node, presence across nodes, and Redis going away."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from tidewire.hub import BrokerUnavailable, ClientInfo, Hub, Position, Publication, ToPublish
from tidewire.hub import redisbroker as redis_module
from tidewire.hub.redisbroker import RedisBroker

from ..conftest import timeout
from .conftest import config
from .helpers import API_KEY, Client, within
from .redis_server import NO_SYNC_DELAY, RedisServer, free_port, poll
from .tcp_proxy import Proxy

AUTH = {"Authorization": f"Bearer {API_KEY}"}

MakeNode = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def make_node(redis_url: str) -> AsyncIterator[MakeNode]:
    """Hub nodes sharing the session's redis-server (flushed for the test)."""
    async with AsyncExitStack() as stack:

        async def make(url: str = redis_url, **changes: Any) -> Hub:
            # Probes far apart unless a test is about them: on a loaded
            # machine a probe may take long to come back.
            changes.setdefault("probe_interval", 3.0)
            return await stack.enter_async_context(Hub(config(broker=url, **changes)))

        yield make


@pytest.fixture(params=[False], ids=["volatile"])
def own_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A redis-server of this test's own, which it may kill and restart."""
    server = RedisServer(tmp_path, persist=request.param)
    server.start()
    yield server
    if server.proc is not None:
        server.thaw()
    server.kill()


async def publish(hub: Hub, channel: str, data: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout(10)) as http:
        return await http.post(f"http://127.0.0.1:{hub.port}/api/publish", headers=AUTH,
                               json={"channel": channel, "data": data})


async def health(hub: Hub) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=timeout(10)) as http:
        response = await http.get(f"http://127.0.0.1:{hub.port}/healthz")
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body


async def named(client: Client, kind: str) -> dict[str, Any]:
    """The info of the next join or leave of a client with info (the
    watchers in these tests have none, and see their own join)."""
    while True:
        push = await client.push(kind)
        if "info" in push["client"]:
            info: dict[str, Any] = push["client"]["info"]
            return info


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    async def wait() -> None:
        while not await check():
            await asyncio.sleep(0.05)

    await within(wait(), seconds)


async def test_publish_on_one_node_reaches_subscribers_of_every_node_in_order(
    make_node: MakeNode,
) -> None:
    a, b, c = [await make_node() for _ in range(3)]
    subscribers = [await Client.open(node) for node in (b, b, c)]
    for client in subscribers:
        await client.request("subscribe", channel="chat:all")
    # Two nodes publish at once; every subscriber sees one order.
    responses = await asyncio.gather(
        *(publish(a if i % 2 else c, "chat:all", i) for i in range(50))
    )
    offsets = sorted(r.json()["offset"] for r in responses)
    assert offsets == list(range(1, 51))  # one counter for all nodes
    order = {r.json()["offset"]: r.json() for r in responses}
    assert len(order) == 50
    seen = [await client.pubs(50) for client in subscribers]  # checks offsets +1 each
    assert seen[0] == seen[1] == seen[2]  # the same order on every node
    assert sorted(seen[0]) == list(range(50))
    # Publishing through a client on yet another node joins the same stream.
    writer = await Client.open(a)
    pos = await writer.request("publish", channel="chat:all", data="from a")
    assert pos["offset"] == 51
    for client in subscribers:
        push = await client.push("pub")
        assert (push["offset"], push["data"]) == (51, "from a")
        await client.close()
    await writer.close()


async def test_recovery_through_another_node(make_node: MakeNode) -> None:
    a, b, c = [await make_node() for _ in range(3)]
    client = await Client.open(a)
    sub = await client.request("subscribe", channel="chat:room")
    for i in range(3):
        await publish(b, "chat:room", i)
    assert await client.pubs(3) == [0, 1, 2]
    await client.close()
    for i in range(3, 8):  # missed while away
        await publish(b, "chat:room", i)
    back = await Client.open(c)
    since = {"epoch": sub["epoch"], "offset": 3}
    result = await back.request("subscribe", channel="chat:room", since=since)
    assert result["recovered"] is True
    assert [p["data"] for p in result["publications"]] == [3, 4, 5, 6, 7]
    assert (result["epoch"], result["offset"]) == (sub["epoch"], 8)
    await publish(a, "chat:room", 8)
    assert await back.pubs(1) == [8]
    await back.close()


async def test_presence_and_join_leave_across_nodes(make_node: MakeNode) -> None:
    a, b, c = [await make_node() for _ in range(3)]
    watcher = await Client.open(c)
    await watcher.request("subscribe", channel="chat:p")
    ann = await Client.open(a, info={"name": "ann"})
    ben = await Client.open(b, info={"name": "ben"})
    await ann.request("subscribe", channel="chat:p")
    await ben.request("subscribe", channel="chat:p")
    joined = [(await named(watcher, "join"))["name"] for _ in range(2)]
    assert joined == ["ann", "ben"]
    result = await watcher.request("presence", channel="chat:p")
    assert sorted(c.get("info", {}).get("name", "") for c in result["clients"]) == [
        "", "ann", "ben"
    ]
    await ann.close()
    left = await watcher.push("leave")
    assert left["client"]["info"] == {"name": "ann"}
    result = await watcher.request("presence", channel="chat:p")
    assert len(result["clients"]) == 2
    async with httpx.AsyncClient(timeout=timeout(10)) as http:
        response = await http.get(f"http://127.0.0.1:{a.port}/api/channels", headers=AUTH)
    assert {"channel": "chat:p", "subscribers": 2} in response.json()["channels"]
    await ben.close()
    await watcher.close()


async def test_a_node_listens_only_to_channels_it_has_subscribers_for(
    make_node: MakeNode, redis_url: str
) -> None:
    a, b = await make_node(), await make_node()
    heard: list[str] = []
    original = a._on_event
    a.broker._sink = lambda channel, event: (heard.append(channel), original(channel, event))
    client = await Client.open(a)
    await client.request("subscribe", channel="chat:mine")
    other = await Client.open(b)
    await other.request("subscribe", channel="chat:theirs")
    await publish(b, "chat:theirs", 1)
    await publish(b, "chat:mine", 2)
    assert await client.pubs(1) == [2]
    assert await other.pubs(1) == [1]
    assert "chat:theirs" not in heard
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    counts = dict(conn.pubsub_numsub("tidewire:c:chat:mine", "tidewire:c:chat:theirs"))
    assert counts == {"tidewire:c:chat:mine": 1, "tidewire:c:chat:theirs": 1}
    await client.request("unsubscribe", channel="chat:mine")

    def gone() -> bool:
        return dict(conn.pubsub_numsub("tidewire:c:chat:mine"))["tidewire:c:chat:mine"] == 0

    await until(lambda: asyncio.sleep(0, gone()))
    conn.close()
    await client.close()
    await other.close()


async def test_history_bounds_and_recovery_in_redis(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    await broker.start(lambda channel, event: None)
    try:
        for i in range(5):
            await broker.publish("c", str(i), history_size=3, history_ttl=60)
        history = await broker.history("c")
        assert [p.data for p in history.publications] == ["2", "3", "4"]
        epoch = history.top.epoch
        assert [p.data for p in (await broker.history("c", limit=1)).publications] == ["4"]
        assert (await broker.history("c", limit=0)).publications == []
        ok = await broker.history("c", since=Position(epoch, 2))
        assert ok.complete and [p.offset for p in ok.publications] == [3, 4, 5]
        assert not (await broker.history("c", since=Position(epoch, 1))).complete
        assert not (await broker.history("c", since=Position("other", 4))).complete
        assert not (await broker.history("c", since=Position(epoch, 9))).complete
        sender = ClientInfo("id1", "ann", '{"name":"Ann é"}')
        await broker.publish("short", '{"x": 1}', sender=sender, history_size=5,
                             history_ttl=0.3)
        kept = (await broker.history("short")).publications
        assert [(p.data, p.sender) for p in kept] == [('{"x": 1}', sender)]
        await asyncio.sleep(0.5)
        assert (await broker.history("short")).publications == []
        # An empty channel's epoch is fixed by the first reader: a client that
        # subscribed before the first publication recovers it.
        first = await broker.history("new", limit=0)
        await broker.publish("new", "1", history_size=5, history_ttl=60)
        late = await broker.history("new", since=first.top)
        assert late.complete and [p.data for p in late.publications] == ["1"]
    finally:
        await broker.close()


async def test_a_promoted_replica_starts_new_epochs(tmp_path: Path) -> None:
    # Replication is asynchronous: what the old master accepted last may be
    # missing on the replica that takes over. Offsets given after the
    # promotion must not be mistaken for the lost ones.
    master = RedisServer(tmp_path / "master", extra=NO_SYNC_DELAY)
    replica = RedisServer(tmp_path / "replica",
                          extra=("--replicaof", "127.0.0.1", str(master.port)))
    try:
        await promote(master, replica)
    finally:
        master.kill()
        replica.kill()


async def promote(master: RedisServer, replica: RedisServer) -> None:
    master.start()
    replica.start()
    with redis.Redis(port=replica.port, decode_responses=True) as conn:
        poll(lambda: conn.info("replication")["master_link_status"] == "up", 20,
             "the replica didn't sync with its master within 20 s")
    old = RedisBroker(master.url)
    await old.start(lambda channel, event: None)
    try:
        for i in range(3):
            before = await old.publish("c", str(i), history_size=10, history_ttl=60)
        with redis.Redis(port=master.port) as conn:
            assert conn.wait(1, int(timeout(5) * 1000)) == 1  # the replica has them all
    finally:
        await old.close()
    master.kill()
    with redis.Redis(port=replica.port) as conn:
        conn.replicaof("NO", "ONE")
    new = RedisBroker(replica.url)
    await new.start(lambda channel, event: None)
    try:
        history = await new.history("c", since=before)
        assert history.top.epoch != before.epoch and not history.complete
        after = await new.publish("c", "new", history_size=10, history_ttl=60)
        assert (after.epoch, after.offset) == (history.top.epoch, 1)
        # From then on the epoch holds.
        assert (await new.publish("c", "more", history_size=10, history_ttl=60)).epoch == (
            after.epoch
        )
        kept = await new.history("c", since=after)
        assert kept.complete and [p.data for p in kept.publications] == ["more"]
    finally:
        await new.close()


async def test_presence_of_a_crashed_node_expires(
    make_node: MakeNode, redis_url: str, tmp_path: Path
) -> None:
    b = await make_node(presence_ttl=1.5)
    watcher = await Client.open(b)
    await watcher.request("subscribe", channel="chat:crash")
    port = free_port()
    conf = tmp_path / "hub.toml"
    conf.write_text(f'[hub]\nport = {port}\npresence_ttl = 1.5\nbroker = "{redis_url}"\n'
                    f'api_key = "{API_KEY}"\ndemo = false\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tidewire", "serve", "--config", str(conf),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = b""
        while b"listening" not in line:
            line = await within(proc.stdout.readline(), 20)
            assert line, "the node exited"
        node: Any = SimpleNamespace(port=port)
        doomed = await Client.open(node, info={"name": "doomed"})
        await doomed.request("subscribe", channel="chat:crash")
        assert await named(watcher, "join") == {"name": "doomed"}
        os.kill(proc.pid, signal.SIGKILL)  # no unsubscribe, no leave: a crash
        await proc.wait()
        started = asyncio.get_running_loop().time()
        left = await within(watcher.push("leave"), 10)
        waited = asyncio.get_running_loop().time() - started
        assert left["client"]["info"] == {"name": "doomed"}
        assert waited < 1.5 + 1.5 / 3 + 1  # the ttl, one renewal period, a margin
        result = await watcher.request("presence", channel="chat:crash")
        assert len(result["clients"]) == 1  # the watcher itself
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await watcher.close()


async def test_redis_down_then_back(own_redis: RedisServer, make_node: MakeNode,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_module, "BACKOFF_MAX", 0.5)
    a, b = await make_node(own_redis.url), await make_node(own_redis.url)
    subscriber = await Client.open(b)
    sub = await subscriber.request("subscribe", channel="chat:f")
    await publish(a, "chat:f", "before")
    assert await subscriber.pubs(1) == ["before"]

    own_redis.kill()
    await until(lambda: _degraded(a, b))
    response = await publish(a, "chat:f", "lost?")
    assert response.status_code == 503
    assert "redis" in response.json()["error"].lower()
    writer = await Client.open(a)
    with pytest.raises(Exception) as refused:
        await writer.request("publish", channel="chat:f", data="lost?")
    assert getattr(refused.value, "code", None) == 503
    for i in range(3):  # together, as one batch: each gets its 503, in order
        writer.ws.send_nowait(json.dumps({"id": f"b{i}", "op": "publish",
                                          "channel": "chat:f", "data": i}))
    for i in range(3):
        reply = await writer._read()
        assert reply["id"] == f"b{i}" and reply["error"]["code"] == 503
        assert "broker unavailable" in reply["error"]["message"]
    assert await subscriber.request("ping") == {}  # local connections stay open
    newcomer = await Client.open(b)
    with pytest.raises(Exception) as no_subscribe:
        await newcomer.request("subscribe", channel="chat:other")
    assert getattr(no_subscribe.value, "code", None) == 503

    own_redis.start()  # same port, but empty: a new epoch
    await until(lambda: _healthy(a, b))
    # The stream's continuity is lost (Redis forgot it): the subscriber is told
    # to reconnect, and recovering says so.
    assert (await subscriber.closed())[0] == 4003
    back = await Client.open(a)
    result = await back.request("subscribe", channel="chat:f", since={
        "epoch": sub["epoch"], "offset": 1})
    assert result["recovered"] is False and result["epoch"] != sub["epoch"]
    other = await Client.open(b)
    await other.request("subscribe", channel="chat:f")
    assert (await publish(b, "chat:f", "after")).status_code == 200
    assert await back.pubs(1) == ["after"]
    assert await other.pubs(1) == ["after"]
    for client in (back, other, writer, newcomer):
        await client.close()


@pytest.mark.parametrize("own_redis", [True], ids=["persistent"], indirect=True)
async def test_redis_that_keeps_its_data_comes_back_without_a_gap(
    own_redis: RedisServer, make_node: MakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_module, "BACKOFF_MAX", 0.5)
    a, b = await make_node(own_redis.url), await make_node(own_redis.url)
    staying = await Client.open(b)
    await staying.request("subscribe", channel="chat:kept")
    leaving = await Client.open(a)
    sub = await leaving.request("subscribe", channel="chat:kept")
    for i in range(3):
        await publish(a, "chat:kept", i)
    assert await leaving.pubs(3) == [0, 1, 2]
    assert await staying.pubs(3) == [0, 1, 2]
    await leaving.close()
    await publish(a, "chat:kept", 3)  # missed by the client that left

    own_redis.kill()
    await until(lambda: _degraded(a, b))
    assert (await publish(a, "chat:kept", "refused")).status_code == 503
    own_redis.start()
    await until(lambda: _healthy(a, b))

    # The same epoch: the subscriber that stayed goes on, nothing lost or doubled.
    assert (await publish(a, "chat:kept", 4)).status_code == 200
    assert await staying.pubs(2) == [3, 4]
    assert await staying.request("ping") == {}
    # The client that left recovers through the other node.
    back = await Client.open(b)
    result = await back.request("subscribe", channel="chat:kept",
                                since={"epoch": sub["epoch"], "offset": 3})
    assert result["recovered"] is True and result["epoch"] == sub["epoch"]
    assert [p["data"] for p in result["publications"]] == [3, 4]
    await back.close()
    await staying.close()


async def _degraded(*nodes: Hub) -> bool:
    states = [await health(node) for node in nodes]
    return all(s["status"] == "degraded" and s["broker_up"] is False for s in states)


async def _healthy(*nodes: Hub) -> bool:
    states = [await health(node) for node in nodes]
    return all(s["status"] == "ok" for s in states)


def drop_pubsub(url: str, node: Hub) -> None:
    """Have Redis cut ``node``'s pub/sub connection, as it does to a client
    over its output buffer limit."""
    assert isinstance(node.broker, RedisBroker)
    conn = redis.Redis.from_url(url, decode_responses=True)
    name = f"tidewire-{node.broker.node}-pubsub"
    ids = [c["id"] for c in conn.client_list() if c["name"] == name]
    assert len(ids) == 1, conn.client_list()
    conn.client_kill_filter(_id=ids[0])
    conn.close()


@pytest.mark.parametrize("published", [3, 8], ids=["filled", "too-many"])
async def test_a_lost_subscription_is_filled_from_history(
    make_node: MakeNode, redis_url: str, monkeypatch: pytest.MonkeyPatch, published: int
) -> None:
    monkeypatch.setattr(redis_module, "BACKOFF_FIRST", 1.0)  # b stays away 0.5-1.5 s
    a, b = await make_node(), await make_node()
    subscriber = await Client.open(b)
    sub = await subscriber.request("subscribe", channel="news:gap")  # history_size 5
    await publish(a, "news:gap", 0)
    assert await subscriber.pubs(1) == [0]
    drop_pubsub(redis_url, b)
    await until(lambda: asyncio.sleep(0, not b.broker.healthy))
    for i in range(1, published + 1):
        assert (await publish(a, "news:gap", i)).status_code == 200
    assert not b.broker.healthy  # all of them fell in b's gap
    await gap_filled_or_told(a, b, subscriber, sub, published)
    await subscriber.close()


async def gap_filled_or_told(a: Hub, b: Hub, subscriber: Client, sub: dict[str, Any],
                             published: int) -> None:
    """``published`` publications (1, 2, ...) fell in a gap of ``b``'s pub/sub
    (history_size 5): they reach ``subscriber`` or it is told to recover."""
    channel = sub["channel"]
    if published <= 5:
        # Filled from history: nothing lost, nothing doubled, no reconnect asked.
        assert await subscriber.pubs(published) == list(range(1, published + 1))
        await publish(a, channel, "next")
        assert await subscriber.pubs(1) == ["next"]
    else:
        # More than history holds: the subscriber is asked to reconnect, and
        # recovering says what it can't give back.
        assert (await subscriber.closed())[0] == 4003
        assert b.metrics.interrupted == 1
        back = await Client.open(b)
        result = await back.request("subscribe", channel=channel,
                                    since={"epoch": sub["epoch"], "offset": 1})
        assert result["recovered"] is False
        assert [p["data"] for p in result["publications"]] == [4, 5, 6, 7, 8]
        await back.close()


async def test_a_frozen_redis_makes_the_node_degraded(
    own_redis: RedisServer, make_node: MakeNode
) -> None:
    node = await make_node(own_redis.url, probe_interval=0.2)
    own_redis.freeze()
    await until(lambda: _degraded(node))
    response = await publish(node, "chat:x", 1)
    assert response.status_code == 503
    own_redis.thaw()
    await until(lambda: _healthy(node))
    assert (await publish(node, "chat:x", 1)).status_code == 200


async def broker_up(node: Hub) -> float:
    """The node's ``tidewire_hub_broker_up``, as /metrics shows it."""
    async with httpx.AsyncClient(timeout=timeout(10)) as http:
        text = (await http.get(f"http://127.0.0.1:{node.port}/metrics")).text
    for line in text.splitlines():
        if line.startswith("tidewire_hub_broker_up "):
            return float(line.split()[1])
    raise AssertionError("no tidewire_hub_broker_up in /metrics")


@pytest.mark.parametrize("published", [3, 8], ids=["filled", "too-many"])
async def test_a_pub_sub_connection_gone_silent_is_found_and_made_again(
    make_node: MakeNode, redis_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, published: int,
) -> None:
    # The node's connections to Redis stop carrying anything, but stay open:
    # no error, no EOF. Only the probe can tell.
    monkeypatch.setattr(redis_module, "BACKOFF_FIRST", 2.0)  # b stays away 1-3 s
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with Proxy(port) as proxy:
        a, b = await make_node(), await make_node(proxy.url, probe_interval=0.2)
        subscriber = await Client.open(b)
        sub = await subscriber.request("subscribe", channel="news:quiet")  # history_size 5
        await publish(a, "news:quiet", 0)
        assert await subscriber.pubs(1) == [0]
        assert await _healthy(b) and await broker_up(b) == 1.0
        proxy.silence()
        for i in range(1, published + 1):
            assert (await publish(a, "news:quiet", i)).status_code == 200
        await until(lambda: _degraded(b))
        assert await broker_up(b) == 0.0
        # Meanwhile Redis answers a PING by the same way: health is pub/sub
        # delivering, not Redis answering.
        async with redis.asyncio.Redis(port=proxy.port, socket_timeout=timeout(5)) as direct:
            assert await direct.ping()
        assert "stopped delivering on pub/sub" in caplog.text
        await until(lambda: _healthy(b))
        assert await broker_up(b) == 1.0
        # Subscribed again: the gap is filled from history, or the subscriber
        # is told to recover.
        await gap_filled_or_told(a, b, subscriber, sub, published)
        await subscriber.close()


async def test_a_stalled_event_loop_is_no_silent_pub_sub(
    make_node: MakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    # The node's own loop blocks for many probe intervals (a long callback, a
    # process swapped out): the probes that came back meanwhile weren't read,
    # which says nothing of Redis.
    node = await make_node(probe_interval=0.1)
    await until(lambda: _healthy(node))
    subscriber = await Client.open(node)
    await subscriber.request("subscribe", channel="news:stall")
    time.sleep(1.0)  # blocks the loop: 10 intervals
    # The probe loop wakes first, overdue; give it rounds to misjudge in.
    await asyncio.sleep(0.3)
    assert "stopped delivering" not in caplog.text
    assert await _healthy(node)
    assert (await publish(node, "news:stall", 1)).status_code == 200
    assert await subscriber.pubs(1) == [1]
    await subscriber.close()


async def test_a_node_starts_degraded_while_redis_is_down(make_node: MakeNode) -> None:
    node = await within(make_node(f"redis://127.0.0.1:{free_port()}/0"))
    assert await _degraded(node)
    response = await publish(node, "chat:x", 1)
    assert response.status_code == 503
    assert "unreachable" in response.json()["error"]
    assert "nothing was done" in response.json()["error"]


async def test_a_stopped_node_removes_its_clients_from_presence(make_node: MakeNode) -> None:
    a, b = await make_node(), await make_node()
    watcher = await Client.open(b)
    await watcher.request("subscribe", channel="chat:bye")
    leaving = await Client.open(a, info={"name": "leaving"})
    await leaving.request("subscribe", channel="chat:bye")
    assert await named(watcher, "join") == {"name": "leaving"}
    await a.close()  # as on SIGTERM
    assert await named(watcher, "leave") == {"name": "leaving"}
    result = await watcher.request("presence", channel="chat:bye")
    assert len(result["clients"]) == 1
    await watcher.close()


async def test_bad_redis_urls_are_config_errors() -> None:
    from tidewire.hub import ConfigError
    from tidewire.hub.app import make_broker

    with pytest.raises(ConfigError, match="unknown broker"):
        make_broker("postgres://x")
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        make_broker("redis://host:notaport/0")


def test_urls_in_logs_and_healthz_hide_the_password() -> None:
    broker = RedisBroker("redis://user:s3cret@127.0.0.1:1/0")
    assert broker.name == "redis://user:***@127.0.0.1:1/0"
    assert "s3cret" not in json.dumps(broker.name)


async def test_publications_carry_offsets_in_a_sink(redis_url: str) -> None:
    events: list[tuple[str, object]] = []
    broker = RedisBroker(redis_url)
    await broker.start(lambda channel, event: events.append((channel, event)))
    try:
        await broker.listen("c")
        await broker.publish("c", "1")
        await broker.publish("unheard", "x")
        await broker.publish("c", "2")
        await until(lambda: asyncio.sleep(0, len(events) == 2))
        await broker.unlisten("c")
        await broker.publish("c", "3")
        await asyncio.sleep(0.2)
        assert [(ch, e.offset) for ch, e in events if isinstance(e, Publication)] == [
            ("c", 1), ("c", 2)
        ]
    finally:
        await broker.close()


async def test_a_batch_of_publications_keeps_its_order_and_fails_one_by_one(
    redis_url: str,
) -> None:
    broker = RedisBroker(redis_url)
    await broker.start(lambda channel, event: None)
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    batch = [ToPublish("a", '"1"', None, 10, 60), ToPublish("b", '"x"', None, 10, 60),
             ToPublish("a", '"2"', None, 10, 60)]

    def offsets(results: list[Position | BrokerUnavailable]) -> list[int | str]:
        return [r.offset if isinstance(r, Position) else str(r) for r in results]

    try:
        assert offsets(await broker.publish_many(batch)) == [1, 1, 2]
        # Redis forgot the script: the batch is sent again once it is loaded.
        conn.script_flush()
        assert offsets(await broker.publish_many(batch)) == [3, 2, 4]
        # One publication Redis refuses (its history isn't a list) fails alone.
        conn.set("tidewire:h:b", "not a list")
        results = offsets(await broker.publish_many(batch))
        assert results[0::2] == [5, 6]
        assert "Redis refused to publish" in str(results[1])
        history = await broker.history("a")
        assert [(p.offset, p.data) for p in history.publications] == [
            (1, '"1"'), (2, '"2"'), (3, '"1"'), (4, '"2"'), (5, '"1"'), (6, '"2"')
        ]
    finally:
        conn.close()
        await broker.close()
    # Closed: every publication of the batch says the broker is unavailable.
    results = await broker.publish_many(batch)
    assert all(isinstance(r, BrokerUnavailable) for r in results)


async def test_renewal_does_not_bring_back_a_removed_client(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    await broker.start(lambda channel, event: None)
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ann = ClientInfo("id-ann", "ann")
        await broker.presence_add("c", ann, notify=False)
        assert await broker.presence("c") == [ann]
        # Removed in Redis between a renewal's snapshot and its write.
        conn.hdel("tidewire:p:c", "id-ann")
        await broker.heartbeat()
        assert await broker.presence("c") == []
        # After Redis lost its data, a node writes its clients back.
        await broker.heartbeat(restore=True)
        assert await broker.presence("c") == [ann]
    finally:
        conn.close()
        await broker.close()


async def test_adding_a_client_to_presence_reads_none_of_it_back(redis_url: str) -> None:
    """A crowd subscribing to one channel costs each subscriber the same, not a
    copy of everyone present before it (the soak's 1,000 subscribers took
    four times longer to subscribe when every add read presence back)."""
    broker = RedisBroker(redis_url)
    await broker.start(lambda channel, event: None)
    conn = redis.Redis.from_url(redis_url)

    def sent() -> int:
        return int(conn.info("stats")["total_net_output_bytes"])

    try:
        for i in range(300):
            await broker.presence_add("c", ClientInfo(f"id-{i}", f"user-{i}"), notify=False)
        first, second = sent(), sent()
        await broker.presence_add("c", ClientInfo("id-last", "user-last"), notify=False)
        info_reply = second - first
        # Reading back 300 entries would be about 12 KB.
        assert sent() - second - info_reply < 1000
        assert len(await broker.presence("c")) == 301
    finally:
        conn.close()
        await broker.close()


def test_tidewire_serve_on_redis(redis_url: str) -> None:
    from ..test_cli import run, start_serve, stop_serve

    serving = start_serve("--broker", redis_url)
    try:
        assert f"broker: {redis_url}" in serving.out[1]
        response = httpx.get(f"http://127.0.0.1:{serving.port}/healthz", timeout=timeout(5))
        assert response.json()["status"] == "ok"
        assert response.json()["broker"] == redis_url
    finally:
        stop_serve(serving)
    result = run("serve", "--broker", "redis://127.0.0.1:notaport/0")
    assert result.returncode == 2
    assert result.stderr.startswith("error: broker: invalid Redis URL"), result.stderr
    assert "Traceback" not in result.stderr
