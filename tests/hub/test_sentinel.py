"""The Redis broker behind Redis Sentinel: real ``redis-server`` master and
replica, three real ``redis-sentinel``; the master is killed mid-stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

import tidewire
from tidewire.hub import ConfigError, Hub
from tidewire.hub.app import make_broker
from tidewire.hub.redisbroker import RedisBroker
from tidewire.hub.redisurl import SentinelTarget, parse_sentinel_url

from ..conftest import timeout
from .conftest import config
from .helpers import API_KEY, Client, ReplyError, within
from .redis_server import SentinelGroup, free_port, poll
from .test_redis import health

AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = SentinelGroup(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.stop()


# URLs.


def test_sentinel_urls_name_the_sentinels_the_service_and_the_db() -> None:
    assert parse_sentinel_url("redis+sentinel://10.0.0.1:26380,h2,[::1]:5/mymaster/3") == (
        SentinelTarget((("10.0.0.1", 26380), ("h2", 26379), ("::1", 5)), "mymaster", 3)
    )
    target = parse_sentinel_url("redis+sentinel://:p%40ss@h:1/main")
    assert (target.password, target.username, target.db) == ("p@ss", None, 0)
    target = parse_sentinel_url("redis+sentinel://ann:pw@h:1/main/0")
    assert (target.username, target.password) == ("ann", "pw")


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://h:1", "no service name"),
    ("redis+sentinel://h:1/", "no service name"),
    ("redis+sentinel://h:1/main/x", "db a number"),
    ("redis+sentinel://h:1/main/0/more", "/<service>/<db>"),
    ("redis+sentinel://h:1,,h:2/main", "empty host"),
    ("redis+sentinel://h:99999/main", "port must be 1-65535"),
    ("redis+sentinel://h:port/main", "port must be 1-65535"),
    ("redis+sentinel://:26379/main", "no host"),
    ("redis+sentinel://h:1/main?db=2", "no ?query"),
    ("redis+sentinel:h:1/main", "starts with redis+sentinel://"),
])
def test_bad_sentinel_urls_are_config_errors_that_say_why(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match="invalid Sentinel URL") as error:
        make_broker(url)
    assert says in str(error.value)


def test_a_sentinel_url_hides_its_password() -> None:
    with pytest.raises(ConfigError) as error:
        make_broker("redis+sentinel://:s3cret@h:1")
    assert "s3cret" not in str(error.value)
    broker = RedisBroker("redis+sentinel://:s3cret@h:1,h:2/main/0")
    assert broker.name == "redis+sentinel://***@h:1,h:2/main/0"


def test_tidewire_serve_refuses_a_bad_sentinel_url() -> None:
    from ..test_cli import run

    result = run("serve", "--broker", "redis+sentinel://127.0.0.1:1/")
    assert result.returncode == 2
    assert result.stderr.startswith("error: broker: invalid Sentinel URL"), result.stderr
    assert "no service name" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_node_starts_degraded_while_no_sentinel_answers() -> None:
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/main/0"
    async with Hub(config(broker=url)) as node:
        assert (await health(node))["broker_up"] is False
        async with httpx.AsyncClient(timeout=timeout(10)) as http:
            response = await http.post(f"http://127.0.0.1:{node.port}/api/publish",
                                       headers=AUTH, json={"channel": "chat:x", "data": 1})
        assert response.status_code == 503
        assert "unreachable" in response.json()["error"]


# The failover.


@dataclass
class Sent:
    number: int
    sent: float  # time.monotonic()
    done: float
    status: int | None  # None: no answer in time
    body: Any = None


@dataclass
class Followed:
    """What one subscriber saw."""

    data: list[Any] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    recovered: list[bool] = field(default_factory=list)


async def follow(node: Hub, client: Client, first: dict[str, Any]) -> Followed:
    """Read the stream of chat:stream until "end"; on 4003, reconnect and
    recover ``since`` the last position, as tidewire.js does."""
    seen = Followed()
    epoch, offset = first["epoch"], first["offset"]
    while True:
        try:
            message = json_of(await within(client.ws.recv(), 30))
        except tidewire.ConnectionClosed:
            await within(client.ws.wait_closed())
            seen.closes.append(client.ws.close_code)
            client, result = await resubscribe(node, {"epoch": epoch, "offset": offset})
            seen.recovered.append(result["recovered"])
            seen.data += [p["data"] for p in result["publications"]]
            epoch, offset = result["epoch"], result["offset"]
            if "end" in seen.data:
                break
            continue
        if message.get("push") != "pub":
            continue
        assert message["offset"] == offset + 1, (message, offset)  # in order, no gap
        offset = message["offset"]
        seen.data.append(message["data"])
        if message["data"] == "end":
            break
    await client.close()
    return seen


def json_of(text: str | bytes) -> dict[str, Any]:
    import json

    value: dict[str, Any] = json.loads(text)
    return value


async def resubscribe(node: Hub, since: dict[str, Any]) -> tuple[Client, dict[str, Any]]:
    """Reconnect and subscribe ``since``, again while the node answers 503."""
    deadline = asyncio.get_running_loop().time() + timeout(30)
    while True:
        client = await Client.open(node)
        try:
            return client, await client.request("subscribe", channel="chat:stream", since=since)
        except ReplyError as exc:
            await client.close()
            if exc.code != 503 or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


def fall_behind(sentinels: SentinelGroup) -> None:
    """Make the next publications miss the replica, as a slow replica or
    network would: freeze it, and fill the sockets between it and the master
    so that what follows waits in the master's own memory."""
    sentinels.replica.freeze()
    with redis.Redis(port=sentinels.master.port) as conn:
        conn.set("filler", b"x" * (32 << 20))


def replica_offset(sentinels: SentinelGroup) -> int:
    """Once the master is dead: thaw the replica, wait until it has read
    everything it will get, and say how many publications it has."""
    sentinels.replica.thaw()
    with redis.Redis(port=sentinels.replica.port, decode_responses=True) as conn:
        poll(lambda: conn.info("replication")["master_link_status"] == "down", 10,
             "the replica didn't see its master die")
        return int(conn.hget("tidewire:m:chat:stream", "offset") or 0)


async def switched(sentinels: SentinelGroup) -> AsyncIterator[float]:
    """The time of the next +switch-master a sentinel announces."""
    conn = redis.asyncio.Redis(port=sentinels.sentinels[0].port, decode_responses=True)
    async with conn, conn.pubsub() as pubsub:
        await pubsub.subscribe("+switch-master")
        yield 0.0  # subscribed
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None:
                yield time.monotonic()
                return


@pytest.mark.parametrize("behind", [False, True], ids=["in-sync", "replica-behind"])
async def test_the_hub_follows_a_failover(sentinels: SentinelGroup, behind: bool) -> None:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(Hub(config(broker=sentinels.url)))
        b = await stack.enter_async_context(Hub(config(broker=sentinels.url)))
        followers = []
        for node in (a, b):
            client = await Client.open(node)
            first = await client.request("subscribe", channel="chat:stream")
            followers.append(asyncio.ensure_future(follow(node, client, first)))
        watch = switched(sentinels)
        await anext(watch)
        switch = asyncio.ensure_future(anext(watch))

        sent: list[Sent] = []
        killed_at = 0.0
        replica_has = 0
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=timeout(10)))

        async def publish(data: Any) -> Sent:
            start = time.monotonic()
            try:
                response = await http.post(f"http://127.0.0.1:{a.port}/api/publish",
                                           headers=AUTH,
                                           json={"channel": "chat:stream", "data": data})
            except httpx.TimeoutException:
                return Sent(-1, start, time.monotonic(), None)
            return Sent(data if isinstance(data, int) else -1, start, time.monotonic(),
                        response.status_code, response.json())

        # A numbered stream; the master dies after 50 acknowledged, and the
        # stream goes on until 20 more are acknowledged after the kill.
        number = 0
        while sum(1 for s in sent if s.status == 200 and s.sent > killed_at > 0) < 20:
            sent.append(await publish(number))
            number += 1
            acked = sum(1 for s in sent if s.status == 200)
            if behind and acked == 40 and not killed_at:
                fall_behind(sentinels)
            if not killed_at and acked == 50:
                sentinels.master.kill()
                killed_at = time.monotonic()
                replica_has = replica_offset(sentinels)
            assert time.monotonic() - (killed_at or time.monotonic()) < timeout(60), (
                "the hub didn't serve publishes again within 60 s of the failover"
            )
        assert (await publish("end")).status == 200
        switched_at = await within(switch, 10)
        seen = await within(asyncio.gather(*followers), 30)
        await watch.aclose()

    # Every publish got an answer: accepted, or refused with 503.
    assert all(s.status in (200, 503) for s in sent), [s for s in sent if s.status != 200]
    refused = [s for s in sent if s.status == 503]
    assert refused, "no publish was refused during the failover"
    assert all("broker unavailable" in s.body["error"] for s in refused)
    accepted = [s for s in sent if s.status == 200]
    before = {s.number for s in accepted if s.done < killed_at}
    after = {s.number for s in accepted if s.sent > killed_at}
    for followed in seen:
        missing = before - set(followed.data)
        # Delivered, or reported lost: recovered false after a 4003.
        assert not missing or False in followed.recovered, (missing, followed)
        assert followed.closes == [4003] * len(followed.closes)
        # What the new master accepted reaches everyone.
        assert after <= set(followed.data)

    back = min(s.done for s in accepted if s.sent > killed_at)
    lost = [len(before - set(f.data)) for f in seen]
    if behind:
        assert replica_has < 50  # the tail really was lost with the master
    print(
        f"\nfailover ({'replica behind' if behind else 'in sync'}): the replica had "
        f"{replica_has} of {len(before)} acknowledged; "
        f"down-after {sentinels.down_after_ms} ms; switch-master after "
        f"{switched_at - killed_at:.2f} s; publishes accepted again after "
        f"{back - killed_at:.2f} s ({back - switched_at:+.2f} s after the switch); "
        f"acknowledged before the kill {len(before)}, not delivered and reported "
        f"recovered:false {lost}; 503s {len(refused)} (slowest "
        f"{max(s.done - s.sent for s in refused):.2f} s); 4003s "
        f"{[len(f.closes) for f in seen]}",
        flush=True,
    )
    # The promoted replica is the master now.
    assert sentinels.master_port() == sentinels.replica.port
