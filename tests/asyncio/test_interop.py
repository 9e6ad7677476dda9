"""Interoperability with the ``websockets`` library, in both directions.

Every test runs four times: a websockets client against a tidewire server and a
tidewire client against a websockets server, each with permessage-deflate on both
sides and off on both sides. The ``pair`` fixture hands each test the two ends of
one open connection: ``pair.tw`` (tidewire) and ``pair.ws`` (websockets).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pytest
import websockets.exceptions
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

import tidewire
from tests.conftest import timeout
from tidewire.exceptions import ConnectionClosedError, ConnectionClosedOK

T = TypeVar("T")
Data = str | bytes

HOST = "127.0.0.1"
MiB = 1 << 20
MAX_SIZE = 16 * MiB + 64 * 1024  # the largest message plus a margin, on all sides
SHORT = timeout(5)
LONG = timeout(40)

WS_CLIENT = "websockets-client-tidewire-server"
TW_CLIENT = "tidewire-client-websockets-server"
SIZES = [0, 1, 125, 126, 65535, 65536, MiB, 16 * MiB]


class Peer(Protocol):
    """What both libraries' connections offer and these tests use."""

    async def send(self, message: Any) -> None: ...

    async def recv(self) -> Data: ...


@dataclass
class Pair:
    """Two ends of one open connection."""

    tw: tidewire.Connection
    ws: Any  # websockets.asyncio.{client.ClientConnection, server.ServerConnection}
    direction: str

    @property
    def server_side(self) -> Any:
        return self.tw if self.direction == WS_CLIENT else self.ws


# Helpers.


async def within(awaitable: Awaitable[T], seconds: float = SHORT) -> T:
    """Await with a deadline, so that a hang fails the test instead of stalling it."""
    return await asyncio.wait_for(awaitable, seconds)


def make_binary(size: int) -> bytes:
    """``size`` random bytes: incompressible, seeded for reproducibility."""
    return random.Random(size).randbytes(size)


_NON_ASCII = {"+": "é", "/": "ß", "A": "€", "B": "😀", "C": "ж", "D": "中", "E": "é", "F": "ñ"}


def make_text(size: int) -> str:
    """Text of exactly ``size`` UTF-8 bytes, with 2-, 3- and 4-byte characters."""
    chars = base64.b64encode(make_binary(size)).decode()
    for old, new in _NON_ASCII.items():
        chars = chars.replace(old, new)
    text = chars.encode()[:size].decode(errors="ignore")  # drop a cut character
    text += "a" * (size - len(text.encode()))
    assert len(text.encode()) == size
    return text


def assert_same(got: Data, expected: Data) -> None:
    """Compare messages exactly, without a multi-megabyte assertion diff."""
    assert type(got) is type(expected), f"got {type(got).__name__}"
    assert len(got) == len(expected), f"got {len(got)} items, expected {len(expected)}"
    if got != expected:
        index = next(i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b)
        pytest.fail(f"messages differ first at index {index}")


async def transfer(sender: Peer, receiver: Peer, message: Any, seconds: float = SHORT) -> Data:
    """Send ``message`` from one end and return what the other end receives."""
    _, received = await within(asyncio.gather(sender.send(message), receiver.recv()), seconds)
    return received


async def assert_still_open(pair: Pair) -> None:
    """One message each way goes through."""
    assert await transfer(pair.tw, pair.ws, "still there?") == "still there?"
    assert await transfer(pair.ws, pair.tw, b"yes") == b"yes"


def joined(fragments: list[Data]) -> Data:
    if isinstance(fragments[0], str):
        return "".join(fragments)  # type: ignore[arg-type]
    return b"".join(fragments)  # type: ignore[arg-type]


def sync_fragments(fragments: list[Data]) -> Iterator[Data]:
    yield from fragments


async def async_fragments(fragments: list[Data]) -> AsyncIterator[Data]:
    for fragment in fragments:
        await asyncio.sleep(0)  # let the event loop run between fragments
        yield fragment


def as_form(fragments: list[Data], form: str) -> Iterable[Data] | AsyncIterator[Data]:
    if form == "list":
        return list(fragments)
    if form == "generator":
        return sync_fragments(fragments)
    assert form == "async-generator"
    return async_fragments(fragments)


def capture(future: asyncio.Future[Any]) -> Callable[[Any], Awaitable[None]]:
    """A server handler that hands its connection to the test and keeps it open."""

    async def handler(connection: Any) -> None:
        future.set_result(connection)
        await connection.wait_closed()

    return handler


async def stop_server(server: Any) -> None:
    server.close()
    await within(server.wait_closed())


async def close_connection(connection: Any) -> None:
    await within(connection.close())


# Fixtures.


@pytest.fixture(params=[WS_CLIENT, TW_CLIENT])
def direction(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["deflate", None], ids=["deflate", "no-compression"])
def compression(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def pair(direction: str, compression: str | None) -> AsyncIterator[Pair]:
    server_side: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    options: dict[str, Any] = {"compression": compression, "max_size": MAX_SIZE}
    async with contextlib.AsyncExitStack() as stack:
        if direction == WS_CLIENT:
            server: Any = await within(tidewire.serve(capture(server_side), HOST, 0, **options))
            stack.push_async_callback(stop_server, server)
            ws = await within(ws_connect(f"ws://{HOST}:{server.port}/", **options))
            stack.push_async_callback(close_connection, ws)
            tw = await within(server_side)
        else:
            server = await within(ws_serve(capture(server_side), HOST, 0, **options))
            stack.push_async_callback(stop_server, server)
            port = server.sockets[0].getsockname()[1]
            tw = await within(tidewire.connect(f"ws://{HOST}:{port}/", **options))
            stack.push_async_callback(close_connection, tw)
            ws = await within(server_side)
        yield Pair(tw=tw, ws=ws, direction=direction)


# Handshake.


async def test_negotiated_extension(pair: Pair, compression: str | None) -> None:
    """Both ends agree on permessage-deflate exactly when both enable it."""
    views = {
        "websockets response": pair.ws.response.headers.get("Sec-WebSocket-Extensions"),
        "tidewire response": pair.tw.response.headers.get("Sec-WebSocket-Extensions"),
    }
    offer = pair.server_side.request.headers.get("Sec-WebSocket-Extensions")
    if compression == "deflate":
        assert offer is not None and "permessage-deflate" in offer
        for view, value in views.items():
            assert value is not None and value.startswith("permessage-deflate"), view
    else:
        assert offer is None
        assert views == {"websockets response": None, "tidewire response": None}


# Messages.


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_echo_round_trip(pair: Pair, kind: str, size: int) -> None:
    """websockets sends a message, tidewire receives it and sends it back."""
    message = make_text(size) if kind == "text" else make_binary(size)
    seconds = LONG if size >= MiB else SHORT
    received = await transfer(pair.ws, pair.tw, message, seconds)
    assert_same(received, message)
    echoed = await transfer(pair.tw, pair.ws, received, seconds)
    assert_same(echoed, message)


async def test_many_messages_in_a_row(pair: Pair) -> None:
    """Message boundaries and the compression context survive a burst."""
    messages: list[Data] = [make_text(n) if n % 2 else make_binary(n) for n in range(1, 200)]
    messages += messages  # repeats: what the compression context remembers

    async def send_all(sender: Peer) -> None:
        for message in messages:
            await sender.send(message)

    async def recv_all(receiver: Peer) -> list[Data]:
        return [await receiver.recv() for _ in messages]

    for sender, receiver in [(pair.ws, pair.tw), (pair.tw, pair.ws)]:
        _, received = await within(asyncio.gather(send_all(sender), recv_all(receiver)))
        assert received == messages


# Fragmentation.

TEXT_FRAGMENTS: list[Data] = ["hé", "llo, ", "", "wörld ", "€😀", make_text(70_000)]
BINARY_FRAGMENTS: list[Data] = [b"\x00\x01", b"", make_binary(70_000), b"\xff"]
FRAGMENTS = pytest.mark.parametrize(
    "fragments", [TEXT_FRAGMENTS, BINARY_FRAGMENTS], ids=["text", "binary"]
)


@FRAGMENTS
@pytest.mark.parametrize("form", ["list", "async-generator"])
async def test_tidewire_sends_fragments(pair: Pair, fragments: list[Data], form: str) -> None:
    received = await transfer(pair.tw, pair.ws, as_form(fragments, form))
    assert_same(received, joined(fragments))
    await assert_still_open(pair)


@FRAGMENTS
@pytest.mark.parametrize("form", ["list", "generator", "async-generator"])
async def test_websockets_sends_fragments(pair: Pair, fragments: list[Data], form: str) -> None:
    received = await transfer(pair.ws, pair.tw, as_form(fragments, form))
    assert_same(received, joined(fragments))
    await assert_still_open(pair)


async def test_tidewire_pings_between_fragments(pair: Pair) -> None:
    """A ping may go out in the middle of a fragmented message (RFC 6455 5.4)."""
    pongs: list[asyncio.Future[float]] = []

    async def fragments() -> AsyncIterator[str]:
        yield "before "
        pongs.append(pair.tw.ping(b"in the middle"))
        yield "after"

    assert await transfer(pair.tw, pair.ws, fragments()) == "before after"
    latency = await within(pongs[0])
    assert isinstance(latency, float) and latency >= 0


# Pings.


async def test_tidewire_ping_answered_by_websockets(pair: Pair) -> None:
    latency = await within(pair.tw.ping())
    assert isinstance(latency, float) and latency >= 0
    for payload in [b"", b"binary \x00\xff", "text é", b"x" * 125]:
        latency = await within(pair.tw.ping(payload))
        assert isinstance(latency, float) and latency >= 0
    # Several pings in flight at once all get their pong.
    latencies = await within(asyncio.gather(*(pair.tw.ping(f"ping {i}") for i in range(5))))
    assert all(isinstance(latency, float) and latency >= 0 for latency in latencies)
    await assert_still_open(pair)


async def test_websockets_ping_answered_by_tidewire(pair: Pair) -> None:
    for payload in [None, b"", b"binary \x00\xff", "text é", b"x" * 125]:
        pong_received = await within(pair.ws.ping(payload))
        latency = await within(pong_received)
        assert isinstance(latency, float) and latency >= 0
    waiters = [await within(pair.ws.ping(f"ping {i}")) for i in range(5)]
    await within(asyncio.gather(*waiters))
    await assert_still_open(pair)


# Closing.

CLOSES = pytest.mark.parametrize(
    ("code", "reason", "ok"),
    [(1000, "bye", True), (4000, "custom", False)],
    ids=["normal", "custom-code"],
)


@CLOSES
async def test_tidewire_closes(pair: Pair, code: int, reason: str, ok: bool) -> None:
    """websockets sees tidewire's code and reason; 1000 is OK, 4000 an error."""
    await within(pair.tw.close(code, reason))

    expected = (
        websockets.exceptions.ConnectionClosedOK
        if ok
        else websockets.exceptions.ConnectionClosedError
    )
    with pytest.raises(expected):
        await within(pair.ws.recv())
    await within(pair.ws.wait_closed())
    assert (pair.ws.close_code, pair.ws.close_reason) == (code, reason)

    # tidewire heard its code echoed, and says so from then on.
    assert pair.tw.close_code == code
    with pytest.raises(ConnectionClosedOK if ok else ConnectionClosedError) as info:
        await within(pair.tw.recv())
    assert info.value.sent is not None and info.value.sent.code == code
    assert info.value.sent.reason == reason
    assert info.value.rcvd is not None and info.value.rcvd.code == code


@CLOSES
async def test_websockets_closes(pair: Pair, code: int, reason: str, ok: bool) -> None:
    """tidewire sees websockets' code and reason; 1000 is OK, 4000 an error."""
    await within(pair.ws.close(code, reason))

    with pytest.raises(ConnectionClosedOK if ok else ConnectionClosedError) as info:
        await within(pair.tw.recv())
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (code, reason)
    assert (info.value.code, info.value.reason) == (code, reason)
    assert info.value.sent is not None and info.value.sent.code == code

    await within(pair.tw.wait_closed())
    assert (pair.tw.close_code, pair.tw.close_reason) == (code, reason)
    assert pair.ws.close_code == code  # tidewire echoed the code


async def test_normal_close_ends_tidewire_iteration(pair: Pair) -> None:
    """Messages sent before a 1000 close are delivered, then ``async for`` ends."""
    messages: list[Data] = ["one", b"two", "trois é"]

    async def websockets_side() -> None:
        for message in messages:
            await pair.ws.send(message)
        await pair.ws.close()

    async def tidewire_side() -> list[Data]:
        return [message async for message in pair.tw]

    _, received = await within(asyncio.gather(websockets_side(), tidewire_side()))
    assert received == messages
    await within(pair.tw.wait_closed())
    assert pair.tw.close_code == 1000


async def test_normal_close_ends_websockets_iteration(pair: Pair) -> None:
    """The same, the other way around."""
    messages: list[Data] = ["one", b"two", "trois é"]

    async def tidewire_side() -> None:
        for message in messages:
            await pair.tw.send(message)
        await pair.tw.close()

    async def websockets_side() -> list[Data]:
        return [message async for message in pair.ws]

    _, received = await within(asyncio.gather(tidewire_side(), websockets_side()))
    assert received == messages
    assert pair.ws.close_code == 1000
