"""HTTP/1.1 persistent connections on the threaded server, over real sockets:
requests answered by ``process_request`` keep their connection with
``http_keepalive=True``; the connection's thread answers them in turn."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.asyncio.rawclient import build_frame, http_request
from tests.conftest import timeout
from tidewire import Headers, Request, Response
from tidewire.sync import Server, ServerConnection

from .helpers import RawClient, running


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


class Api:
    """A ``process_request`` hook that answers every path but / (the upgrade)
    with the path and the body, and notes which connection each request came on."""

    def __init__(self) -> None:
        self.seen: list[tuple[ServerConnection, str]] = []
        self.lock = threading.Lock()

    def __call__(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path == "/":
            return None
        with self.lock:
            self.seen.append((conn, request.path))
        body = request.path.encode() + request.body
        return Response(200, "OK", Headers([("Content-Type", "text/plain")]), body)

    @property
    def paths(self) -> list[str]:
        with self.lock:
            return [path for _, path in self.seen]


@contextlib.contextmanager
def serving(api: Api, **options: Any) -> Iterator[Server]:
    options.setdefault("http_keepalive", True)
    options.setdefault("max_request_body", 1000)
    with running(echo, process_request=api, **options) as srv:
        yield srv


@contextlib.contextmanager
def raw(srv: Server) -> Iterator[RawClient]:
    client = RawClient(srv.port)
    try:
        yield client
    finally:
        client.close()


def get(path: str, *extra: str) -> bytes:
    return http_request("GET", path, b"", *extra)


def closed_by_server(client: RawClient) -> None:
    """Read until the server closes: the end of the stream, or a reset when
    it closed with our bytes unread."""
    try:
        assert client.read_to_eof() == b""
    except ConnectionResetError:
        pass


def test_several_requests_share_one_connection() -> None:
    api = Api()
    with serving(api) as srv, raw(srv) as client:
        for i in range(5):
            client.sock.sendall(http_request("POST", f"/api/{i}", b"{}"))
            response = client.read_response()
            assert (response.status, response.body) == (200, f"/api/{i}{{}}".encode())
            assert response.get("Connection") == "keep-alive"
            assert response.get("Keep-Alive") == f"timeout=5, max={1000 - i - 1}"
        assert len({conn for conn, _ in api.seen}) == 1


def test_pipelined_requests_are_answered_in_order() -> None:
    api = Api()
    with serving(api) as srv, raw(srv) as client:
        client.sock.sendall(get("/a") + http_request("POST", "/b", b"x") + get("/c"))
        assert [client.read_response().body for _ in range(3)] == [b"/a", b"/bx", b"/c"]


def test_a_client_that_says_close_and_the_request_limit_close_the_connection() -> None:
    api = Api()
    with serving(api, http_max_requests=3) as srv:
        with raw(srv) as client:
            client.sock.sendall(get("/1") + get("/2", "Connection: close") + get("/3"))
            assert client.read_response().get("Connection") == "keep-alive"
            assert client.read_response().get("Connection") == "close"
            closed_by_server(client)
        with raw(srv) as client:
            client.sock.sendall(b"".join(get(f"/{i}") for i in range(5)))
            answers = [client.read_response() for _ in range(3)]
            assert answers[2].get("Connection") == "close"
            closed_by_server(client)
        assert api.paths == ["/1", "/2", "/0", "/1", "/2"]


def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    api = Api()
    with serving(api, http_idle_timeout=0.2) as srv, raw(srv) as client:
        client.sock.sendall(get("/1"))
        client.read_response()
        closed_by_server(client)


def test_the_open_timeout_spares_an_idle_kept_connection() -> None:
    api = Api()
    with serving(api, open_timeout=0.2, http_idle_timeout=timeout(30)) as srv, raw(srv) as kept:
        kept.sock.sendall(get("/1"))
        kept.read_response()
        with raw(srv) as probe:  # says nothing: the open timeout drops it
            closed_by_server(probe)
        kept.sock.sendall(get("/2"))
        assert kept.read_response().body == b"/2"


def test_a_slowloris_is_dropped_despite_its_drip() -> None:
    api = Api()
    with serving(api, open_timeout=0.3, http_idle_timeout=0.3) as srv, raw(srv) as client:
        client.sock.sendall(get("/1"))
        client.read_response()
        client.sock.settimeout(0.02)
        deadline = time.monotonic() + timeout(10)
        # A head that never ends, one byte at a time, slowly: the attack.
        for byte in b"GET /2 HTTP/1.1\r\nX-Slow: " + b"a" * 2000:
            assert time.monotonic() < deadline, "the server held a slowloris"
            try:
                client.sock.sendall(bytes([byte]))
                if client.sock.recv(1) == b"":
                    break  # closed
            except TimeoutError:
                continue  # still open: go on dripping
            except (ConnectionResetError, BrokenPipeError):
                break
        else:
            pytest.fail("the server held a slowloris")
        assert api.paths == ["/1"]


def test_a_bad_request_closes_only_its_connection() -> None:
    api = Api()
    with serving(api) as srv, raw(srv) as bad, raw(srv) as good:
        good.sock.sendall(get("/g1"))
        good.read_response()
        bad.sock.sendall(get("/b1") + b"GET /b2 HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n")
        assert bad.read_response().body == b"/b1"
        refusal = bad.read_response()
        assert refusal.status == 400 and b"header line without a colon" in refusal.body
        closed_by_server(bad)
        good.sock.sendall(get("/g2"))
        assert good.read_response().body == b"/g2"


def test_upgrade_after_plain_requests() -> None:
    api = Api()
    with serving(api) as srv, raw(srv) as client:
        for path in ("/healthz", "/api"):
            client.sock.sendall(get(path))
            assert client.read_response().body == path.encode()
        client.handshake()
        client.sock.sendall(build_frame(0x1, b"hello"))
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (0x1, b"hello")


def test_shutdown_closes_idle_kept_connections() -> None:
    api = Api()
    client = None
    try:
        with serving(api) as srv:
            client = RawClient(srv.port)
            client.sock.sendall(get("/1"))
            client.read_response()
        closed_by_server(client)
    finally:
        if client is not None:
            client.close()


@pytest.mark.parametrize("keepalive", [True, False])
def test_a_closing_answer_reaches_a_client_that_sent_more(keepalive: bool) -> None:
    api = Api()
    refused = http_request("POST", "/big", b"x" * 5000)
    with serving(api, http_keepalive=keepalive) as srv:
        with raw(srv) as client:
            # Pipelined requests and a body the server never reads: closing with
            # them unread would reset the connection instead of ending it.
            client.sock.sendall(get("/1", "Connection: close") + refused * 100)
            assert client.read_response().get("Connection") == "close"
            assert client.read_to_eof() == b""
        with raw(srv) as client:
            client.sock.sendall(refused * 100)
            assert client.read_response().status == 413
            assert client.read_to_eof() == b""
            # The server still reads (and drops) what comes until we close.
            client.sock.sendall(refused)
            assert client.sock.recv(10) == b""
