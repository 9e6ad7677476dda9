"""HTTP/1.1 persistent connections on the asyncio server, over real sockets:
requests answered by ``process_request`` keep their connection with
``http_keepalive=True``, until the client or the answer says close, the idle
timeout, the request limit, or a malformed request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

import tidewire
from tests.asyncio.rawclient import RawClient, build_frame, http_request
from tests.conftest import timeout
from tidewire import Headers, Request, Response, ServerConnection

T = TypeVar("T")


def within(aw: Awaitable[T], seconds: float = 5) -> Awaitable[T]:
    return asyncio.wait_for(aw, timeout(seconds))


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class Api:
    """A ``process_request`` hook that answers every path but / (the upgrade)
    with the path and the body, and notes which connection each request came on."""

    def __init__(self) -> None:
        self.seen: list[tuple[ServerConnection, str]] = []
        self.hold: dict[str, asyncio.Event] = {}  # paths answered once their event is set
        self.holding = asyncio.Event()  # set when a held request arrives

    async def __call__(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path == "/":
            return None
        self.seen.append((conn, request.path))
        if request.path in self.hold:
            self.holding.set()
            await self.hold[request.path].wait()
        body = request.path.encode() + request.body
        return Response(200, "OK", Headers([("Content-Type", "text/plain")]), body)

    @property
    def connections(self) -> set[ServerConnection]:
        return {conn for conn, _ in self.seen}


@asynccontextmanager
async def serving(api: Callable[..., Any], **options: Any) -> AsyncIterator[tidewire.Server]:
    options.setdefault("http_keepalive", True)
    options.setdefault("max_request_body", 1000)
    async with tidewire.serve(echo, "127.0.0.1", 0, process_request=api, **options) as srv:
        yield srv


@asynccontextmanager
async def raw(srv: tidewire.Server) -> AsyncIterator[RawClient]:
    client = await RawClient.connect(srv.port)
    try:
        yield client
    finally:
        await client.close()


def get(path: str, *extra: str) -> bytes:
    return http_request("GET", path, b"", *extra)


async def test_several_requests_share_one_connection() -> None:
    api = Api()
    async with serving(api) as srv, raw(srv) as client:
        for i in range(5):
            await client.write(http_request("POST", f"/api/{i}", b"{}"))
            response = await client.read_response()
            assert (response.status, response.body) == (200, f"/api/{i}{{}}".encode())
            assert response.get("Connection") == "keep-alive"
            assert response.get("Keep-Alive") == f"timeout=5, max={1000 - i - 1}"
        assert len(api.connections) == 1 and len(srv.connections) == 1


async def test_pipelined_requests_are_answered_in_order() -> None:
    api = Api()
    api.hold["/slow"] = release = asyncio.Event()
    async with serving(api) as srv, raw(srv) as client:
        await client.write(get("/slow") + get("/a") + http_request("POST", "/b", b"x") + get("/c"))
        await within(api.holding.wait())
        # The others wait for the answer to /slow.
        assert [path for _, path in api.seen] == ["/slow"]
        release.set()
        bodies = [(await client.read_response()).body for _ in range(4)]
        assert bodies == [b"/slow", b"/a", b"/bx", b"/c"]
        assert len(api.connections) == 1


async def test_an_answer_goes_out_while_the_next_pipelined_one_waits() -> None:
    api = Api()
    api.hold["/slow"] = release = asyncio.Event()
    async with serving(api) as srv, raw(srv) as client:
        await client.write(get("/a") + get("/slow") + get("/b"))
        assert (await client.read_response()).body == b"/a"  # /slow still held
        release.set()
        assert [(await client.read_response()).body for _ in range(2)] == [b"/slow", b"/b"]


async def test_a_client_that_says_close_is_answered_then_closed() -> None:
    api = Api()
    async with serving(api) as srv, raw(srv) as client:
        await client.write(get("/1") + get("/2", "Connection: close") + get("/3"))
        assert (await client.read_response()).get("Connection") == "keep-alive"
        last = await client.read_response()
        assert last.body == b"/2" and last.get("Connection") == "close"
        await client.expect_eof()
        assert [path for _, path in api.seen] == ["/1", "/2"]


async def test_the_last_request_allowed_closes_the_connection() -> None:
    api = Api()
    async with serving(api, http_max_requests=3) as srv, raw(srv) as client:
        await client.write(b"".join(get(f"/{i}") for i in range(5)))
        answers = [await client.read_response() for _ in range(3)]
        keep_alive = [r.get("Keep-Alive") for r in answers]
        assert keep_alive == ["timeout=5, max=2", "timeout=5, max=1", None]
        assert answers[2].get("Connection") == "close"
        await client.expect_eof()
        assert [path for _, path in api.seen] == ["/0", "/1", "/2"]


async def test_without_keepalive_each_answer_closes() -> None:
    api = Api()
    async with serving(api, http_keepalive=False) as srv, raw(srv) as client:
        await client.write(get("/1") + get("/2"))
        response = await client.read_response()
        assert response.body == b"/1" and response.get("Connection") == "close"
        await client.expect_eof()


async def test_an_idle_connection_is_closed_after_the_idle_timeout() -> None:
    api = Api()
    async with serving(api, http_idle_timeout=0.2) as srv, raw(srv) as client:
        await client.write(get("/1"))
        assert (await client.read_response()).get("Keep-Alive") == "timeout=0, max=999"
        await client.expect_eof()  # the server closed it, well before this gives up
        ((conn, _),) = api.seen
        await within(conn.wait_closed())
        assert srv.connections == set()


async def test_the_open_timeout_spares_an_idle_kept_connection() -> None:
    api = Api()
    async with serving(api, open_timeout=0.2, http_idle_timeout=timeout(30)) as srv:
        async with raw(srv) as kept:
            await kept.write(get("/1"))
            await kept.read_response()
            # The probe says nothing: the open timeout drops it. By then the kept
            # connection has been idle longer than the open timeout.
            async with raw(srv) as probe:
                await probe.expect_eof()
            await kept.write(get("/2"))
            assert (await kept.read_response()).body == b"/2"


async def test_a_slowloris_is_dropped_despite_its_drip() -> None:
    api = Api()
    async with serving(api, open_timeout=0.3, http_idle_timeout=0.3) as srv, raw(srv) as client:
        await client.write(get("/1"))
        await client.read_response()
        # A head that never ends, far longer than it has time to send.
        drip = b"GET /2 HTTP/1.1\r\nX-Slow: " + b"a" * 2000

        async def dripping() -> None:
            for byte in drip:
                client.writer.write(bytes([byte]))
                await asyncio.sleep(0.02)  # one byte at a time, slowly: the attack

        task = asyncio.ensure_future(dripping())
        try:
            await closed_by_server(client)
        finally:
            task.cancel()
        assert [path for _, path in api.seen] == ["/1"]


async def closed_by_server(client: RawClient) -> None:
    """Read until the server closes: the end of the stream, or a reset when
    it closed with our bytes unread."""
    try:
        await client.expect_eof(seconds=10)
    except ConnectionResetError:
        pass


async def test_a_bad_request_closes_only_its_connection(caplog: pytest.LogCaptureFixture) -> None:
    api = Api()
    caplog.set_level(logging.INFO)
    async with serving(api) as srv, raw(srv) as bad, raw(srv) as good:
        await good.write(get("/g1"))
        await good.read_response()
        await bad.write(get("/b1"))
        await bad.read_response()
        await bad.write(b"GET /b2 HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n")
        refusal = await bad.read_response()
        assert refusal.status == 400 and refusal.get("Connection") == "close"
        assert b"header line without a colon" in refusal.body
        await bad.expect_eof()
        await good.write(get("/g2"))
        assert (await good.read_response()).body == b"/g2"
    assert "Traceback" not in caplog.text


async def test_a_chunked_body_is_refused_with_411_and_closes() -> None:
    api = Api()
    async with serving(api) as srv, raw(srv) as client:
        await client.write(get("/1"))
        await client.read_response()
        await client.write(
            b"POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        assert (await client.read_response()).status == 411
        await client.expect_eof()


async def test_upgrade_after_plain_requests() -> None:
    api = Api()
    async with serving(api) as srv, raw(srv) as client:
        for path in ("/healthz", "/api"):
            await client.write(get(path))
            assert (await client.read_response()).body == path.encode()
        await client.handshake()
        await client.write(build_frame(0x1, b"hello"))
        frame = await client.read_frame()
        assert (frame.opcode, frame.payload) == (0x1, b"hello")
        assert len(srv.connections) == 1


async def test_closing_the_server_closes_idle_kept_connections() -> None:
    api = Api()
    async with serving(api) as srv, raw(srv) as client:
        await client.write(get("/1"))
        await client.read_response()
        srv.close()
        await client.expect_eof()
        await within(srv.wait_closed())


@pytest.mark.parametrize("keepalive", [True, False])
async def test_a_closing_answer_reaches_a_client_that_sent_more(keepalive: bool) -> None:
    api = Api()
    async with serving(api, http_keepalive=keepalive) as srv, raw(srv) as client:
        # Pipelined requests and a body the server never reads: closing with
        # them unread would reset the connection instead of ending it.
        refused = http_request("POST", "/big", b"x" * 5000)
        await client.write(get("/1", "Connection: close") + refused * 100)
        assert (await client.read_response()).get("Connection") == "close"
        await client.expect_eof()
    async with serving(api, http_keepalive=keepalive) as srv, raw(srv) as client:
        await client.write(refused * 100)
        assert (await client.read_response()).status == 413
        await client.expect_eof()
