"""The HTTP side of the opening handshake: parsers, headers, both protocols.

The first input byte picks a check, the next two its settings, and the rest
is raw bytes off the network:

- the request parser and ``request_body_length``, the response parser and
  ``body_length``: a head parses, asks for more bytes, or fails with an
  ``InvalidMessage`` that carries a 4xx/5xx status, and nothing else;
- a server fed a request, in pieces: it ends with a 101, or with a 4xx/5xx
  refusal whose plain-text body says what was wrong, never an exception;
- a client fed a response, in pieces, then the end of the stream: it opens,
  or fails the handshake with an ``InvalidHandshake``, never an exception.
"""

from __future__ import annotations

import importlib

from fuzzing.harness import fuzz
from fuzzing.source import Source

__all__ = ["test_one_input", "main", "seeds"]

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
STATUSES = {400, 403, 404, 405, 411, 413, 414, 426, 431, 500, 503, 505}


def chunks(data: bytes, size: int) -> list[bytes]:
    size = 1 + size % 64 if size else len(data) or 1
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def check_headers(headers: object) -> None:
    """Lookups agree with each other, whatever the names."""
    items = list(headers)  # type: ignore[call-overload]
    groups = headers.grouped()  # type: ignore[attr-defined]
    for name, value in items:
        assert name in headers  # type: ignore[operator]
        assert headers.get_all(name) == groups[name.lower()]  # type: ignore[attr-defined]
        assert value in groups[name.lower()]
        assert headers.get(name) == groups[name.lower()][0]  # type: ignore[attr-defined]


def parse_request(src: Source) -> None:
    from tidewire.exceptions import InvalidMessage
    from tidewire.protocol.http import parse_request, request_body_length

    data = src.rest()
    try:
        parsed = parse_request(data)
    except InvalidMessage as exc:
        assert exc.status in (400, 414, 431, 505), exc.status
        return
    if parsed is None:
        assert b"\r\n\r\n" not in data
        return
    request, size = parsed
    assert data[size - 4 : size] == b"\r\n\r\n"
    # Before its end, the head needs more bytes or is already refused.
    try:
        assert parse_request(data[: size - 1]) is None
    except InvalidMessage:
        pass
    check_headers(request.headers)
    try:
        length = request_body_length(request)
    except InvalidMessage as exc:
        assert exc.status in (400, 411), exc.status
        return
    assert type(length) is int and length >= 0


def parse_response(src: Source) -> None:
    from tidewire.exceptions import InvalidMessage
    from tidewire.protocol.http import body_length, parse_response

    data = src.rest()
    try:
        parsed = parse_response(data)
    except InvalidMessage as exc:
        assert exc.status in (400, 431), exc.status
        return
    if parsed is None:
        assert b"\r\n\r\n" not in data
        return
    response, size = parsed
    assert 100 <= response.status <= 999 and data[size - 4 : size] == b"\r\n\r\n"
    check_headers(response.headers)
    try:
        length = body_length(response)
    except InvalidMessage as exc:
        assert exc.status == 400, exc.status
        return
    assert length is None or (type(length) is int and length >= 0)


def server(src: Source) -> None:
    from tidewire.protocol import ServerProtocol

    b = src.byte()
    conn = ServerProtocol(
        origins=[None, "https://example.com"] if b & 1 else None,
        subprotocols=["chat", "superchat"] if b & 2 else None,
        max_body=[0, 10, 1000][b % 3],
        max_size=[1 << 20, 125][(b >> 2) & 1],
    )
    size = src.byte()
    for piece in chunks(src.rest(), size):
        conn.receive_data(piece)
        for event in conn.events_received():
            if type(event).__name__ == "Request":
                assert conn.response is None
                conn.send_response(conn.accept(event))
    if size & 0x80:
        conn.receive_eof()
        conn.events_received()
    response = conn.response
    if response is None:
        # Waiting for the rest of the head or body: nothing sent yet.
        assert conn.state.name in ("CONNECTING", "CLOSED")
        assert not conn.data_to_send()
        return
    sent = b"".join(conn.data_to_send())
    assert sent.startswith(response.serialize())
    if response.status == 101:
        assert conn.handshake_exc is None and conn.state.name != "CONNECTING"
        return
    assert response.status in STATUSES, response.status
    assert conn.handshake_exc is not None and conn.close_expected()
    body = response.body.decode()
    assert body.startswith(("Bad request: ", "Failed to open a WebSocket connection: "))
    assert response.headers["Content-Length"] == str(len(response.body))
    reason = body.partition(": ")[2]
    assert len(reason) > 5 and body.endswith(".\n"), body  # it says what was wrong


def client(src: Source) -> None:
    from tidewire.exceptions import InvalidHandshake
    from tidewire.protocol import ClientProtocol, parse_uri
    from tidewire.protocol.deflate import DEFAULT_OPTIONS

    b = src.byte()
    conn = ClientProtocol(
        parse_uri("ws://example.com/chat"),
        subprotocols=["chat"] if b & 1 else None,
        compression=None if b & 2 else DEFAULT_OPTIONS,
    )
    conn.key = KEY
    conn.send_request(conn.connect())
    conn.data_to_send()
    size = src.byte()
    for piece in chunks(src.rest(), size):
        conn.receive_data(piece)
    opened = conn.state.name == "OPEN"
    conn.receive_eof()
    events = conn.events_received()
    if opened:
        assert conn.handshake_exc is None
        assert events[0].status == 101 and conn.response is events[0]
        return
    if conn.handshake_exc is None:
        return  # the end of the stream came before any byte of a response
    assert isinstance(conn.handshake_exc, InvalidHandshake), repr(conn.handshake_exc)
    assert conn.close_expected()
    assert events and events[-1] is conn.response


CHECKS = [parse_request, parse_response, server, client]


def test_one_input(data: bytes) -> None:
    src = Source(data)
    src.pick(CHECKS)(src)


def seeds() -> dict[str, bytes]:
    request = (
        "GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
        "Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
        "Sec-WebSocket-Protocol: chat, superchat\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    ).encode()
    post = (
        b"POST /api/publish HTTP/1.1\r\nHost: example.com\r\nContent-Type: application/json\r\n"
        b'Content-Length: 9\r\n\r\n{"a": 1}\n'
    )
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n"
    ).encode()
    refusal = (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"
        b"forbidden\n"
    )
    frame = b"\x81\x05Hello"
    return {
        "request.bin": b"\x00" + request,
        "request-with-body.bin": b"\x00" + post,
        "response.bin": b"\x01" + response,
        "refusal.bin": b"\x01" + refusal,
        "server-upgrade.bin": b"\x02\x03\x00" + request + b"\x81\x82abcd\x00\x00",
        "server-upgrade-pieces.bin": b"\x02\x00\x05" + request,
        "server-post.bin": b"\x02\x02\x87" + post,
        "client-upgrade.bin": b"\x03\x01\x00" + response + frame,
        "client-upgrade-pieces.bin": b"\x03\x00\x03" + response,
        "client-refusal.bin": b"\x03\x00\x81" + refusal,
    }


def main() -> None:
    fuzz(test_one_input, lambda: importlib.import_module("tidewire.protocol"))


if __name__ == "__main__":
    main()
