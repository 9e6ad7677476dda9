"""Servers in a thread, and a WebSocket peer written by hand on a blocking socket.

The raw peer builds frames with the helpers of ``tests.asyncio.rawclient`` and
reads them from a socket with a timeout, so a test controls every byte.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tests.asyncio.rawclient import (
    Frame,
    HttpResponse,
    accept_key,
    new_key,
    parse_http_response,
    upgrade_request,
)
from tests.conftest import timeout
from tidewire.sync import Server, ServerConnection, serve

__all__ = ["RawClient", "RawServer", "running", "url"]


@contextlib.contextmanager
def running(handler: Callable[[ServerConnection], None], **options: Any) -> Iterator[Server]:
    """A tidewire.sync server on a free port (or ``unix_path``), serving in a thread."""
    address = () if "unix_path" in options else ("127.0.0.1", 0)
    with serve(handler, *address, **options) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join(timeout(5))
            assert not thread.is_alive(), "serve_forever() didn't return"


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


class _Stream:
    """Blocking reads of exact sizes from a socket, each bounded in time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(timeout(5))
        self.buffer = b""

    def read_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed with {len(self.buffer)} of {n} bytes")
            self.buffer += data
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed before {marker!r}")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_to_eof(self) -> bytes:
        chunks = [self.buffer]
        self.buffer = b""
        while data := self.sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)

    def read_response(self) -> HttpResponse:
        """One HTTP response on a connection that may stay open: the head,
        then as many body bytes as Content-Length says."""
        response, rest = parse_http_response(self.read_until(b"\r\n\r\n"))
        assert not rest
        length = response.get("Content-Length")
        assert length is not None, f"a response without Content-Length: {response}"
        response.body = self.read_exactly(int(length))
        return response

    def read_frame(self) -> Frame:
        b0, b1 = self.read_exactly(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.read_exactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self.read_exactly(8))
        masked = bool(b1 & 0x80)
        key = self.read_exactly(4) if masked else b""
        payload = self.read_exactly(n)
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return Frame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, masked, payload)


class RawClient(_Stream):
    """A TCP connection to a WebSocket server, driven byte by byte."""

    def __init__(self, port: int) -> None:
        super().__init__(socket.create_connection(("127.0.0.1", port), timeout(5)))

    def handshake(self) -> HttpResponse:
        """Run a valid opening handshake; return the 101 response."""
        key = new_key()
        self.sock.sendall(upgrade_request(key))
        response, rest = parse_http_response(self.read_until(b"\r\n\r\n"))
        assert response.status == 101, response
        assert response.get("Sec-WebSocket-Accept") == accept_key(key)
        return response

    def close(self) -> None:
        self.sock.close()


class RawServer:
    """A listener that answers one opening handshake with a 101, then reads
    and writes only what the test asks for."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.peer: _Stream | None = None

    def accept(self, *, upgrade: bool = True) -> _Stream:
        self.listener.settimeout(timeout(5))
        sock, _ = self.listener.accept()
        self.peer = peer = _Stream(sock)
        if upgrade:
            request = peer.read_until(b"\r\n\r\n").decode("latin-1")
            key = next(
                line.split(":", 1)[1].strip()
                for line in request.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + accept_key(key).encode()
                + b"\r\n\r\n"
            )
        return peer

    def close(self) -> None:
        if self.peer is not None:
            self.peer.sock.close()
        self.listener.close()
