"""The threaded client and server, end to end on loopback."""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest

from tests.asyncio.rawclient import build_frame
from tests.conftest import timeout
from tests.sync.helpers import RawClient, RawServer, running, url
from tidewire import ConnectionClosedError, ConnectionClosedOK, Request, Response
from tidewire.exceptions import ConcurrencyError, InvalidStatus, InvalidURI
from tidewire.sync import Server, ServerConnection, connect


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


@pytest.fixture
def server() -> Iterator[Server]:
    with running(echo) as srv:
        yield srv


def test_echo_text_and_binary(server: Server) -> None:
    with connect(url(server)) as ws:
        ws.send("héllo")
        assert ws.recv(timeout(5)) == "héllo"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout(5)) == b"\x00\x01"
        ws.send(bytearray(b"ba"))
        assert ws.recv(timeout(5)) == b"ba"
        ws.send(memoryview(b"mv"))
        assert ws.recv(timeout(5)) == b"mv"
        with pytest.raises(TypeError):
            ws.send(42)  # type: ignore[arg-type]


def test_connection_details(server: Server) -> None:
    with connect(url(server, "/path?q=1")) as ws:
        assert ws.request is None
        assert ws.response is not None and ws.response.status == 101
        assert ws.remote_address == ("127.0.0.1", server.port)
        assert ws.local_address[0] == "127.0.0.1"
        assert ws.subprotocol is None
        assert ws.close_code is None and ws.close_reason is None
        assert isinstance(ws.id, uuid.UUID)
        assert repr(ws).startswith("<ClientConnection ")


def test_compression_is_negotiated_by_default(server: Server) -> None:
    with connect(url(server)) as ws:
        assert ws.response is not None
        assert "permessage-deflate" in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        ws.send("a" * 10_000)
        assert ws.recv(timeout(5)) == "a" * 10_000
    with connect(url(server), compression=None) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


def test_fragmented_sends_arrive_whole(server: Server) -> None:
    def fragments() -> Iterator[bytes]:
        yield from (b"a", b"b", b"c")

    with connect(url(server)) as ws:
        ws.send(["x", "y", "z"])
        assert ws.recv(timeout(5)) == "xyz"
        ws.send(fragments())
        assert ws.recv(timeout(5)) == b"abc"
        ws.send([])  # nothing at all
        with pytest.raises(TypeError):
            ws.send(["x", b"y"])
        ws.send("still open")
        assert ws.recv(timeout(5)) == "still open"


def test_ping_is_answered(server: Server) -> None:
    with connect(url(server)) as ws:
        assert ws.ping().wait(timeout(5))
        first, second = ws.ping(b"1"), ws.ping("2")
        assert second.wait(timeout(5))
        assert first.is_set()  # a pong acknowledges the pings before it
        ws.pong(b"unsolicited")  # a heartbeat; the server ignores it
        ws.send("after")
        assert ws.recv(timeout(5)) == "after"


def test_ping_payload_is_unique_while_waiting() -> None:
    raw = RawServer()
    try:
        accepting = threading.Thread(target=raw.accept)
        accepting.start()
        with connect(f"ws://127.0.0.1:{raw.port}/", close_timeout=0.1) as ws:
            accepting.join(timeout(5))
            waiting = ws.ping(b"3")
            with pytest.raises(ValueError):
                ws.ping(b"3")
            assert not waiting.is_set()
    finally:
        raw.close()


def test_client_close_gives_ok_and_ends_iteration(server: Server) -> None:
    ws = connect(url(server))
    ws.close(1000, "done")
    assert ws.close_code == 1000
    with pytest.raises(ConnectionClosedOK):
        ws.recv()
    assert list(ws) == []
    ws.close()  # again: nothing happens
    with pytest.raises(ConnectionClosedOK):
        ws.send("too late")


def test_client_close_code_and_reason_reach_handler() -> None:
    seen: queue.Queue[BaseException] = queue.Queue()

    def handler(ws: ServerConnection) -> None:
        try:
            ws.recv()
        except ConnectionClosedError as exc:
            seen.put(exc)

    with running(handler) as srv:
        with connect(url(srv)) as ws:
            ws.close(4001, "custom")
            assert ws.close_code == 4001
        exc = seen.get(timeout=timeout(5))
        assert isinstance(exc, ConnectionClosedError)
        assert (exc.code, exc.reason) == (4001, "custom")


def test_server_close_code_and_reason_reach_client() -> None:
    def closer(ws: ServerConnection) -> None:
        ws.close(4000, "custom reason")

    with running(closer) as srv, connect(url(srv)) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout(5))
        assert info.value.code == 4000 and info.value.reason == "custom reason"
        assert ws.close_code == 4000 and ws.close_reason == "custom reason"
        with pytest.raises(ConnectionClosedError):
            list(ws)  # iteration re-raises an abnormal closure


def test_messages_before_a_close_are_delivered() -> None:
    def farewell(ws: ServerConnection) -> None:
        for message in ("one", b"two", "three"):
            ws.send(message)

    with running(farewell) as srv, connect(url(srv)) as ws:
        assert list(ws) == ["one", b"two", "three"]
        assert ws.close_code == 1000


def test_handler_exception_closes_with_1011(caplog: pytest.LogCaptureFixture) -> None:
    def broken(ws: ServerConnection) -> None:
        raise RuntimeError("bug in the handler")

    with running(broken) as srv, connect(url(srv)) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout(5))
        assert info.value.code == 1011
    assert "connection handler failed" in caplog.text
    assert "RuntimeError: bug in the handler" in caplog.text


def test_server_shutdown_sends_1001_to_every_client() -> None:
    opened: queue.Queue[ServerConnection] = queue.Queue()

    def handler(ws: ServerConnection) -> None:
        opened.put(ws)
        for _ in ws:
            pass

    with running(handler) as srv:
        clients = [connect(url(srv)) for _ in range(3)]
        for _ in clients:
            opened.get(timeout=timeout(5))
        assert len(srv.connections) == 3
        srv.shutdown()
        assert srv.connections == set()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout(5))
            assert info.value.code == 1001
        with pytest.raises(OSError):
            connect(url(srv), open_timeout=timeout(5))


def test_peer_that_leaves_without_closing() -> None:
    """A dropped TCP connection ends in ConnectionClosedError 1006, quietly."""
    results: queue.Queue[BaseException] = queue.Queue()

    def handler(ws: ServerConnection) -> None:
        try:
            ws.recv()
        except ConnectionClosedError as exc:
            results.put(exc)

    with running(handler) as srv:
        raw = RawClient(srv.port)
        raw.handshake()
        raw.close()
        exc = results.get(timeout=timeout(5))
        assert isinstance(exc, ConnectionClosedError) and exc.code == 1006


def test_messages_before_a_protocol_error_are_answered() -> None:
    """The echo of a message goes out before the 1002 for what followed it."""
    with running(echo) as srv:
        raw = RawClient(srv.port)
        try:
            raw.handshake()
            raw.sock.sendall(build_frame(0x1, b"first") + build_frame(0x3, b"bad opcode"))
            frame = raw.read_frame()
            assert (frame.opcode, frame.payload) == (0x1, b"first")
            code, _ = raw.read_frame().close_code_reason()
            assert code == 1002
            assert raw.read_to_eof() == b""
        finally:
            raw.close()


def test_process_request_can_refuse_and_answer() -> None:
    def check(ws: ServerConnection, request: Request) -> Response | None:
        if request.path == "/healthz":
            return ws.respond(200, "ok\n")
        if request.headers.get("Authorization") != "Bearer good":
            return ws.respond(401, "missing or bad token\n")
        return None

    with running(echo, process_request=check) as srv:
        with pytest.raises(InvalidStatus) as info:
            connect(url(srv))
        assert info.value.response.status == 401
        assert info.value.response.body == b"missing or bad token\n"
        with connect(url(srv), additional_headers={"Authorization": "Bearer good"}) as ws:
            ws.send("in")
            assert ws.recv(timeout(5)) == "in"
        with pytest.raises(InvalidStatus) as info:
            connect(url(srv, "/healthz"))
        assert info.value.response.status == 200


def test_process_request_reads_a_body_where_allowed() -> None:
    def api(ws: ServerConnection, request: Request) -> Response | None:
        if request.method == "POST":
            return ws.respond(200, f"got {request.body.decode()}\n")
        return None

    with running(echo, process_request=api, max_request_body=100) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout(5)) as sock:
            sock.sendall(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"got hello\n")
        with connect(url(srv)) as ws:  # upgrades still work
            ws.send("in")
            assert ws.recv(timeout(5)) == "in"


def test_process_response_can_change_the_response() -> None:
    def stamp(ws: ServerConnection, request: Request, response: Response) -> Response | None:
        response.headers["X-Served-By"] = "tidewire.sync"
        return None

    with running(echo, process_response=stamp) as srv, connect(url(srv)) as ws:
        assert ws.response is not None
        assert ws.response.headers.get("X-Served-By") == "tidewire.sync"


def test_failing_hook_answers_500(caplog: pytest.LogCaptureFixture) -> None:
    def broken(ws: ServerConnection, request: Request) -> Response | None:
        raise RuntimeError("bug in the hook")

    with running(echo, process_request=broken) as srv:
        with pytest.raises(InvalidStatus) as info:
            connect(url(srv))
        assert info.value.response.status == 500
    assert "error in the opening handshake hook" in caplog.text


def test_origin_check() -> None:
    with running(echo, origins=["https://good.example"]) as srv:
        with pytest.raises(InvalidStatus) as info:
            connect(url(srv), origin="https://evil.example")
        assert info.value.response.status == 403
        with connect(url(srv), origin="https://good.example") as ws:
            ws.send("ok")
            assert ws.recv(timeout(5)) == "ok"


def test_subprotocol_negotiation() -> None:
    def report(ws: ServerConnection) -> None:
        ws.send(ws.subprotocol or "none")

    with running(report, subprotocols=["v2", "v1"]) as srv:
        with connect(url(srv), subprotocols=["v1", "v2"]) as ws:
            assert ws.subprotocol == "v2"
            assert ws.recv(timeout(5)) == "v2"
        with connect(url(srv), subprotocols=["v3"]) as ws:
            assert ws.subprotocol is None
            assert ws.recv(timeout(5)) == "none"
    with running(report, select_subprotocol=lambda offered: offered[-1]) as srv:
        with connect(url(srv), subprotocols=["a", "b"]) as ws:
            assert ws.subprotocol == "b"


def test_recv_timeout(server: Server) -> None:
    with connect(url(server)) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.05)
        ws.send("late")
        assert ws.recv(timeout(5)) == "late"


def test_concurrent_recv_raises(server: Server) -> None:
    """Of two threads that wait for a message, the second gets ConcurrencyError."""
    with connect(url(server)) as ws:
        outcomes: queue.Queue[object] = queue.Queue()

        def receive() -> None:
            try:
                outcomes.put(ws.recv(timeout(5)))
            except ConcurrencyError as exc:
                outcomes.put(exc)

        threads = [threading.Thread(target=receive) for _ in range(2)]
        for thread in threads:
            thread.start()
        first = outcomes.get(timeout=timeout(5))
        assert isinstance(first, ConcurrencyError)
        ws.send("x")
        assert outcomes.get(timeout=timeout(5)) == "x"
        for thread in threads:
            thread.join(timeout(5))


def test_send_blocks_while_the_peer_does_not_read() -> None:
    """Backpressure: once the server's queue and the TCP buffers are full,
    send() blocks instead of buffering without bound."""
    release = threading.Event()
    conns: queue.Queue[ServerConnection] = queue.Queue()

    def sleepy(ws: ServerConnection) -> None:
        conns.put(ws)
        release.wait(timeout(20))
        for _ in ws:
            pass

    chunk = bytes(1 << 16)
    count = 1000  # 64 MiB: more than loopback buffers hold
    sent = 0
    with running(sleepy, max_queue=2) as srv, connect(url(srv), compression=None) as ws:

        def flood() -> None:
            nonlocal sent
            for _ in range(count):
                ws.send(chunk)
                sent += 1

        sender = threading.Thread(target=flood)
        sender.start()
        server_side = conns.get(timeout=timeout(5))
        sender.join(timeout(1))
        assert sender.is_alive(), "send() never blocked"
        assert sent < count
        assert len(server_side.messages) <= 2 + 2  # paused at the high watermark
        release.set()
        sender.join(timeout(20))
        assert not sender.is_alive() and sent == count


def test_reading_pauses_when_the_queue_is_full() -> None:
    """Flow control: a client that doesn't read stops reading the socket, and
    the server's sends block, until recv() catches up."""
    count = 1000  # 64 MiB: more than loopback buffers hold
    finished = threading.Event()

    def firehose(ws: ServerConnection) -> None:
        for i in range(count):
            ws.send(i.to_bytes(4, "big") * (1 << 14))
        finished.set()
        ws.recv()

    with running(firehose, compression=None) as srv:
        with connect(url(srv), max_queue=4, compression=None) as ws:
            assert not finished.wait(timeout(1)), "the server never had to wait"
            assert len(ws.messages) <= 4 + 2  # one 64 KiB read holds at most 2 more
            for i in range(count):
                assert ws.recv(timeout(5))[:4] == i.to_bytes(4, "big")
            assert finished.wait(timeout(5))


def test_streaming_both_ways_does_not_deadlock(server: Server) -> None:
    """Sends stuck on full buffers in both directions don't stop the readers:
    a thread that writes never holds up the thread that reads."""
    chunk = bytes(1 << 16)
    count = 500  # 32 MiB each way, much more than the buffers hold
    with connect(url(server), compression=None) as ws:
        sender = threading.Thread(target=lambda: [ws.send(chunk) for _ in range(count)])
        sender.start()
        for _ in range(count):
            assert len(ws.recv(timeout(10))) == len(chunk)
        sender.join(timeout(10))
        assert not sender.is_alive()


def test_keepalive_timeout_closes_with_1011() -> None:
    """A server that never answers pings is dropped after ping_timeout."""
    raw = RawServer()
    try:
        accepting = threading.Thread(target=raw.accept)
        accepting.start()
        ws = connect(f"ws://127.0.0.1:{raw.port}/", ping_interval=0.05, ping_timeout=0.1)
        accepting.join(timeout(5))
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout(5))
        assert info.value.sent is not None and info.value.sent.code == 1011
        assert info.value.sent.reason == "keepalive ping timeout"
        ws.close()
        assert raw.peer is not None
        assert raw.peer.read_frame().opcode == 0x9  # the ping nobody answered
    finally:
        raw.close()


def test_server_keepalive_drops_a_silent_client() -> None:
    results: queue.Queue[BaseException] = queue.Queue()

    def handler(ws: ServerConnection) -> None:
        try:
            ws.recv()
        except ConnectionClosedError as exc:
            results.put(exc)

    with running(handler, ping_interval=0.05, ping_timeout=0.1) as srv:
        raw = RawClient(srv.port)
        try:
            raw.handshake()
            assert raw.read_frame().opcode == 0x9  # a ping; don't answer it
            exc = results.get(timeout=timeout(5))
            assert isinstance(exc, ConnectionClosedError)
            assert exc.sent is not None and exc.sent.code == 1011
        finally:
            raw.close()


def test_client_open_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", open_timeout=0.2)
    finally:
        listener.close()


def test_server_open_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="tidewire.server")
    with running(echo, open_timeout=0.2) as srv:
        raw = RawClient(srv.port)  # sends nothing
        try:
            assert raw.read_to_eof() == b""
        finally:
            raw.close()
    assert "timed out" in caplog.text
    assert "Traceback" not in caplog.text


def test_client_errors_are_clear() -> None:
    with pytest.raises(InvalidURI):
        connect("http://example.com/")
    with pytest.raises(ValueError):
        connect("ws://example.com/", compression="brotli")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(OSError):
        connect(f"ws://127.0.0.1:{port}/")


def test_client_on_a_given_socket(server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout(5))
    with connect("ws://tidewire.test/", sock=sock) as ws:
        ws.send("via sock")
        assert ws.recv(timeout(5)) == "via sock"


def test_message_over_max_size_closes_with_1009() -> None:
    with running(echo, max_size=1000) as srv, connect(url(srv)) as ws:
        ws.send(b"x" * 1000)
        assert ws.recv(timeout(5)) == b"x" * 1000
        ws.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout(5))
        assert info.value.code == 1009


def test_client_max_size() -> None:
    def big(ws: ServerConnection) -> None:
        ws.send("y" * 2000)
        ws.recv()

    with running(big) as srv, connect(url(srv), max_size=1000) as ws:
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout(5))
        assert info.value.sent is not None and info.value.sent.code == 1009
