"""A subscriber that stops reading never slows a channel down."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx

from tidewire.hub import Hub

from ..asyncio.rawclient import RawClient, build_frame, new_key, upgrade_request
from ..conftest import timeout
from .conftest import MakeHub
from .helpers import Client, within

MESSAGES = 1000
PAYLOAD = "x" * 4096


async def stalled_subscriber(hub: Hub, channel: str) -> RawClient:
    """A client that subscribes to ``channel``, then never reads again; its
    socket's receive buffer is small, so that TCP pushes back at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(timeout(5))
    sock.connect(("127.0.0.1", hub.port))  # loopback: at once
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    raw = RawClient(reader, writer)
    await raw.write(upgrade_request(new_key(), path="/ws"))
    head = await within(reader.readuntil(b"\r\n\r\n"))
    assert head.startswith(b"HTTP/1.1 101 "), head
    for request in ({"id": 1, "op": "connect"},
                    {"id": 2, "op": "subscribe", "channel": channel}):
        await raw.write(build_frame(0x1, json.dumps(request).encode()))
    for rid in (1, 2):
        reply = json.loads((await raw.read_frame()).payload)
        assert reply["id"] == rid and "result" in reply, reply
    return raw


async def test_a_stalled_subscriber_is_closed_and_the_others_get_everything(
    make_hub: MakeHub,
) -> None:
    hub = await make_hub(client_buffer=64 * 1024)
    healthy = [await Client.open(hub) for _ in range(3)]
    for client in healthy:
        await client.request("subscribe", channel="chat:flood")

    stalled = await stalled_subscriber(hub, "chat:flood")
    # From here on the stalled client reads nothing.

    async def read_all(client: Client) -> list[int]:
        return [data["n"] for data in await client.pubs(MESSAGES)]

    readers = [asyncio.create_task(read_all(c)) for c in healthy]
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(MESSAGES):
        await hub.publish("chat:flood", json.dumps({"n": n, "pad": PAYLOAD}))
        if n % 10 == 9:
            await asyncio.sleep(0)  # a publisher that yields, like any other
    got = await asyncio.wait_for(asyncio.gather(*readers), timeout(20))
    elapsed = loop.time() - start
    for numbers in got:
        assert numbers == list(range(MESSAGES))

    # The stalled client was cut off: what it has in its buffers ends with a
    # close frame 4000 "slow consumer", before the flood was over (how long
    # before depends on the kernel's socket buffers).
    frames = 0
    while True:
        frame = await stalled.read_frame(seconds=10)
        if frame.opcode == 0x8:
            assert frame.close_code_reason() == (4000, "slow consumer")
            break
        frames += 1
    assert frames < MESSAGES, "the stalled client got every message"
    await stalled.expect_eof()
    await stalled.close()

    async with httpx.AsyncClient() as http:
        metrics = await http.get(f"http://127.0.0.1:{hub.port}/metrics")
    assert "tidewire_hub_slow_consumers_total 1.0" in metrics.text
    assert elapsed < timeout(20)
    for client in healthy:
        assert await client.request("ping") == {}
        await client.close()
