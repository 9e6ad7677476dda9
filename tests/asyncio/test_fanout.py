"""broadcast(): one message to many connections, slow consumers kept apart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import tidewire
from tidewire import ConnectionClosedError, DeflateOptions, ServerConnection
from tidewire.protocol import Opcode

from ..protocol.helpers import Pair
from .test_connection import within


class Hub:
    def __init__(self) -> None:
        self.connections: set[ServerConnection] = set()
        self.joined = asyncio.Condition()

    async def handler(self, ws: ServerConnection) -> None:
        async with self.joined:
            self.connections.add(ws)
            self.joined.notify_all()
        try:
            await ws.wait_closed()
        finally:
            self.connections.discard(ws)

    async def wait_for(self, n: int) -> None:
        async with self.joined:
            await within(self.joined.wait_for(lambda: len(self.connections) >= n))


@pytest.fixture
async def hub() -> AsyncIterator[tuple[Hub, tidewire.Server]]:
    h = Hub()
    async with tidewire.serve(h.handler, "127.0.0.1", 0, write_limit=2**16) as server:
        yield h, server


async def test_broadcast_reaches_every_kind_of_connection(hub: tuple[Hub, tidewire.Server]) -> None:
    h, server = hub
    uri = f"ws://127.0.0.1:{server.port}/"
    clients = [
        await tidewire.connect(uri),
        await tidewire.connect(uri, compression=None),
        await tidewire.connect(
            uri, deflate_options=DeflateOptions(server_no_context_takeover=True)
        ),
    ]
    await h.wait_for(3)
    assert tidewire.broadcast(h.connections, "hello all") == 3
    assert tidewire.broadcast(h.connections, b"\x00bytes") == 3
    for ws in clients:
        assert await within(ws.recv()) == "hello all"
        assert await within(ws.recv()) == b"\x00bytes"
        await ws.close()


def test_frames_are_built_once_for_connections_alike() -> None:
    a, b = Pair(), Pair()
    nct = DeflateOptions(server_no_context_takeover=True)
    c, d = Pair(server_deflate=nct), Pair(server_deflate=nct)
    plain = Pair(client_deflate=None, server_deflate=None)
    cache: dict[object, bytes] = {}
    for pair in (a, b, c, d, plain):
        pair.server.send_shared(Opcode.TEXT, b"news " * 20, cache)
    frames = [pair.server.data_to_send()[0] for pair in (a, b, c, d, plain)]
    assert frames[2] is frames[3]  # compressed once for both
    assert frames[4] is cache[None]  # plain frame built once
    assert len(cache) == 2  # context takeover connections compress on their own
    for pair in (a, b, c, d, plain):
        pair.server._out.append(frames[(a, b, c, d, plain).index(pair)])
        assert pair.s2c() == ["news " * 20]


@pytest.mark.parametrize("slow", ["skip", "close"])
async def test_slow_consumer_never_slows_the_others(
    hub: tuple[Hub, tidewire.Server], slow: str
) -> None:
    h, server = hub
    uri = f"ws://127.0.0.1:{server.port}/"
    stuck = await tidewire.connect(uri, compression=None, max_queue=1)
    stuck.transport.pause_reading()  # type: ignore[union-attr]  # never reads
    readers = [await tidewire.connect(uri, compression=None, max_size=2**20) for _ in range(3)]
    await h.wait_for(4)
    payload = bytes(32 * 1024)
    count = 400
    got = [0, 0, 0]

    async def read(i: int) -> None:
        while got[i] < count:
            assert await readers[i].recv() == payload
            got[i] += 1

    tasks = [asyncio.create_task(read(i)) for i in range(3)]
    reached = []
    for _ in range(count):
        reached.append(tidewire.broadcast(h.connections, payload, slow=slow))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # let the readers' event loop turns happen
        while any(c.write_paused for c in h.connections if c.remote_address[1] != _port(stuck)):
            await asyncio.sleep(0.001)
    await within(asyncio.gather(*tasks), 30)
    assert got == [count] * 3
    assert reached[0] == 4 and reached[-1] == 3  # the stuck one fell behind
    slow_side = [c for c in h.connections if c.remote_address[1] == _port(stuck)]
    if slow == "close":
        assert slow_side == [] or slow_side[0].protocol.close_sent is not None
        stuck.transport.resume_reading()  # type: ignore[union-attr]
        with pytest.raises(ConnectionClosedError) as info:
            while True:
                await within(stuck.recv())
        assert info.value.code == 1008 and info.value.reason == "slow consumer"
    else:
        assert slow_side and slow_side[0].protocol.close_sent is None
    for ws in readers:
        await ws.close()
    stuck.transport.abort()  # type: ignore[union-attr]
    await within(stuck.wait_closed())


def _port(ws: tidewire.ClientConnection) -> int:
    return int(ws.local_address[1])


class _CountedTransport:
    """Counts the frames handed to the transport in each write."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(1)
        self._transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        self.writes.append(len(data))
        self._transport.writelines(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def test_broadcasts_of_one_turn_go_out_in_one_write(
    hub: tuple[Hub, tidewire.Server],
) -> None:
    h, server = hub
    client = await tidewire.connect(f"ws://127.0.0.1:{server.port}/", compression=None)
    await h.wait_for(1)
    (conn,) = h.connections
    counted = conn.transport = _CountedTransport(conn.transport)
    writes = counted.writes
    for i in range(10):
        assert tidewire.broadcast(h.connections, f"message {i}") == 1
    assert writes == []  # nothing yet: the frames wait for the end of the turn
    for i in range(10):
        assert await within(client.recv()) == f"message {i}"
    assert writes == [10]  # one write of ten frames
    tidewire.broadcast(h.connections, "then")
    await conn.send("a direct send writes what was broadcast first")
    assert await within(client.recv()) == "then"
    assert await within(client.recv()) == "a direct send writes what was broadcast first"
    await client.close()
