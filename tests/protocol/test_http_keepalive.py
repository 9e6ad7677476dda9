"""HTTP/1.1 persistent connections on the server side, without sockets: several
requests answered on one connection, pipelining, and when it closes."""

from __future__ import annotations

import pytest

from tests.asyncio.rawclient import HttpResponse, http_request, parse_http_response
from tidewire.protocol import Headers, Request, Response, ServerProtocol, State
from tidewire.protocol.http import MAX_HEAD

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def get(path: str, *extra: str) -> bytes:
    return http_request("GET", path, b"", *extra)


def post(path: str, body: bytes, *extra: str) -> bytes:
    return http_request("POST", path, body, *extra)


UPGRADE = get(
    "/ws",
    "Upgrade: websocket",
    "Connection: Upgrade",
    f"Sec-WebSocket-Key: {KEY}",
    "Sec-WebSocket-Version: 13",
)


def server(**options: int | float) -> ServerProtocol:
    options.setdefault("max_requests", 100)
    options.setdefault("max_body", 1000)
    return ServerProtocol(compression=None, idle_timeout=5, **options)  # type: ignore[arg-type]


def ok(text: str) -> Response:
    """What a hook answers: no Connection header, no Content-Length."""
    return Response(200, "OK", Headers([("Content-Type", "text/plain")]), text.encode())


def requests(s: ServerProtocol) -> list[Request]:
    events = s.events_received()
    assert all(isinstance(e, Request) for e in events), events
    return events  # type: ignore[return-value]


def responses(data: bytes) -> list[HttpResponse]:
    """Split what the server wrote into responses, bodies by Content-Length."""
    out = []
    while data:
        response, data = parse_http_response(data)
        length = response.get("Content-Length")
        assert length is not None, f"a response without Content-Length: {response}"
        response.body, data = data[: int(length)], data[int(length) :]
        out.append(response)
    return out


def sent(s: ServerProtocol) -> list[HttpResponse]:
    return responses(b"".join(s.data_to_send()))


def answer_each(s: ServerProtocol) -> list[str]:
    """Answer every request that comes, each with its path; return the paths."""
    paths = []
    while reqs := requests(s):
        (req,) = reqs  # one at a time: the next waits for this answer
        paths.append(req.path)
        s.send_response(ok(req.path + req.body.decode()))
    return paths


def test_server_answers_requests_fed_byte_by_byte_on_one_connection() -> None:
    s = server()
    for n, data in enumerate([get("/healthz"), post("/api/publish", b'{"a": 1}'), get("/x")]):
        for i in range(len(data)):
            assert s.events_received() == []
            s.receive_data(data[i : i + 1])
        (req,) = requests(s)
        s.send_response(ok(f"answer {n}"))
        (response,) = sent(s)
        assert response.status == 200 and response.body == f"answer {n}".encode()
        assert response.get("Connection") == "keep-alive"
        assert response.get("Keep-Alive") == f"timeout=5, max={100 - n - 1}"
        assert not s.close_expected() and s.state is State.CONNECTING
    assert req.method == "GET" and req.path == "/x"


def test_server_answers_pipelined_requests_in_order() -> None:
    s = server()
    s.receive_data(get("/1") + post("/2", b"two") + get("/3"))
    assert answer_each(s) == ["/1", "/2", "/3"]
    assert [r.body for r in sent(s)] == [b"/1", b"/2two", b"/3"]


@pytest.mark.parametrize("cut", range(1, 40))
def test_server_reads_bodies_of_pipelined_requests_split_anywhere(cut: int) -> None:
    data = post("/a", b"0123456789") + post("/b", b"abc") + get("/c")
    s = server()
    s.receive_data(data[:cut])
    paths = answer_each(s)
    s.receive_data(data[cut:])
    paths += answer_each(s)
    assert paths == ["/a", "/b", "/c"]
    assert [r.body for r in sent(s)] == [b"/a0123456789", b"/babc", b"/c"]


def test_server_keeps_what_comes_while_a_request_is_answered() -> None:
    s = server()
    s.receive_data(get("/1"))
    (first,) = requests(s)
    s.receive_data(get("/2")[:10])
    s.receive_data(get("/2")[10:])
    assert s.events_received() == []  # not before the answer to /1
    s.send_response(ok("one"))
    (second,) = requests(s)
    assert second.path == "/2"


def test_server_closes_after_a_client_asks_it() -> None:
    s = server()
    s.receive_data(get("/1", "Connection: close") + get("/2"))
    (req,) = requests(s)
    s.send_response(ok("bye"))
    (response,) = sent(s)
    assert response.get_all("Connection") == ["close"] and response.get("Keep-Alive") is None
    assert s.close_expected()
    assert s.events_received() == []  # what followed is never read
    s.receive_data(get("/3"))
    assert s.events_received() == []


def test_server_closes_after_a_response_that_says_so() -> None:
    s = server()
    s.receive_data(get("/1"))
    requests(s)
    response = ok("last")
    response.headers.add("Connection", "close")
    s.send_response(response)
    assert sent(s)[0].get_all("Connection") == ["close"]
    assert s.close_expected()


def test_server_closes_after_max_requests() -> None:
    s = server(max_requests=3)
    s.receive_data(get("/1") + get("/2") + get("/3") + get("/4"))
    assert answer_each(s) == ["/1", "/2", "/3"]
    one, two, three = sent(s)
    assert [r.get("Keep-Alive") for r in (one, two)] == ["timeout=5, max=2", "timeout=5, max=1"]
    assert three.get("Connection") == "close" and three.get("Keep-Alive") is None
    assert s.close_expected()


def test_server_without_keepalive_closes_after_its_first_answer() -> None:
    s = ServerProtocol(max_body=100)  # max_requests=1, as before keep-alive existed
    s.receive_data(post("/api", b"{}") + get("/2"))
    requests(s)
    s.send_response(ok("only"))
    (response,) = sent(s)
    assert response.get("Connection") == "close" and response.body == b"only"
    assert s.close_expected() and s.events_received() == []


@pytest.mark.parametrize(
    "bad, status, message",
    [
        (b"GET /x HTTP/1.1\r\nHost hub\r\n\r\n", 400, b"header line without a colon"),
        (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411,
         b"Content-Length"),
        (b"GET /x HTTP/1.0\r\n\r\n", 505, b"HTTP/1.1"),
        (b"GET /x HTTP/1.1\r\n" + b"X: " + b"y" * MAX_HEAD, 431, b"headers are longer"),
        (post("/x", b"z" * 1001), 413, b"over 1000 bytes"),
    ],
    ids=["malformed", "chunked", "http-1.0", "too-long", "body-too-big"],
)
def test_server_answers_a_bad_request_after_good_ones_and_closes(
    bad: bytes, status: int, message: bytes
) -> None:
    s = server()
    s.receive_data(get("/1") + get("/2") + bad + get("/never"))
    assert answer_each(s) == ["/1", "/2"]
    one, two, refusal = sent(s)
    assert one.status == two.status == 200
    assert refusal.status == status and message in refusal.body
    assert refusal.get("Connection") == "close"
    assert s.close_expected() and s.handshake_exc is not None


def test_server_with_keepalive_and_no_bodies_refuses_a_body() -> None:
    s = server(max_body=0)
    s.receive_data(post("/x", b"data"))
    (refusal,) = sent(s)
    assert refusal.status == 413 and b"reads no request bodies" in refusal.body
    assert s.close_expected()


def test_server_upgrades_after_plain_requests() -> None:
    frame = b"\x81\x82abcd" + bytes([ord("h") ^ ord("a"), ord("i") ^ ord("b")])
    s = server()
    s.receive_data(get("/healthz") + post("/api", b"{}") + UPGRADE + frame)
    for _ in range(2):
        (req,) = requests(s)
        s.send_response(ok("plain"))
    (upgrade,) = requests(s)
    assert upgrade.path == "/ws"
    s.send_response(s.accept(upgrade))
    assert s.state is State.OPEN
    assert s.events_received() == ["hi"]
    wire = b"".join(s.data_to_send())
    assert wire.count(b"HTTP/1.1 200 OK") == 2
    assert wire.endswith(b"\r\n\r\n") and b"HTTP/1.1 101 Switching Protocols" in wire


def test_server_closes_after_a_refused_upgrade() -> None:
    s = server()
    s.receive_data(get("/1") + get("/ws", "Upgrade: websocket") + get("/3"))
    (req,) = requests(s)
    s.send_response(ok("one"))
    (upgrade,) = requests(s)
    refusal = s.accept(upgrade)  # no Connection: Upgrade, no key
    s.send_response(refusal)
    assert [r.status for r in sent(s)] == [200, 426]
    assert s.close_expected() and s.events_received() == []


def test_server_adds_content_length_except_to_head() -> None:
    s = server()
    s.receive_data(get("/1") + get("/2").replace(b"GET", b"HEAD", 1))
    (req,) = requests(s)
    s.send_response(ok("five!"))
    (head,) = requests(s)
    s.send_response(Response(200, "OK", Headers([("Content-Length", "5")])))
    data = b"".join(s.data_to_send())
    assert data.count(b"Content-Length: 5\r\n") == 2
    s.receive_data(get("/3").replace(b"GET", b"HEAD", 1))
    (head,) = requests(s)
    s.send_response(Response(200, "OK"))
    assert b"Content-Length" not in b"".join(s.data_to_send())


def test_server_eof_between_requests_is_no_error() -> None:
    s = server()
    s.receive_data(get("/1"))
    requests(s)
    s.send_response(ok("one"))
    s.receive_eof()
    assert s.handshake_exc is None


def test_server_eof_in_the_middle_of_a_request_is_an_error() -> None:
    s = server()
    s.receive_data(get("/1"))
    requests(s)
    s.send_response(ok("one"))
    s.receive_data(get("/2")[:8])
    s.receive_eof()
    assert s.handshake_exc is not None


def test_server_refuses_max_requests_below_one() -> None:
    with pytest.raises(ValueError, match="max_requests"):
        ServerProtocol(max_requests=0)


def test_server_ignores_empty_lines_between_requests() -> None:
    s = server()
    s.receive_data(post("/1", b"{}") + b"\r\n" + get("/2") + b"\r\n\r\n" + get("/3"))
    assert answer_each(s) == ["/1", "/2", "/3"]


def test_server_lingers_unless_the_client_said_close_and_sent_nothing_more() -> None:
    said_close = server()
    said_close.receive_data(get("/1", "Connection: close"))
    requests(said_close)
    said_close.send_response(ok("bye"))
    assert said_close.close_expected() and not said_close.linger
    sent_more = server()
    sent_more.receive_data(get("/1", "Connection: close") + get("/2"))
    requests(sent_more)
    sent_more.send_response(ok("bye"))
    assert sent_more.linger
    at_limit = server(max_requests=1)  # the client may be pipelining already
    at_limit.receive_data(get("/1"))
    requests(at_limit)
    at_limit.send_response(ok("last"))
    assert at_limit.close_expected() and at_limit.linger
    refused = server()  # the rest of the body may still come
    refused.receive_data(post("/x", b"z" * 2000)[:200])
    assert refused.close_expected() and refused.linger
