"""HTTP parsing for the handshake: limits and malformed input."""

from __future__ import annotations

import pytest

from tidewire.exceptions import InvalidMessage
from tidewire.protocol.http import MAX_HEAD, MAX_LINE, Headers, parse_request, parse_response

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n\r\n"
)


def test_parses_request_and_reports_its_size() -> None:
    parsed = parse_request(REQUEST + b"extra")
    assert parsed is not None
    request, size = parsed
    assert request.path == "/chat?room=1"
    assert request.headers["host"] == "example.com"
    assert size == len(REQUEST)


def test_incomplete_request_needs_more_bytes() -> None:
    for i in range(len(REQUEST)):
        assert parse_request(REQUEST[:i]) is None


def test_headers_are_case_insensitive_and_keep_repeats() -> None:
    h = Headers([("A", "1"), ("a", "2")])
    assert h.get_all("A") == ["1", "2"]
    assert h["a"] == "1"
    h["A"] = "3"
    assert list(h) == [("A", "3")]


def test_grouped_gives_every_value_by_lowercased_name() -> None:
    h = Headers([("Host", "a"), ("X-Two", "1"), ("x-two", "2")])
    assert h.grouped() == {"host": ["a"], "x-two": ["1", "2"]}
    h.grouped()["host"].append("not kept")  # a fresh dict each time
    assert h.get_all("host") == ["a"]


def test_header_values_lose_surrounding_whitespace_only() -> None:
    parsed = parse_request(
        b"GET / HTTP/1.1\r\nA:x\r\nB: \t two  words\t \r\nC:\r\nD: a:b: c\r\n"
        b"E: caf\xe9\r\nb: again\r\n\r\n"
    )
    assert parsed is not None
    assert list(parsed[0].headers) == [
        ("A", "x"),
        ("B", "two  words"),
        ("C", ""),
        ("D", "a:b: c"),
        ("E", "caf\u00e9"),  # obs-text is kept, one char per byte
        ("b", "again"),
    ]


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"G" * (MAX_LINE + 1), 414, "first line is longer"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEAD // 6), 431, "headers are longer"),
        (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 129 + b"\r\n", 431, "more than 128"),
        (b"G(T / HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET / HTTP/1.0\r\n\r\n", 505, "HTTP version"),
        (b"GET /  HTTP/1.1\r\n\r\n", 400, "malformed request line"),
        (b"GET nopath HTTP/1.1\r\n\r\n", 400, "request target"),
        (b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "without a colon"),
        (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "invalid header name"),
        (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400, "invalid value"),
        (b"GET / HTTP/1.1\r\n folded: x\r\n\r\n", 400, "invalid header name"),
        (b"GET / HTTP/1.1\r\nA: 1\r\nB C: 2\r\nD: 3\r\n\r\n", 400, "invalid header name"),
        (b"GET / HTTP/1.1\r\nA: 1\r\nX: a\rb\r\n\r\n", 400, "invalid value in header X"),
        (b"GET / HTTP/1.1\r\nA: 1\r\nX: a\nb\r\n\r\n", 400, "invalid value in header X"),
        (b"GET / HTTP/1.1\r\nA: 1\r\n:x\r\nB: 2\r\n\r\n", 400, "invalid header name"),
        (b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nzz\r\n\r\n", 400, "without a colon"),
        (b"GET / HTTP/1.1\r\nA: 1\x7f\r\nB: 2\r\n\r\n", 400, "invalid value in header A"),
    ],
)
def test_bad_request_gets_status_and_reason(data: bytes, status: int, message: str) -> None:
    with pytest.raises(InvalidMessage, match=message) as info:
        parse_request(data)
    assert info.value.status == status


@pytest.mark.parametrize("line", [b"HTTP/1.1 403", b"HTTP/1.1 403 ", b"HTTP/1.0 403 Go away"])
def test_parses_status_line_with_or_without_reason(line: bytes) -> None:
    parsed = parse_response(line + b"\r\n\r\n")
    assert parsed is not None and parsed[0].status == 403
    assert parsed[0].reason == line[13:].decode()


def test_parses_response() -> None:
    parsed = parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert parsed is not None
    response, _ = parsed
    assert response.status == 101 and response.headers["Upgrade"] == "websocket"


@pytest.mark.parametrize("status", [b"1O1", b"043", b"000", b"99", b"1010"])
def test_rejects_malformed_status_line(status: bytes) -> None:
    # Found by fuzzing: "043" was read as status 43. A status is 100 to 999,
    # and "1010" isn't 101 with the reason "0".
    with pytest.raises(InvalidMessage, match="status line"):
        parse_response(b"HTTP/1.1 " + status + b" Nope\r\n\r\n")
