"""The asyncio client and server, end to end on loopback."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

import tidewire
from tests.asyncio.rawclient import RawClient, build_frame
from tests.conftest import timeout
from tidewire import ConnectionClosedError, ConnectionClosedOK, Response, ServerConnection
from tidewire.asyncio.connection import Connection
from tidewire.exceptions import ConcurrencyError, InvalidStatus, InvalidURI

Handler = Callable[[ServerConnection], Awaitable[None]]


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def within(aw: Awaitable[object], seconds: float = 5) -> Awaitable[object]:
    return asyncio.wait_for(aw, timeout(seconds))


@pytest.fixture
async def server() -> AsyncIterator[tidewire.Server]:
    async with tidewire.serve(echo, "127.0.0.1", 0) as srv:
        yield srv


def url(srv: tidewire.Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{srv.port}{path}"


async def test_echo_text_and_binary(server: tidewire.Server) -> None:
    async with tidewire.connect(url(server)) as ws:
        await ws.send("héllo")
        assert await within(ws.recv()) == "héllo"
        await ws.send(b"\x00\x01")
        assert await within(ws.recv()) == b"\x00\x01"
        await ws.send(bytearray(b"ba"))
        assert await within(ws.recv()) == b"ba"


async def test_compression_is_negotiated_by_default(server: tidewire.Server) -> None:
    async with tidewire.connect(url(server)) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
    async with tidewire.connect(url(server), compression=None) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_fragmented_sends_arrive_whole(server: tidewire.Server) -> None:
    async def fragments() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part

    async with tidewire.connect(url(server)) as ws:
        await ws.send(["x", "y", "z"])
        assert await within(ws.recv()) == "xyz"
        await ws.send(fragments())
        assert await within(ws.recv()) == b"abc"
        with pytest.raises(TypeError):
            await ws.send(["x", b"y"])


async def test_ping_completes_on_pong(server: tidewire.Server) -> None:
    async with tidewire.connect(url(server)) as ws:
        latency = await within(ws.ping())
        assert isinstance(latency, float) and latency >= 0
        first, second = ws.ping(b"1"), ws.ping(b"2")
        await within(second)
        assert first.done()


async def test_client_close_gives_ok_and_ends_iteration(server: tidewire.Server) -> None:
    ws = await tidewire.connect(url(server))
    await ws.close(1000, "done")
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK):
        await ws.recv()
    assert [m async for m in ws] == []


async def test_close_with_unread_messages_completes_the_handshake() -> None:
    # Reading is paused at max_queue unread messages; the peer's close frame
    # must still come in, not after close_timeout as a 1006.
    async def chatty(ws: ServerConnection) -> None:
        for i in range(64):
            await ws.send(f"m{i}")
        await ws.wait_closed()

    async with tidewire.serve(chatty, "127.0.0.1", 0) as srv:
        ws = await tidewire.connect(url(srv), max_queue=4, close_timeout=60)
        assert await within(ws.recv()) == "m0"
        for _ in range(10_000):  # loop turns until the server's messages fill the queue
            if ws.messages.paused:
                break
            await asyncio.sleep(0)
        assert ws.messages.paused
        await within(ws.close(1000, "enough"))
        assert ws.close_code == 1000
        # What came before the close is still there to read.
        assert await within(ws.recv()) == "m1"


async def test_server_close_code_and_reason_reach_client() -> None:
    async def closer(ws: ServerConnection) -> None:
        await ws.close(4000, "custom reason")

    async with tidewire.serve(closer, "127.0.0.1", 0) as srv:
        ws = await tidewire.connect(url(srv))
        with pytest.raises(ConnectionClosedError) as info:
            await within(ws.recv())
        assert info.value.code == 4000 and info.value.reason == "custom reason"
        await within(ws.wait_closed())
        assert ws.close_code == 4000 and ws.close_reason == "custom reason"


async def test_handler_exception_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(ws: ServerConnection) -> None:
        raise RuntimeError("bug in the handler")

    async with tidewire.serve(broken, "127.0.0.1", 0) as srv:
        ws = await tidewire.connect(url(srv))
        with pytest.raises(ConnectionClosedError) as info:
            await within(ws.recv())
        assert info.value.code == 1011
    assert "connection handler failed" in caplog.text


async def test_server_close_sends_1001_to_every_client(server: tidewire.Server) -> None:
    clients = [await tidewire.connect(url(server)) for _ in range(3)]
    server.close()
    await within(server.wait_closed())
    for ws in clients:
        with pytest.raises(ConnectionClosedOK) as info:
            await within(ws.recv())
        assert info.value.code == 1001


async def test_server_close_waits_for_handlers_whose_client_left() -> None:
    # A handler that cleans up after its client closed (say, with a database
    # or a broker) must finish before wait_closed() returns: the caller closes
    # those resources next.
    cleaning = asyncio.Event()
    go_on = asyncio.Event()
    done: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()
        cleaning.set()
        await go_on.wait()
        done.append("cleaned up")

    async with tidewire.serve(handler, "127.0.0.1", 0) as srv:
        ws = await tidewire.connect(url(srv))
        await ws.close()
        await within(cleaning.wait())
        assert srv.connections == set()
        srv.close()
        closing = asyncio.ensure_future(srv.wait_closed())
        await asyncio.sleep(0.05)
        assert not closing.done()
        go_on.set()
        await within(closing)
        assert done == ["cleaned up"]


async def test_process_request_can_refuse_and_answer() -> None:
    def check(ws: ServerConnection, request: tidewire.Request) -> Response | None:
        if request.path == "/healthz":
            return ws.respond(200, "ok\n")
        if request.headers.get("Authorization") != "Bearer good":
            return ws.respond(401, "missing or bad token\n")
        return None

    async with tidewire.serve(echo, "127.0.0.1", 0, process_request=check) as srv:
        with pytest.raises(InvalidStatus) as info:
            await tidewire.connect(url(srv))
        assert info.value.response.status == 401
        assert info.value.response.body == b"missing or bad token\n"
        async with tidewire.connect(
            url(srv), additional_headers={"Authorization": "Bearer good"}
        ) as ws:
            await ws.send("in")
            assert await within(ws.recv()) == "in"
        with pytest.raises(InvalidStatus) as info:
            await tidewire.connect(url(srv, "/healthz"))
        assert info.value.response.status == 200


async def test_async_process_request() -> None:
    async def check(ws: ServerConnection, request: tidewire.Request) -> Response | None:
        await asyncio.sleep(0)
        return ws.respond(403, "nope\n")

    async with tidewire.serve(echo, "127.0.0.1", 0, process_request=check) as srv:
        with pytest.raises(InvalidStatus) as info:
            await tidewire.connect(url(srv))
        assert info.value.response.status == 403


async def test_subprotocol_negotiation() -> None:
    async def report(ws: ServerConnection) -> None:
        await ws.send(ws.subprotocol or "none")

    async with tidewire.serve(report, "127.0.0.1", 0, subprotocols=["v2", "v1"]) as srv:
        async with tidewire.connect(url(srv), subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            assert await within(ws.recv()) == "v2"


async def test_concurrent_recv_raises(server: tidewire.Server) -> None:
    async with tidewire.connect(url(server)) as ws:
        first = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(ConcurrencyError):
            await ws.recv()
        await ws.send("x")
        assert await within(first) == "x"


async def test_send_waits_when_peer_does_not_read() -> None:
    """Backpressure: send() blocks above the write limit instead of buffering."""
    release = asyncio.Event()

    async def sleepy(ws: ServerConnection) -> None:
        await release.wait()
        async for _ in ws:
            pass

    async with tidewire.serve(sleepy, "127.0.0.1", 0, max_queue=1) as srv:
        async with tidewire.connect(url(srv), compression=None, write_limit=2**16) as ws:
            chunk = bytes(2**16)
            sent = 0

            async def flood() -> None:
                nonlocal sent
                while True:
                    await ws.send(chunk)
                    sent += 1

            task = asyncio.create_task(flood())
            # Each send below the limit returns at once; wait until sends stall.
            last = -1
            while sent != last:
                last = sent
                await asyncio.sleep(0.05)
            assert not task.done()
            assert ws.transport is not None
            # The kernel buffers hold a few MB at most; the write buffer is bounded.
            assert ws.transport.get_write_buffer_size() <= 2**16 + len(chunk) + 16
            assert sent < 1000
            task.cancel()
            release.set()


async def test_reading_pauses_when_queue_is_full(server: tidewire.Server) -> None:
    async with tidewire.connect(url(server), max_queue=4, compression=None) as ws:
        for i in range(20):
            await ws.send(str(i))
        await asyncio.sleep(0.1)
        assert len(ws.messages) <= 4 + 16  # paused near the high watermark
        received = [await within(ws.recv()) for _ in range(20)]
        assert received == [str(i) for i in range(20)]


async def test_keepalive_timeout_closes_with_1011() -> None:
    """A peer that never answers pings is dropped after ping_timeout."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    async def accept_and_ignore() -> None:
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        conn, _ = await loop.sock_accept(listener)
        accepted.append(conn)
        data = b""
        while b"\r\n\r\n" not in data:
            data += await loop.sock_recv(conn, 4096)
        key = [
            line.split(b":", 1)[1].strip().decode()
            for line in data.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        ][0]
        from tidewire.protocol.handshake import accept_key

        await loop.sock_sendall(
            conn,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key).encode()
            + b"\r\n\r\n",
        )

    task = asyncio.create_task(accept_and_ignore())
    try:
        ws = await tidewire.connect(
            f"ws://127.0.0.1:{port}/", ping_interval=0.05, ping_timeout=0.1
        )
        await within(task)
        with pytest.raises(ConnectionClosedError) as info:
            await within(ws.recv())
        assert info.value.sent is not None and info.value.sent.code == 1011
        assert info.value.sent.reason == "keepalive ping timeout"
    finally:
        for conn in accepted:
            conn.close()
        listener.close()


async def test_keepalive_pings_an_idle_peer_again_after_each_pong() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with tidewire.serve(handler, "127.0.0.1", 0, ping_interval=0.05, ping_timeout=1) as srv:
        raw = await RawClient.connect(srv.port)
        await raw.handshake()
        for _ in range(3):
            ping = await raw.read_frame()
            assert ping.opcode == 0x9 and len(ping.payload) == 4
            await raw.write(build_frame(0xA, ping.payload))
        (conn,) = srv.connections
        assert conn.state is tidewire.State.OPEN
        await raw.close()


async def test_keepalive_leaves_a_busy_peer_alone() -> None:
    async with tidewire.serve(echo, "127.0.0.1", 0, ping_interval=0.3, ping_timeout=1) as srv:
        raw = await RawClient.connect(srv.port)
        await raw.handshake()
        for i in range(15):  # a message every 30 ms or so, for longer than 300 ms
            await raw.write(build_frame(0x1, str(i).encode()))
            frame = await raw.read_frame()
            assert (frame.opcode, frame.payload) == (0x1, str(i).encode())
            await asyncio.sleep(0.03)
        await raw.close()


async def test_client_open_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        with pytest.raises(TimeoutError):
            await tidewire.connect(
                f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=0.2
            )
    finally:
        listener.close()


async def test_client_errors_are_clear() -> None:
    with pytest.raises(InvalidURI):
        await tidewire.connect("http://example.com/")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(OSError):
        await tidewire.connect(f"ws://127.0.0.1:{port}/")


async def test_message_over_max_size_closes_with_1009() -> None:
    async with tidewire.serve(echo, "127.0.0.1", 0, max_size=1000) as srv:
        async with tidewire.connect(url(srv)) as ws:
            await ws.send(b"x" * 1001)
            with pytest.raises(ConnectionClosedError) as info:
                await within(ws.recv())
            assert info.value.code == 1009


@pytest.mark.parametrize("fails", [False, True])
async def test_a_peer_that_never_answers_the_close_is_dropped(fails: bool) -> None:
    async def handler(ws: ServerConnection) -> None:
        if fails:
            raise RuntimeError("the handler's bug")

    async with tidewire.serve(handler, "127.0.0.1", 0, close_timeout=0.3) as srv:
        raw = await RawClient.connect(srv.port)
        await raw.handshake()
        frame = await raw.read_frame()
        assert frame.close_code_reason() == (1011 if fails else 1000, "")
        start = asyncio.get_running_loop().time()
        await raw.expect_eof()  # no close frame back: the server gives up
        assert asyncio.get_running_loop().time() - start >= 0.25
        await raw.close()
        assert srv.connections == set()


async def echo_callback(ws: ServerConnection) -> None:
    ws.on_message(ws.send_nowait)
    await ws.wait_closed()


@pytest.mark.parametrize("handler", [echo, echo_callback])
async def test_closed_connections_are_freed_without_the_garbage_collector(
    handler: Handler,
) -> None:
    # A reference cycle would keep every closed connection, with its request
    # and buffers, until the collector runs: memory and time on busy servers.
    gc.collect()
    gc.disable()
    try:
        async with tidewire.serve(handler, "127.0.0.1", 0) as srv:
            for _ in range(3):
                async with tidewire.connect(url(srv)) as ws:
                    await ws.send("x")
                    assert await within(ws.recv()) == "x"
            del ws
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if isinstance(o, Connection)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []
