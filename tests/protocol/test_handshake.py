"""The opening handshake on both sides, without sockets."""

from __future__ import annotations

import pytest

from tidewire.exceptions import InvalidHeader, InvalidMessage, InvalidStatus, NegotiationError
from tidewire.protocol import (
    ClientProtocol,
    Headers,
    Request,
    Response,
    ServerProtocol,
    State,
    parse_uri,
)
from tidewire.protocol.handshake import accept_key

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def test_accept_key_matches_rfc() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def request(**changes: str | None) -> Request:
    fields = {
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    fields.update(changes)
    return Request("/chat", Headers((k, v) for k, v in fields.items() if v is not None))


def test_server_accepts_valid_request() -> None:
    response = ServerProtocol().accept(request(Connection="keep-alive, Upgrade"))
    assert response.status == 101
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    "changes, status, message",
    [
        ({"Upgrade": None}, 426, "Upgrade header: missing"),
        ({"Upgrade": "h2c"}, 426, "isn't websocket"),
        ({"Connection": None}, 426, "Connection header"),
        ({"Sec-WebSocket-Key": None}, 400, "Sec-WebSocket-Key header: missing"),
        ({"Sec-WebSocket-Key": "c2hvcnQ="}, 400, "instead of 16"),
        ({"Sec-WebSocket-Key": "not base64!"}, 400, "isn't base64"),
        ({"Sec-WebSocket-Version": "8"}, 426, "isn't 13"),
        ({"Sec-WebSocket-Version": None}, 400, "Sec-WebSocket-Version header: missing"),
        # Another version is told ours first, even without a key of ours.
        ({"Sec-WebSocket-Version": "11", "Sec-WebSocket-Key": None}, 426, "isn't 13"),
        ({"Host": None}, 400, "Host header: missing"),
    ],
)
def test_server_refuses_bad_request(
    changes: dict[str, str | None], status: int, message: str
) -> None:
    server = ServerProtocol()
    response = server.accept(request(**changes))
    assert response.status == status
    assert message in response.body.decode()
    assert isinstance(server.handshake_exc, InvalidHeader)
    if "Version" in message and status == 426:
        assert response.headers["Sec-WebSocket-Version"] == "13"


@pytest.mark.parametrize("name", ["Upgrade", "Connection", "Sec-WebSocket-Key",
                                  "Sec-WebSocket-Version"])
def test_server_refuses_duplicate_header(name: str) -> None:
    req = request()
    req.headers.add(name, req.headers[name])
    response = ServerProtocol().accept(req)
    assert response.status == 400
    assert "more than one" in response.body.decode()


def test_server_checks_origin() -> None:
    server = ServerProtocol(origins=["https://good.example"])
    assert server.accept(request(Origin="https://good.example")).status == 101
    assert ServerProtocol(origins=["https://good.example"]).accept(
        request(Origin="https://evil.example")
    ).status == 403


def test_server_picks_subprotocol_in_its_order() -> None:
    server = ServerProtocol(subprotocols=["v2", "v1"])
    response = server.accept(request(**{"Sec-WebSocket-Protocol": "v1, v2"}))
    assert response.headers["Sec-WebSocket-Protocol"] == "v2"
    assert server.subprotocol == "v2"


def test_server_answers_malformed_request_by_itself() -> None:
    server = ServerProtocol()
    server.receive_data(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    assert server.close_expected()
    data = b"".join(server.data_to_send())
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"invalid header name" in data


def test_server_keeps_frames_that_follow_the_request() -> None:
    server = ServerProtocol(compression=None)
    frame = b"\x81\x82abcd" + bytes([ord("h") ^ ord("a"), ord("i") ^ ord("b")])
    server.receive_data(request().serialize() + frame)
    (req,) = server.events_received()
    assert isinstance(req, Request)
    server.send_response(server.accept(req))
    assert server.state is State.OPEN
    assert server.events_received() == ["hi"]


def test_server_keeps_up_to_max_pending_bytes_while_a_request_waits() -> None:
    server = ServerProtocol(compression=None)
    server.max_pending = 10
    server.receive_data(request().serialize())
    (req,) = server.events_received()
    server.receive_data(b"x" * 10)  # at the limit: kept for after the answer
    assert not server.close_expected()
    server.receive_data(b"x")
    assert server.close_expected()
    assert server.data_to_send() == []  # closed unanswered
    assert isinstance(server.handshake_exc, InvalidMessage)
    assert "over 10 bytes" in str(server.handshake_exc)


def post(body: bytes, **headers: str) -> bytes:
    head = b"POST /api/publish HTTP/1.1\r\nHost: hub\r\n"
    head += b"".join(f"{k.replace('_', '-')}: {v}\r\n".encode() for k, v in headers.items())
    return head + b"\r\n" + body


def test_server_reads_request_body_when_allowed() -> None:
    server = ServerProtocol(max_body=100)
    data = post(b'{"a": 1}', Content_Length="8")
    for i in range(len(data)):  # byte by byte: nothing until the body is whole
        assert server.events_received() == []
        server.receive_data(data[i : i + 1])
    (req,) = server.events_received()
    assert isinstance(req, Request)
    assert (req.method, req.path, req.body) == ("POST", "/api/publish", b'{"a": 1}')


def test_server_refuses_a_body_over_the_limit_before_reading_it() -> None:
    server = ServerProtocol(max_body=10)
    server.receive_data(post(b"", Content_Length="11"))
    data = b"".join(server.data_to_send())
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"over 10 bytes" in data
    assert server.close_expected()


@pytest.mark.parametrize(
    "headers, status, message",
    [
        ({"Transfer_Encoding": "chunked"}, 411, "Content-Length"),
        ({"Content_Length": "ten"}, 400, "invalid Content-Length"),
        ({"Content_Length": "-1"}, 400, "invalid Content-Length"),
    ],
)
def test_server_refuses_bodies_it_cant_delimit(
    headers: dict[str, str], status: int, message: str
) -> None:
    server = ServerProtocol(max_body=100)
    server.receive_data(post(b"", **headers))
    data = b"".join(server.data_to_send())
    assert data.startswith(b"HTTP/1.1 %d " % status)
    assert message.encode() in data


@pytest.mark.parametrize("value", [b"\xb2", b"1\xb9", b"9" * 5000])
def test_server_refuses_a_content_length_int_cant_read(value: bytes) -> None:
    """Found by fuzzing: "²" (byte B2 read as latin-1) passed str.isdigit(),
    and so did 5000 digits, over int()'s limit: int() then raised ValueError
    out of receive_data() instead of a 400."""
    server = ServerProtocol(max_body=100)
    server.receive_data(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\n")
    data = b"".join(server.data_to_send())
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"invalid Content-Length" in data


@pytest.mark.parametrize("value", [b"\xb2", b"9" * 5000])
def test_client_fails_on_a_refusal_with_a_content_length_int_cant_read(value: bytes) -> None:
    c = client()
    c.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: " + value + b"\r\n\r\nno")
    assert isinstance(c.handshake_exc, InvalidMessage)
    assert "invalid Content-Length" in str(c.handshake_exc)
    assert c.close_expected()


def test_server_refuses_to_upgrade_other_methods() -> None:
    server = ServerProtocol()
    server.receive_data(post(b""))
    (req,) = server.events_received()
    assert isinstance(req, Request) and req.method == "POST"
    response = server.accept(req)
    assert response.status == 405 and response.headers["Allow"] == "GET"
    assert b"method POST not allowed" in response.body


def client() -> ClientProtocol:
    return ClientProtocol(parse_uri("ws://example.com:8080/x?y=1"), subprotocols=["chat"])


def answer(c: ClientProtocol, **changes: str | None) -> Response:
    fields = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": accept_key(c.key),
    }
    fields.update(changes)
    return Response(101, "Switching Protocols",
                    Headers((k, v) for k, v in fields.items() if v is not None))


def test_client_request_has_the_rfc_headers() -> None:
    c = client()
    req = c.connect()
    assert req.path == "/x?y=1"
    assert req.headers["Host"] == "example.com:8080"
    assert req.headers["Sec-WebSocket-Version"] == "13"
    assert req.headers["Sec-WebSocket-Protocol"] == "chat"


def test_client_opens_on_valid_response() -> None:
    c = client()
    c.receive_data(answer(c, **{"Sec-WebSocket-Protocol": "chat"}).serialize())
    assert c.state is State.OPEN and c.subprotocol == "chat"


@pytest.mark.parametrize(
    "changes, exc_type",
    [
        ({"Sec-WebSocket-Accept": "wrong"}, InvalidHeader),
        ({"Upgrade": None}, InvalidHeader),
        ({"Connection": None}, InvalidHeader),
        ({"Sec-WebSocket-Protocol": "other"}, NegotiationError),
        ({"Sec-WebSocket-Extensions": "x-unknown"}, NegotiationError),
    ],
)
def test_client_rejects_bad_response(changes: dict[str, str | None], exc_type: type) -> None:
    c = client()
    c.receive_data(answer(c, **changes).serialize())
    assert isinstance(c.handshake_exc, exc_type)
    assert c.state is State.CONNECTING and c.close_expected()


def test_client_reads_refusal_body() -> None:
    c = client()
    c.receive_data(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nno way!")
    assert isinstance(c.handshake_exc, InvalidStatus)
    assert c.handshake_exc.response.status == 403
    assert c.handshake_exc.response.body == b"no way!"
