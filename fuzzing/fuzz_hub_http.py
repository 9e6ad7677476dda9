"""The hub's HTTP API: the body parser and every route.

Each input is a few HTTP requests: a method, a path (each route, the static
files, ``/ws`` and others), a query string, headers (``Authorization``
right, wrong or missing; ``Content-Type``; ``Connection: upgrade``) and a
body (mostly a JSON object shaped for the route, built by ``hostile.Json``,
sometimes any bytes). The head is read by the library's own request parser,
as the server would; what it refuses never reaches the hub. The hub is real,
on the memory broker, with one connected client (a ``Session`` on a
stand-in socket) for the routes that act on users and clients. What must
hold for every request:

- the status is 2xx, 4xx or 503, never 500;
- a JSON answer is strict RFC 8259 JSON that a browser reads as Python
  does (``tests/jsoncheck.py``), and an error's body is
  ``{"error": "<what was wrong>"}``; ``Content-Length`` is the body's;
- what the routes push to the client is strict JSON too;
- nothing is logged at ERROR or with a traceback.
"""

from __future__ import annotations

import asyncio

from fuzzing import hostile
from fuzzing.hostile import member, obj
from fuzzing.hub_rig import API_KEY, Rig, fuzz_hub
from fuzzing.source import Source
from tests.jsoncheck import strict_json

__all__ = ["test_one_input", "main", "seeds"]

METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "CONNECT"]
PATHS = ["/api/publish", "/api/broadcast", "/api/history", "/api/presence",
         "/api/presence_stats", "/api/channels", "/api/disconnect", "/api/subscribe",
         "/api/unsubscribe", "/healthz", "/metrics", "/", "/tidewire.js", "/ws", "/api/",
         "/api/publish/", "/API/publish", "/nowhere", "*", "/api/history/../publish"]
ROUTE_METHOD = {
    "/api/publish": "POST", "/api/broadcast": "POST", "/api/disconnect": "POST",
    "/api/subscribe": "POST", "/api/unsubscribe": "POST",
}
QUERY_NAMES = ["channel", "limit", "epoch", "offset", "x"]
QUERY_VALUES = ["chat:lobby", "news:today", "private:room", "nons:x", "", "0", "3", "-1",
                "\u00b2", "%C2%B2", "9007199254740991", "9007199254740992", "1e3", "1.5",
                "%FF", "%00", "%F0%9F%98%80", "%ED%A0%80", "chat%3Aa%20b", "+", "x" * 300,
                "\u0660", "\uff11"]
AUTHORIZATIONS = [f"Bearer {API_KEY}", f"bearer  {API_KEY} ", "Bearer nope", f"Basic {API_KEY}",
                  "Bearer", "", f"Bearer {API_KEY}\u00e9"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain",
                 "APPLICATION/JSON", "", ";", "application/json;"]
GOOD_CHANNELS = ["chat:lobby", "news:today", "private:room", "nons:x", "plain"]
STATUSES = set(range(200, 300)) | set(range(400, 500)) | {503}


class Writer(hostile.Writer):
    """Makes the requests of one input."""

    CHANNELS = GOOD_CHANNELS

    def target(self, path: str) -> str:
        src = self.src
        b = src.byte()
        if b < 40:
            return path
        pairs = []
        for _ in range(b % 5):
            name = src.pick(QUERY_NAMES) if src.byte() < 220 else self.json.raw_text()
            value = src.pick(QUERY_VALUES) if src.byte() < 200 else self.json.raw_text()
            pairs.append(f"{name}={value}" if src.byte() < 230 else name)
        return path + "?" + "&".join(pairs)

    def body(self, path: str) -> bytes:
        src, js = self.src, self.json
        b = src.byte()
        if b >= 230:
            return src.take(src.byte())  # any bytes
        if b >= 200:
            return js.value().encode()
        members = []
        who = member("user", '"alice"') if b & 1 else member("client", '"c1"')
        if path == "/api/broadcast":
            channels = "[" + ",".join(self.channel() for _ in range(src.byte() % 4)) + "]"
            members.append(member("channels", channels if src.byte() < 200 else js.value()))
        if path in ("/api/publish", "/api/subscribe", "/api/unsubscribe"):
            members.append(member("channel", self.channel()))
        if path in ("/api/publish", "/api/broadcast") and src.byte() < 220:
            members.append(member("data", js.value()))
        if path in ("/api/disconnect", "/api/subscribe", "/api/unsubscribe"):
            members.append(who if src.byte() < 200 else member(js.raw_text(), js.value()))
        for _ in range(src.byte() % 3 if src.byte() > 200 else 0):
            members.append(f"{js.string()}:{js.value()}")
        return obj(members).encode()

    def request(self) -> bytes:
        """The raw request: head and body, as a client would send it."""
        src = self.src
        path = src.pick(PATHS)
        b = src.byte()
        method = ROUTE_METHOD.get(path, "GET") if b < 160 else src.pick(METHODS)
        lines = [f"{method} {self.target(path)} HTTP/1.1", "Host: hub"]
        b = src.byte()
        if b < 230:
            lines.append(f"Authorization: {AUTHORIZATIONS[b % 3 if b < 150 else b % 7]}")
        if src.byte() > 230:
            lines.append(f"Authorization: {src.pick(AUTHORIZATIONS)}")
        body = self.body(path) if method not in ("GET", "HEAD") or src.byte() > 240 else b""
        b = src.byte()
        if b < 230:
            lines.append(f"Content-Type: {CONTENT_TYPES[0 if b < 150 else b % 7]}")
        if src.byte() > 240:
            lines.append("Connection: Upgrade")
        lines.append(f"Content-Length: {len(body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + body


def check_answer(request: object, response: object) -> None:
    status = response.status  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    body = response.body  # type: ignore[attr-defined]
    assert status in STATUSES, (status, body[:500])
    if request.method != "HEAD":  # type: ignore[attr-defined]
        assert headers["Content-Length"] == str(len(body))
    if headers["Content-Type"] != "application/json":
        assert status < 300, status  # errors are JSON
        return
    value = strict_json(body)
    assert isinstance(value, dict), body[:300]
    if status >= 300:
        assert list(value) == ["error"], body[:300]
        assert isinstance(value["error"], str) and len(value["error"]) > 5, body[:300]
    if status == 405:
        assert headers["Allow"]


def test_one_input(data: bytes) -> None:
    from tidewire.exceptions import InvalidMessage
    from tidewire.protocol.http import parse_request

    src = Source(data)
    writer = Writer(src)
    raw = [writer.request() for _ in range(1 + src.byte() % 4)]
    rig = Rig()
    hub = rig.hub
    session = rig.session(rig.socket([]))
    session.connected = True  # as alice, with client id c1, as if she had connected
    session.client = type(session.client)("c1", "alice")

    class Conn:
        id = "fuzz-http"

    async def body() -> None:
        hub.sessions.add(session)
        hub.register(session)
        try:
            for data in raw:
                try:
                    parsed = parse_request(data)
                except InvalidMessage:
                    continue  # the server answers it; the hub never sees it
                assert parsed is not None, data[:200]
                request, size = parsed
                request.body = data[size:]
                response = await hub._process_request(Conn(), request)  # type: ignore[arg-type]
                if response is None:
                    assert request.path.partition("?")[0] == "/ws"  # the upgrade's
                    continue
                check_answer(request, response)
        finally:
            await asyncio.sleep(0)  # server-side subscriptions run
            tasks = list(session._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session._leave_all()
            hub.sessions.discard(session)

    rig.run(body)


def seeds() -> dict[str, bytes]:
    return {
        "zeros.bin": b"\x00" * 64,
        "mixed.bin": bytes(range(256)),
        "ones.bin": b"\x01" * 64,
    }


def main() -> None:
    fuzz_hub(test_one_input)


if __name__ == "__main__":
    main()
