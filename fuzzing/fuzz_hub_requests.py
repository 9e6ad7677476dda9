"""The hub's requests on ``/ws``: the parser and every op's checks.

Each input is one client's session: a list of messages (mostly requests
built by ``hostile.Json``, some raw text, some binary frames) that a real
``Session`` of a real ``Hub`` handles, on the memory broker, with a backend
proxy whose answers come from the input too (the real ``Proxy`` and its
answer checks; only the HTTP POST is replaced). The WebSocket is a stand-in
that hands the session the messages and keeps what it writes and how it
closes; no socket is opened. What must hold for every input:

- every reply and push is strict RFC 8259 JSON that a browser reads as
  Python does (``tests/jsoncheck.py``), an object;
- an error reply carries a 4xx code, 501 (rpc without a backend) or 503
  (backend or broker unavailable), and a message: never 500;
- a close uses a valid code and a reason that fits a close frame;
- nothing escapes the session, and nothing is logged at ERROR or with a
  traceback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from fuzzing import hostile
from fuzzing.hostile import member, obj
from fuzzing.hub_rig import API_KEY, SECRET, Rig, fuzz_hub
from fuzzing.source import Source
from tests.jsoncheck import strict_json

__all__ = ["test_one_input", "main", "seeds"]

MAX_SIZE = 64 * 1024  # the hub's max_message_size: bigger frames never reach it
OPS = ["connect", "subscribe", "unsubscribe", "publish", "presence", "presence_stats",
       "history", "rpc", "ping", "refresh", "bogus", ""]
FIELDS = ["channel", "since", "presence", "token", "api_key", "info", "server_subs",
          "data", "method", "limit", "epoch", "offset", "op", "id"]
CHANNELS = ["chat:lobby", "news:today", "private:room", "proxied:x", "nons:x", "plain",
            "chat:\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9" * 12, "chat:a\tb",
            "chat:" + "x" * 260, "nons:" + "\u00e9" * 100]
OP_FIELDS = {
    "connect": ["token", "info", "server_subs", "data"],
    "subscribe": ["channel", "since", "presence", "token"],
    "unsubscribe": ["channel"],
    "publish": ["channel", "data"],
    "presence": ["channel"],
    "presence_stats": ["channel"],
    "history": ["channel", "limit", "since"],
    "rpc": ["method", "data"],
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_of(claims: str, good: bool) -> str:
    """An HS256 token around ``claims`` (any text), signed right or wrong."""
    head = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(claims.encode("utf-8", "replace"))
    key = SECRET.encode() if good else b"wrong"
    return head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


class Writer(hostile.Writer):
    """Makes the messages of one session from the input."""

    CHANNELS = CHANNELS

    def position(self) -> str:
        b = self.src.byte()
        if b < 150:
            return obj([member("epoch", self.json.string() if b & 1 else '"e"'),
                        member("offset", self.json.number() if b & 2 else str(b % 8))])
        return self.json.value()

    def claims(self) -> str:
        src, js = self.src, self.json
        members = [member("sub", '"alice"' if src.byte() < 200 else js.value())]
        for name in ("exp", "channels", "channels_subscribe", "info", "channel"):
            b = src.byte()
            if b < 100:
                continue
            if name == "exp":
                value = js.value() if b > 220 else ["4102444800", "1", "1e400", '"9"'][b % 4]
            elif name in ("channels", "channels_subscribe") and b < 200:
                value = "[" + ",".join(self.channel() for _ in range(b % 3)) + "]"
            elif name == "channel" and b < 200:
                value = self.channel()
            else:
                value = js.value()
            members.append(member(name, value))
        return obj(members)

    def token(self) -> str:
        b = self.src.byte()
        if b < 220:
            return json.dumps(jwt_of(self.claims(), good=b < 200))
        return self.json.value()

    def field(self, name: str) -> str:
        js, b = self.json, self.src.byte()
        if b >= 200:
            return js.value()  # anything, of any type
        if name == "channel":
            return self.channel()
        if name in ("since", "epoch"):
            return self.position()
        if name == "token":
            return self.token()
        if name == "api_key":
            return json.dumps(API_KEY if b < 150 else "nope")
        if name == "server_subs":
            return obj([member(self.src.pick(CHANNELS) if b < 100 else "chat:lobby",
                               self.position()) for _ in range(b % 3)])
        if name in ("presence",):
            return "true"
        if name in ("method", "offset"):
            return js.string() if b & 1 else js.number()
        if name == "limit":
            return js.number()
        return js.value()  # info, data, op, id...

    def request(self) -> str:
        src = self.src
        members = []
        b = src.byte()
        if b < 230:
            rid = str(src.byte()) if b < 150 else self.json.value()
            members.append(member("id", rid))
        b = src.byte()
        op = OPS[b % len(OPS)]
        if b < 240:
            members.append(member("op", json.dumps(op)))
        elif b < 250:
            members.append(member("op", self.json.value()))
        # The op's own fields, mostly, then maybe others.
        for name in OP_FIELDS.get(op, ()):
            if src.byte() < 200:
                members.append(member(name, self.field(name)))
        b = src.byte()
        for _ in range(b % 4 if b > 200 else 0):
            name = src.pick(FIELDS)
            members.append(member(name, self.field(name)))
        return obj(members)

    def message(self, first: bool) -> str | bytes:
        b = self.src.byte()
        if first and b < 200:
            # Connect, so that the other ops are reached.
            how = self.src.byte() % 4
            cred = [[], [member("token", self.token())], [member("api_key", f'"{API_KEY}"')],
                    [member("info", self.json.object())]][how]
            extra = [member("server_subs", self.field("server_subs"))] if b & 1 else []
            return obj([member("id", "1"), member("op", '"connect"'), *cred, *extra])
        if b < 220:
            return self.request()
        if b < 245:
            return self.json.value()
        return self.json.raw_text().encode()  # a binary frame

    def answer(self) -> bytes:
        """The backend's answer to one proxy call (or ``b""``: unavailable)."""
        src, js = self.src, self.json
        b = src.byte()
        if b < 20:
            return b""
        if b < 120:
            names = ["user", "expire_at", "info", "data", "channels", "b64data", "x"]
            members = []
            for _ in range(src.byte() % 4):
                name = src.pick(names)
                value = (self.channel() if name == "user" else
                         "[" + self.channel() + "]" if name == "channels" else js.value())
                members.append(member(name, value))
            return obj([member("result", obj(members))]).encode()
        if b < 160:
            return obj([member("error", obj([member("code", js.number()),
                                             member("message", js.string())]))]).encode()
        if b < 190:
            return obj([member("disconnect", obj([member("code", js.number()),
                                                  member("reason", js.string())]))]).encode()
        return js.value().encode()


def test_one_input(data: bytes) -> None:
    from tidewire.hub.proxy import Proxy

    src = Source(data)
    rig = Rig(proxied=src.flag())
    writer = Writer(src)
    messages = [writer.message(i == 0) for i in range(1 + src.byte() % 8)]
    messages = [m for m in messages if len(m.encode() if isinstance(m, str) else m) <= MAX_SIZE]
    answers = [writer.answer() for _ in range(4)]
    batch = src.byte() % 4  # how many following messages arrive with each one

    class Backend(Proxy):
        """The real proxy's checks; the backend's answers from the input."""

        async def _post(self, session: Any, url: str, event: str, data: bytes,
                        headers: Any) -> bytes:
            strict_json(data)  # what the hub sends its backend is strict too
            answer = answers.pop(0) if answers else b""
            if not answer:
                raise self._failed(event, "timeout", "no answer")
            return answer

    hub = rig.hub
    hub.proxy = Backend(rig.config, hub.metrics)
    hub.proxy._session = object()  # calls reach _post; no HTTP session is made
    session = rig.session(rig.socket(messages, batch))

    async def body() -> None:
        hub.sessions.add(session)
        try:
            await session.run()
        finally:
            hub.sessions.discard(session)

    rig.run(body)


def seeds() -> dict[str, bytes]:
    return {
        "zeros.bin": b"\x00" * 64,
        "proxy.bin": b"\x01" + b"\x10" * 64,
        "mixed.bin": bytes(range(256)),
    }


def main() -> None:
    fuzz_hub(test_one_input)


if __name__ == "__main__":
    main()
