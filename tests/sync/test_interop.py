"""Interoperability of tidewire.sync with two other threaded libraries.

- A tidewire.sync client against a ``websockets`` server
  (``websockets.sync.server``), with permessage-deflate on both sides and off
  on both sides.
- A ``websocket-client`` client against a tidewire.sync server, with the
  server's compression on and off: websocket-client has no permessage-deflate,
  so none may be agreed either way.

The servers act by path: ``/echo`` sends every message back, ``/fragments``
sends fragmented messages, ``/ping`` pings and reports the pong, ``/close/N``
closes with code N, ``/record-close`` reports how the client closed.
"""

from __future__ import annotations

import contextlib
import queue
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websocket  # websocket-client
import websockets.exceptions
from websockets.sync.server import ServerConnection as WsServerConnection
from websockets.sync.server import serve as ws_serve

from tests.asyncio.test_interop import assert_same, make_binary, make_text
from tests.conftest import timeout
from tests.sync.helpers import running
from tidewire.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from tidewire.sync import ServerConnection, connect

Data = str | bytes
MiB = 1 << 20
MAX_SIZE = 2 * MiB
SIZES = [0, 1, 125, 126, 65535, 65536, MiB]
TEXT_FRAGMENTS: list[Data] = ["hé", "llo, ", "", "wörld ", "€😀", make_text(70_000)]
BINARY_FRAGMENTS: list[Data] = [b"\x00\x01", b"", make_binary(70_000), b"\xff"]
PING_PAYLOADS: list[Data] = [b"", b"binary \x00\xff", "text é", b"x" * 125]


def joined(fragments: list[Data]) -> Data:
    if isinstance(fragments[0], str):
        return "".join(fragments)  # type: ignore[arg-type]
    return b"".join(fragments)  # type: ignore[arg-type]


def message(kind: str, size: int) -> Data:
    return make_text(size) if kind == "text" else make_binary(size)


@pytest.fixture(params=["deflate", None], ids=["deflate", "no-compression"])
def compression(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


# A tidewire.sync client, a websockets server.


@contextlib.contextmanager
def websockets_server(compression: str | None) -> Iterator[tuple[int, queue.Queue[Any]]]:
    """A websockets.sync server in a thread; yield its port and the queue
    where ``/record-close`` reports."""
    closes: queue.Queue[Any] = queue.Queue()

    def handler(conn: WsServerConnection) -> None:
        path = conn.request.path if conn.request is not None else "/"
        try:
            if path == "/echo":
                for received in conn:
                    conn.send(received)
            elif path == "/fragments":
                conn.send(iter(TEXT_FRAGMENTS))
                conn.send(iter(BINARY_FRAGMENTS))
                conn.recv()
            elif path == "/ping":
                for payload in PING_PAYLOADS:
                    assert conn.ping(payload).wait(timeout(5))
                conn.send("pongs received")
                conn.recv()
            elif path.startswith("/close/"):
                conn.close(int(path.removeprefix("/close/")), "custom")
            elif path == "/record-close":
                with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                    conn.recv()
                closes.put((conn.close_code, conn.close_reason))
        except websockets.exceptions.ConnectionClosed:
            pass

    with ws_serve(handler, "127.0.0.1", 0, compression=compression, max_size=MAX_SIZE) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield server.socket.getsockname()[1], closes
        finally:
            server.shutdown()
            thread.join(timeout(5))


@pytest.fixture
def ws_server(compression: str | None) -> Iterator[tuple[int, queue.Queue[Any]]]:
    with websockets_server(compression) as server:
        yield server


def tw_connect(ws_server: tuple[int, Any], path: str, compression: str | None) -> Any:
    port, _ = ws_server
    return connect(f"ws://127.0.0.1:{port}{path}", compression=compression, max_size=MAX_SIZE)


def test_extension_agreed_with_websockets(ws_server: Any, compression: str | None) -> None:
    with tw_connect(ws_server, "/echo", compression) as ws:
        agreed = ws.response.headers.get("Sec-WebSocket-Extensions")
        if compression:
            assert agreed is not None and agreed.startswith("permessage-deflate")
        else:
            assert agreed is None


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_echo_through_websockets(
    ws_server: Any, compression: str | None, kind: str, size: int
) -> None:
    sent = message(kind, size)
    with tw_connect(ws_server, "/echo", compression) as ws:
        ws.send(sent)
        assert_same(ws.recv(timeout(20)), sent)


def test_many_messages_through_websockets(ws_server: Any, compression: str | None) -> None:
    """Message boundaries and the compression context survive a burst."""
    messages = [message("text" if n % 2 else "binary", n) for n in range(1, 200)] * 2
    with tw_connect(ws_server, "/echo", compression) as ws:
        sender = threading.Thread(target=lambda: [ws.send(m) for m in messages])
        sender.start()
        assert [ws.recv(timeout(5)) for _ in messages] == messages
        sender.join(timeout(5))


def test_fragments_both_ways_with_websockets(ws_server: Any, compression: str | None) -> None:
    with tw_connect(ws_server, "/echo", compression) as ws:
        for fragments in (TEXT_FRAGMENTS, BINARY_FRAGMENTS):
            ws.send(fragments)
            assert_same(ws.recv(timeout(5)), joined(fragments))
    with tw_connect(ws_server, "/fragments", compression) as ws:
        assert_same(ws.recv(timeout(5)), joined(TEXT_FRAGMENTS))
        assert_same(ws.recv(timeout(5)), joined(BINARY_FRAGMENTS))


def test_pings_both_ways_with_websockets(ws_server: Any, compression: str | None) -> None:
    with tw_connect(ws_server, "/echo", compression) as ws:
        for payload in [None, *PING_PAYLOADS]:
            assert ws.ping(payload).wait(timeout(5))
        waiters = [ws.ping(f"ping {i}") for i in range(5)]
        assert all(waiter.wait(timeout(5)) for waiter in waiters)
    with tw_connect(ws_server, "/ping", compression) as ws:
        assert ws.recv(timeout(5)) == "pongs received"


@pytest.mark.parametrize(("code", "ok"), [(1000, True), (4000, False)])
def test_closes_both_ways_with_websockets(
    ws_server: Any, compression: str | None, code: int, ok: bool
) -> None:
    _, closes = ws_server
    with tw_connect(ws_server, "/record-close", compression) as ws:
        ws.close(code, "custom")
        assert ws.close_code == code
    assert closes.get(timeout=timeout(5)) == (code, "custom")
    with tw_connect(ws_server, f"/close/{code}", compression) as ws:
        with pytest.raises(ConnectionClosedOK if ok else ConnectionClosedError) as info:
            ws.recv(timeout(5))
        assert (info.value.code, info.value.reason) == (code, "custom")
        assert (ws.close_code, ws.close_reason) == (code, "custom")


# A websocket-client client, a tidewire.sync server.


def tidewire_handler(closes: queue.Queue[Any]) -> Any:
    def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        if path == "/echo":
            for received in ws:
                ws.send(received)
        elif path == "/fragments":
            ws.send(TEXT_FRAGMENTS)
            ws.send(BINARY_FRAGMENTS)
            ws.recv()
        elif path == "/ping":
            assert ws.ping(b"from tidewire").wait(timeout(5))
            ws.send("pong received")
            ws.recv()
        elif path.startswith("/close/"):
            ws.close(int(path.removeprefix("/close/")), "custom")
        elif path == "/record-close":
            try:
                ws.recv()
            except ConnectionClosed as exc:
                closes.put((exc.code, exc.reason))

    return handler


@pytest.fixture
def tw_server(compression: str | None) -> Iterator[tuple[int, queue.Queue[Any]]]:
    closes: queue.Queue[Any] = queue.Queue()
    with running(tidewire_handler(closes), compression=compression, max_size=MAX_SIZE) as srv:
        yield srv.port, closes


@contextlib.contextmanager
def wsc_connect(tw_server: tuple[int, Any], path: str) -> Iterator[websocket.WebSocket]:
    port, _ = tw_server
    client = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=timeout(20))
    try:
        yield client
    finally:
        client.close(timeout=timeout(5))
        client.shutdown()  # close() does nothing after a close frame came in


def close_frame(client: websocket.WebSocket) -> tuple[int, str]:
    opcode, frame = client.recv_data_frame(True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    (code,) = struct.unpack("!H", frame.data[:2])
    return code, frame.data[2:].decode()


def test_no_extension_for_websocket_client(tw_server: Any) -> None:
    with wsc_connect(tw_server, "/echo") as client:
        assert "sec-websocket-extensions" not in client.getheaders()
        assert client.getstatus() == 101


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_websocket_client_echo(tw_server: Any, kind: str, size: int) -> None:
    sent = message(kind, size)
    with wsc_connect(tw_server, "/echo") as client:
        if isinstance(sent, str):
            client.send(sent)
        else:
            client.send_binary(sent)
        assert_same(client.recv(), sent)


def test_websocket_client_many_messages(tw_server: Any) -> None:
    messages = [make_text(n) for n in range(1, 300)]
    with wsc_connect(tw_server, "/echo") as client:
        for sent in messages:
            client.send(sent)
        assert [client.recv() for _ in messages] == messages


def test_fragments_both_ways_with_websocket_client(tw_server: Any) -> None:
    abnf = websocket.ABNF
    with wsc_connect(tw_server, "/echo") as client:
        for opcode, fragments in [(abnf.OPCODE_TEXT, TEXT_FRAGMENTS),
                                  (abnf.OPCODE_BINARY, BINARY_FRAGMENTS)]:
            for i, fragment in enumerate(fragments):
                data = fragment.encode() if isinstance(fragment, str) else fragment
                frame = abnf.create_frame(
                    data, abnf.OPCODE_CONT if i else opcode, fin=int(i == len(fragments) - 1)
                )
                client.send_frame(frame)
            assert_same(client.recv(), joined(fragments))
    with wsc_connect(tw_server, "/fragments") as client:
        assert_same(client.recv(), joined(TEXT_FRAGMENTS))
        assert_same(client.recv(), joined(BINARY_FRAGMENTS))


def test_pings_both_ways_with_websocket_client(tw_server: Any) -> None:
    with wsc_connect(tw_server, "/echo") as client:
        for payload in PING_PAYLOADS:
            client.ping(payload)
            opcode, frame = client.recv_data_frame(True)
            assert opcode == websocket.ABNF.OPCODE_PONG
            expected = payload.encode() if isinstance(payload, str) else payload
            assert frame.data == expected
    with wsc_connect(tw_server, "/ping") as client:
        # websocket-client answers the ping while it waits for a message.
        assert client.recv() == "pong received"


@pytest.mark.parametrize("code", [1000, 4000])
def test_closes_both_ways_with_websocket_client(tw_server: Any, code: int) -> None:
    _, closes = tw_server
    with wsc_connect(tw_server, "/record-close") as client:
        client.close(status=code, reason=b"custom", timeout=timeout(5))
    assert closes.get(timeout=timeout(5)) == (code, "custom")
    with wsc_connect(tw_server, f"/close/{code}") as client:
        assert close_frame(client) == (code, "custom")
