"""Bad input gets the RFC's answer, and the server keeps serving everyone else.

Each test talks to a real server over a raw socket (``rawclient``), with the
bytes written at once or one at a time, while a healthy tidewire client on the
same server keeps echoing. Malformed handshakes get an HTTP refusal whose
plain-text body says what was wrong; malformed frames get a close frame with
1002, 1007 or 1009 and the end of the stream; a client that drips its handshake
is dropped at the open timeout. No traceback reaches the log for any of it.

Every frame case ends on the byte that completes the violation: nothing
arrives after the server has given up on the connection, so what the client
reads doesn't depend on how fast the server closes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import tidewire
from tests.asyncio.rawclient import (
    RawClient,
    accept_key,
    build_frame,
    new_key,
    read_frame,
    upgrade_request,
)
from tests.conftest import timeout

MAX_SIZE = 64 * 1024
OPEN_TIMEOUT = timeout(1)
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # the sample key of RFC 6455 section 1.3

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
DEFLATE = [("Sec-WebSocket-Extensions", "permessage-deflate")]


# The environment of every test: logs, loop errors, a server, a healthy client.


@dataclass
class Watch:
    """What reaches the log and the loop's exception handler during a test."""

    caplog: pytest.LogCaptureFixture
    loop_errors: list[dict[str, Any]]

    def assert_clean(self) -> None:
        gc.collect()  # "exception was never retrieved" shows up when a task dies
        messages = [context.get("message") for context in self.loop_errors]
        assert not self.loop_errors, f"loop exception handler called: {messages}"
        with_traceback = [
            f"{r.name}: {r.getMessage()}"
            for r in self.caplog.records
            if r.exc_info or r.exc_text or r.stack_info
        ]
        assert not with_traceback, f"log records with a traceback: {with_traceback}"
        assert "Traceback" not in self.caplog.text


@pytest.fixture
async def watch(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Watch]:
    caplog.set_level(logging.DEBUG, logger="tidewire")
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield Watch(caplog, errors)
    finally:
        loop.set_exception_handler(previous)


async def echo(ws: tidewire.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class Healthy:
    """A well-behaved client that echoes, once or in a loop in the background."""

    def __init__(self, ws: tidewire.ClientConnection) -> None:
        self.ws = ws
        self.count = 0
        self._stop = False

    async def echo(self) -> None:
        n = self.count
        for message in (f"healthy {n}", f"healthy {n}".encode()):
            await asyncio.wait_for(self.ws.send(message), timeout(5))
            assert await asyncio.wait_for(self.ws.recv(), timeout(5)) == message
        self.count += 1

    def echo_in_background(self) -> asyncio.Task[None]:
        """Echo until ``stop()``, at least once."""
        self._stop = False

        async def loop() -> None:
            await self.echo()
            while not self._stop:
                await self.echo()

        return asyncio.create_task(loop())

    def stop(self) -> None:
        self._stop = True


class Env:
    def __init__(self, server: tidewire.Server, healthy: Healthy, watch: Watch) -> None:
        self.server = server
        self.healthy = healthy
        self.watch = watch

    @property
    def port(self) -> int:
        return self.server.port

    @contextlib.asynccontextmanager
    async def others_served(self) -> AsyncIterator[None]:
        """Around a bad interaction: the healthy client echoes before, all
        through and after it; then a new client connects and echoes; and the
        bad connection is gone from the server."""
        await self.healthy.echo()
        before = self.healthy.count
        task = self.healthy.echo_in_background()
        try:
            yield
        finally:
            self.healthy.stop()
            await asyncio.wait_for(task, timeout(10))  # raises if an echo failed
        assert self.healthy.count > before
        await self.healthy.echo()
        assert len(self.server.connections) == 1, self.server.connections
        uri = f"ws://127.0.0.1:{self.port}/"
        async with tidewire.connect(uri, open_timeout=timeout(5)) as fresh:
            await fresh.send("fresh")
            assert await asyncio.wait_for(fresh.recv(), timeout(5)) == "fresh"

    async def finish(self) -> None:
        """Close everything cleanly, then check the log and the loop."""
        await asyncio.wait_for(self.healthy.ws.close(), timeout(10))
        assert self.healthy.ws.close_code == 1000
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), timeout(10))
        self.watch.assert_clean()


@pytest.fixture
async def env(watch: Watch) -> AsyncIterator[Env]:
    async with tidewire.serve(
        echo, "127.0.0.1", 0, max_size=MAX_SIZE, open_timeout=OPEN_TIMEOUT
    ) as server:
        uri = f"ws://127.0.0.1:{server.port}/"
        ws = await tidewire.connect(uri, open_timeout=timeout(5))
        try:
            yield Env(server, Healthy(ws), watch)
        finally:
            await asyncio.wait_for(ws.close(), timeout(10))


MODES = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


# Malformed handshakes.


def request(
    *,
    line: str = "GET / HTTP/1.1",
    drop: tuple[str, ...] = (),
    add: list[tuple[str, str]] | None = None,
) -> bytes:
    """A valid upgrade request, less the ``drop`` fields, plus the ``add`` ones."""
    fields = [
        ("Host", "127.0.0.1"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ]
    fields = [(k, v) for k, v in fields if k not in drop] + (add or [])
    return (line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode()


@dataclass(frozen=True)
class HandshakeCase:
    id: str
    data: bytes
    status: int
    needle: str  # what the body must name
    small: bool = True  # small enough to send byte by byte


def _key(n: int) -> str:
    return base64.b64encode(bytes(range(n))).decode()


HANDSHAKE_CASES = [
    HandshakeCase("missing-upgrade", request(drop=("Upgrade",)), 426, "Upgrade"),
    HandshakeCase(
        "upgrade-not-websocket",
        request(drop=("Upgrade",), add=[("Upgrade", "h2c")]),
        426,
        "Upgrade",
    ),
    HandshakeCase("duplicate-upgrade", request(add=[("Upgrade", "websocket")]), 400, "Upgrade"),
    HandshakeCase("missing-connection", request(drop=("Connection",)), 426, "Connection"),
    HandshakeCase(
        "connection-without-upgrade",
        request(drop=("Connection",), add=[("Connection", "keep-alive")]),
        426,
        "Connection",
    ),
    HandshakeCase(
        "duplicate-connection", request(add=[("Connection", "Upgrade")]), 400, "Connection"
    ),
    HandshakeCase("missing-key", request(drop=("Sec-WebSocket-Key",)), 400, "Sec-WebSocket-Key"),
    HandshakeCase(
        "duplicate-key",
        request(add=[("Sec-WebSocket-Key", _key(16))]),
        400,
        "Sec-WebSocket-Key",
    ),
    *(
        HandshakeCase(
            f"key-{name}",
            request(drop=("Sec-WebSocket-Key",), add=[("Sec-WebSocket-Key", key)]),
            400,
            "Sec-WebSocket-Key",
        )
        for name, key in [
            ("15-bytes", _key(15)),
            ("17-bytes", _key(17)),
            ("empty", ""),
            ("not-base64", "this is not base64!!"),
            ("unpadded", _key(16).rstrip("=")),
        ]
    ),
    HandshakeCase(
        "missing-version",
        request(drop=("Sec-WebSocket-Version",)),
        400,
        "Sec-WebSocket-Version",
    ),
    *(
        HandshakeCase(
            f"version-{version}",
            request(drop=("Sec-WebSocket-Version",), add=[("Sec-WebSocket-Version", version)]),
            426,
            "Sec-WebSocket-Version",
        )
        for version in ["8", "14", "thirteen"]
    ),
    HandshakeCase(
        "duplicate-version",
        request(add=[("Sec-WebSocket-Version", "13")]),
        400,
        "Sec-WebSocket-Version",
    ),
    HandshakeCase("missing-host", request(drop=("Host",)), 400, "Host"),
    HandshakeCase("post", request(line="POST / HTTP/1.1"), 405, "POST"),
    HandshakeCase("http-1.0", request(line="GET / HTTP/1.0"), 505, "HTTP/1.0"),
    HandshakeCase("garbage-request-line", request(line="HELLO"), 400, "HELLO"),
    HandshakeCase(
        "header-without-colon",
        request()[:-2] + b"NoColonHere\r\n\r\n",
        400,
        "NoColonHere",
    ),
    HandshakeCase(
        "headers-64KiB",
        request(add=[(f"X-Filler-{i}", "x" * 1000) for i in range(64)]),
        431,
        "header",
        small=False,
    ),
    HandshakeCase(
        "header-line-10KiB",
        request(add=[("X-Long", "x" * 10_000)]),
        431,
        "header",
        small=False,
    ),
    HandshakeCase(
        "200-header-fields",
        request(add=[(f"X-Field-{i}", "1") for i in range(200)]),
        431,
        "header",
        small=False,
    ),
    HandshakeCase(
        # 16 KiB of request line, and no end to it.
        "endless-request-line",
        b"GET /" + b"a" * (16 * 1024),
        414,
        "line",
        small=False,
    ),
]


def _handshake_params() -> list[Any]:
    params = []
    for case in HANDSHAKE_CASES:
        params.append(pytest.param(case, False, id=f"{case.id}-whole"))
        if case.small:
            params.append(pytest.param(case, True, id=f"{case.id}-bytewise"))
    return params


@pytest.mark.parametrize(("case", "bytewise"), _handshake_params())
async def test_bad_handshake(env: Env, case: HandshakeCase, bytewise: bool) -> None:
    async with env.others_served():
        client = await RawClient.connect(env.port)
        try:
            await client.write(case.data, bytewise=bytewise)
            response = await client.read_refusal()  # then the end of the stream
        finally:
            await client.close()

    assert response.status == case.status, response
    assert response.get("Content-Type") == "text/plain; charset=utf-8"
    body = response.body.decode()
    assert body.strip(), "the body must say what was wrong"
    assert case.needle in body, body
    if case.status == 426:
        # RFC 9110 section 15.5.22: a 426 names the protocol to upgrade to.
        assert "websocket" in [v.lower() for v in response.get_all("Upgrade")], response
    if case.id.startswith("version-"):
        # RFC 6455 section 4.4: tell the client which versions we speak.
        assert response.get_all("Sec-WebSocket-Version") == ["13"], response
    if case.status == 405:
        # RFC 9110 section 15.5.6: a 405 lists the methods that are allowed.
        allow = response.get("Allow")
        assert allow is not None and "GET" in [m.strip() for m in allow.split(",")], response
    await env.finish()


async def test_dripping_handshake_is_dropped_at_open_timeout(env: Env) -> None:
    """A client that sends its handshake one byte at a time, too slowly to
    finish within the open timeout, is disconnected when it expires."""
    # Not a divisor of the timeout: the drop comes between two bytes, not
    # while one is being written.
    interval = OPEN_TIMEOUT / 7.5
    # A valid start of a request, then a header that never ends.
    data = upgrade_request(new_key())[:-2] + b"X-Drip: " + b"." * 1000
    loop = asyncio.get_running_loop()
    async with env.others_served():
        client = await RawClient.connect(env.port)
        start = loop.time()
        eof = asyncio.create_task(client.reader.read())
        try:
            sent = 0
            while sent < len(data) and not eof.done():
                await client.write(data[sent : sent + 1])
                sent += 1
                await asyncio.wait({eof}, timeout=interval)
            await asyncio.wait({eof}, timeout=timeout(5))
            assert eof.done(), "the server must close the connection"
        finally:
            elapsed = loop.time() - start
            eof.cancel()
            await client.close()
    try:
        received = eof.result()
    except ConnectionResetError:
        received = b""  # a dropped byte raced with the close: a reset is a close too
    assert received == b"", f"expected a bare close, got {received[:200]!r}"
    assert 1 < sent < len(data), "the server must drop the drip midway"
    assert OPEN_TIMEOUT * 0.9 <= elapsed <= OPEN_TIMEOUT + timeout(5), elapsed
    await env.finish()


# Malformed frames.


@dataclass(frozen=True)
class FrameCase:
    id: str
    bad: bytes  # ends on the byte that completes the violation, unless cut is set
    code: int
    prelude: bytes = b""  # valid frames sent at once before the bad bytes
    deflate: bool = False
    cut: int | None = None  # bytes of ``bad`` that complete the violation


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def deflate_bomb() -> FrameCase:
    """A compressed message of 32 KiB (half the limit on the wire) that inflates
    to 32 MiB of zeros (512 times the limit)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(bytes(32 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    data = data[:-4]  # RFC 7692 section 7.2.1
    assert len(data) < MAX_SIZE // 2
    frame = build_frame(BINARY, data, rsv1=True)
    header = len(frame) - len(data)
    # Where the inflated size passes the limit: sent byte by byte, the frame
    # stops there, since the server stops reading there.
    inflater = zlib.decompressobj(-15)
    inflated = 0
    for i in range(len(data)):
        inflated += len(inflater.decompress(data[i : i + 1]))
        if inflated > MAX_SIZE:
            break
    return FrameCase("deflate-bomb", frame, 1009, deflate=True, cut=header + i + 1)


FRAME_CASES = [
    # Reserved opcodes, data and control.
    *(
        FrameCase(f"reserved-opcode-{opcode:#x}", build_frame(opcode), 1002)
        for opcode in (0x3, 0x7, 0xB, 0xF)
    ),
    # Reserved bits with no extension to define them.
    FrameCase("rsv1-no-extension", build_frame(TEXT, b"", rsv1=True), 1002),
    FrameCase("rsv2", build_frame(TEXT, b"", rsv2=True), 1002),
    FrameCase("rsv3", build_frame(BINARY, b"", rsv3=True), 1002),
    FrameCase("rsv2-with-deflate", build_frame(TEXT, b"", rsv2=True), 1002, deflate=True),
    FrameCase("rsv1-on-ping-with-deflate", build_frame(PING, b"", rsv1=True), 1002, deflate=True),
    # Control frames: at most 125 bytes, never fragmented. The length alone
    # breaks the rule, so the 126-byte payload isn't sent.
    FrameCase("ping-126-bytes", build_frame(PING, length=126), 1002),
    FrameCase("close-126-bytes", build_frame(CLOSE, length=126), 1002),
    FrameCase("fragmented-ping", build_frame(PING, b"", fin=False), 1002),
    FrameCase("fragmented-pong", build_frame(PONG, b"", fin=False), 1002),
    FrameCase("fragmented-close", build_frame(CLOSE, b"", fin=False), 1002),
    # A client must mask.
    FrameCase("unmasked-text", build_frame(TEXT, b"", mask=False), 1002),
    FrameCase("unmasked-close", build_frame(CLOSE, b"", mask=False), 1002),
    # Fragmentation out of order.
    FrameCase("continuation-first", build_frame(CONT, b""), 1002),
    FrameCase(
        "text-inside-fragmented",
        build_frame(TEXT, b""),
        1002,
        prelude=build_frame(TEXT, b"a", fin=False),
    ),
    # Close frames: no 1-byte payload, only codes that may be sent.
    FrameCase("close-1-byte", build_frame(CLOSE, b"\x03"), 1002),
    *(
        FrameCase(f"close-code-{code}", build_frame(CLOSE, close_payload(code)), 1002)
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
    ),
    # Invalid UTF-8.
    FrameCase("text-invalid-byte", build_frame(TEXT, b"hello \xff"), 1007),
    FrameCase("text-surrogate", build_frame(TEXT, b"ok \xed\xa0"), 1007),
    FrameCase("text-overlong", build_frame(TEXT, b"\xc0"), 1007),
    FrameCase("text-truncated", build_frame(TEXT, b"caf\xc3"), 1007),
    FrameCase(
        "text-invalid-across-fragments",
        build_frame(CONT, b"\x28"),
        1007,
        prelude=build_frame(TEXT, b"caf\xc3", fin=False),
    ),
    FrameCase(
        "text-truncated-across-fragments",
        build_frame(CONT, b""),
        1007,
        prelude=build_frame(TEXT, b"caf\xc3", fin=False),
    ),
    FrameCase("close-reason-invalid", build_frame(CLOSE, close_payload(1000, b"\xff")), 1007),
    FrameCase(
        "close-reason-surrogate",
        build_frame(CLOSE, close_payload(1000, b"\xed\xa0\x80")),
        1007,
    ),
    # Lengths: the most significant bit of a 64-bit length must be 0.
    FrameCase("length-2to63", build_frame(BINARY, length=1 << 63), 1002),
    FrameCase("length-2to64-minus-1", build_frame(TEXT, length=(1 << 64) - 1), 1002),
    # Over the limit: announced in one frame, or reached by fragments.
    FrameCase("frame-over-limit", build_frame(BINARY, length=MAX_SIZE + 1), 1009),
    FrameCase("text-frame-over-limit", build_frame(TEXT, length=4 * MAX_SIZE), 1009),
    FrameCase(
        "fragments-over-limit",
        build_frame(CONT, length=MAX_SIZE // 2),
        1009,
        prelude=build_frame(BINARY, bytes(MAX_SIZE // 2 + 1), fin=False),
    ),
    deflate_bomb(),
]


@MODES
@pytest.mark.parametrize("case", FRAME_CASES, ids=[c.id for c in FRAME_CASES])
async def test_bad_frame(env: Env, case: FrameCase, bytewise: bool) -> None:
    bad = case.bad[: case.cut] if bytewise and case.cut is not None else case.bad
    async with env.others_served():
        client = await RawClient.connect(env.port)
        try:
            response = await client.handshake(DEFLATE if case.deflate else None)
            extensions = response.get_all("Sec-WebSocket-Extensions")
            if case.deflate:
                assert [e.split(";")[0] for e in extensions] == ["permessage-deflate"]
            else:
                assert extensions == []
            await client.write(case.prelude)
            await client.write(bad, bytewise=bytewise)
            frame = await client.read_frame()
            code, reason = frame.close_code_reason()
            await client.expect_eof()
        finally:
            await client.close()

    assert (code, frame.fin, frame.rsv) == (case.code, True, 0), reason
    assert reason, "the close reason must say what was wrong"
    await env.finish()


# The client side: a server must not mask its frames.


@MODES
async def test_client_fails_on_masked_server_frame(watch: Watch, bytewise: bool) -> None:
    frame = build_frame(TEXT, b"hello", mask=True)
    if bytewise:
        frame = frame[:6]  # the mask bit and key break the rule; stop there
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[tuple[Any, bytes]] = loop.create_future()

    async def raw_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout(5))
            keys = [
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            ]
            assert len(keys) == 1, head
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\n"
                b"Upgrade: websocket\r\n"
                b"Connection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: %s\r\n\r\n" % accept_key(keys[0]).encode()
            )
            await writer.drain()
            chunks = [frame[i : i + 1] for i in range(len(frame))] if bytewise else [frame]
            for chunk in chunks:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), timeout(5))
            close = await read_frame(reader)
            rest = await asyncio.wait_for(reader.read(), timeout(5))
            outcome.set_result((close, rest))
        except Exception as exc:
            outcome.set_exception(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(raw_server, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        ws = await tidewire.connect(f"ws://127.0.0.1:{port}/", open_timeout=timeout(5))
        with pytest.raises(tidewire.ConnectionClosedError) as info:
            await asyncio.wait_for(ws.recv(), timeout(5))
        close, rest = await asyncio.wait_for(outcome, timeout(5))
        await asyncio.wait_for(ws.wait_closed(), timeout(5))
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), timeout(5))

    assert info.value.sent is not None and info.value.sent.code == 1002, info.value
    assert info.value.sent.reason, "the close reason must say what was wrong"
    assert info.value.rcvd is None
    assert close.masked, "a client must mask its frames"
    assert close.close_code_reason() == (1002, info.value.sent.reason)
    assert rest == b"", "the client must close the connection after failing it"
    watch.assert_clean()
