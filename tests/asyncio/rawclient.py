"""A WebSocket peer written by hand on asyncio streams, for feeding bad input.

Nothing here uses tidewire: frames are built with ``struct`` and the opening
handshake is plain text, so a test controls every byte and every write.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from dataclasses import dataclass, field

from tests.conftest import timeout

__all__ = [
    "GUID",
    "HttpResponse",
    "RawClient",
    "accept_key",
    "build_frame",
    "http_request",
    "new_key",
    "parse_http_response",
    "read_frame",
    "upgrade_request",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MASK_KEY = b"\x37\xfa\x21\x3d"


def new_key() -> str:
    """A valid Sec-WebSocket-Key: 16 random bytes in base64."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for ``key`` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(
    key: str,
    *,
    extra: list[tuple[str, str]] | None = None,
    path: str = "/",
) -> bytes:
    """A valid upgrade request head, with ``extra`` header fields appended."""
    lines = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{name}: {value}" for name, value in extra or ()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_request(method: str, path: str, body: bytes = b"", *extra: str) -> bytes:
    """A plain HTTP/1.1 request, with ``extra`` header lines ("Name: value");
    a body comes with its Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame, masked by default as a client's must be.

    ``length`` puts another length in the header than ``len(payload)``: a header
    that announces a payload which is not (or not all) sent. Lengths go in the
    shortest form (7 bits, 16 bits, 64 bits), and a 64-bit one is written as is,
    most significant bit included.
    """
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    b0 |= (0x10 if rsv3 else 0) | opcode
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", b0, mbit | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return header + payload
    return header + MASK_KEY + _xor(payload, MASK_KEY)


def _xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


@dataclass
class Frame:
    fin: bool
    rsv: int  # the three RSV bits, as in the first byte (0x70 mask)
    opcode: int
    masked: bool
    payload: bytes

    def close_code_reason(self) -> tuple[int, str]:
        """Code and reason of a close frame, checked as RFC 6455 section 5.5.1 asks."""
        assert self.opcode == 0x8, f"expected a close frame, got opcode {self.opcode:#x}"
        assert len(self.payload) >= 2, f"close frame without a code: {self.payload!r}"
        assert len(self.payload) <= 125
        (code,) = struct.unpack("!H", self.payload[:2])
        return code, self.payload[2:].decode()


async def read_frame(reader: asyncio.StreamReader, *, seconds: float = 5) -> Frame:
    """Read one whole frame, unmasking it if it is masked; bounded in time."""

    async def read() -> Frame:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await reader.readexactly(8))
        masked = bool(b1 & 0x80)
        key = await reader.readexactly(4) if masked else b""
        payload = await reader.readexactly(n)
        if masked:
            payload = _xor(payload, key)
        return Frame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, masked, payload)

    return await asyncio.wait_for(read(), timeout(seconds))


@dataclass
class HttpResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None


def parse_http_response(data: bytes) -> tuple[HttpResponse, bytes]:
    """Split ``data`` into a response head and what follows it."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response head in {data[:200]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1", status_line
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        assert colon, f"bad header line {line!r}"
        headers.append((name, value.strip()))
    return HttpResponse(int(status), reason, headers), rest


class RawClient:
    """A TCP connection to a WebSocket server, driven byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout(5)
        )
        return cls(reader, writer)

    async def write(self, data: bytes, *, bytewise: bool = False) -> None:
        """Write ``data`` at once, or one byte per write with a drain after each."""
        if not bytewise:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), timeout(5))
            return
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await asyncio.wait_for(self.writer.drain(), timeout(5))

    async def read_to_eof(self, seconds: float = 5) -> bytes:
        """Everything the server sends until it closes the connection."""
        return await asyncio.wait_for(self.reader.read(), timeout(seconds))

    async def read_refusal(self, seconds: float = 5) -> HttpResponse:
        """An HTTP response that ends with the connection, its body checked
        against Content-Length."""
        data = await self.read_to_eof(seconds)
        response, body = parse_http_response(data)
        length = response.get("Content-Length")
        assert length is not None, "a refusal without Content-Length"
        assert int(length) == len(body), f"Content-Length {length}, body {body!r}"
        response.body = body
        return response

    async def read_response(self, seconds: float = 5) -> HttpResponse:
        """One HTTP response on a connection that may stay open: the head,
        then as many body bytes as Content-Length says."""

        async def read() -> HttpResponse:
            head = await self.reader.readuntil(b"\r\n\r\n")
            response, rest = parse_http_response(head)
            assert not rest
            length = response.get("Content-Length")
            assert length is not None, f"a response without Content-Length: {response}"
            response.body = await self.reader.readexactly(int(length))
            return response

        return await asyncio.wait_for(read(), timeout(seconds))

    async def handshake(self, extra: list[tuple[str, str]] | None = None) -> HttpResponse:
        """Run a valid opening handshake; return the 101 response."""
        key = new_key()
        await self.write(upgrade_request(key, extra=extra))
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout(5))
        response, rest = parse_http_response(head)
        assert not rest
        assert response.status == 101, response
        assert response.get("Sec-WebSocket-Accept") == accept_key(key)
        return response

    async def read_frame(self, seconds: float = 5) -> Frame:
        frame = await read_frame(self.reader, seconds=seconds)
        assert not frame.masked, "a server must not mask its frames"
        return frame

    async def expect_eof(self, seconds: float = 5) -> None:
        rest = await self.read_to_eof(seconds)
        assert rest == b"", f"expected the end of the stream, got {rest[:200]!r}"

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout(5))
        except ConnectionError:
            pass  # the server may reset a connection it refused
