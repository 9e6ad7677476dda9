"""A hub client for tests: requests matched to replies, pushes kept in order."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
import jwt

import tidewire
from tidewire.hub import Hub

from ..conftest import timeout
from ..jsoncheck import strict_json

T = TypeVar("T")

SECRET = "test-token-secret-of-at-least-32-bytes"
API_KEY = "test-api-key"


def within(aw: Awaitable[T], seconds: float = 5) -> Awaitable[T]:
    return asyncio.wait_for(aw, timeout(seconds))


async def _strict_body(response: httpx.Response) -> None:
    if response.headers.get("content-type", "").startswith("application/json"):
        await response.aread()
        strict_json(response.content)


def http_client(hub: Hub, **options: Any) -> httpx.AsyncClient:
    """An HTTP client of ``hub`` that checks every JSON answer as strict JSON."""
    options.setdefault("timeout", timeout(5))
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{hub.port}", event_hooks={"response": [_strict_body]},
        **options,
    )


def token(sub: str = "alice", **claims: Any) -> str:
    return jwt.encode({"sub": sub, **claims}, SECRET, algorithm="HS256")


class ReplyError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class Client:
    """One connection to a hub's ``/ws``."""

    def __init__(self, ws: tidewire.ClientConnection) -> None:
        self.ws = ws
        self.pushes: deque[dict[str, Any]] = deque()
        self._next_id = 0
        self.connected: dict[str, Any] = {}

    @classmethod
    async def open(
        cls, hub: Hub, *, connect: bool = True, headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> Client:
        ws = await within(
            tidewire.connect(f"ws://127.0.0.1:{hub.port}/ws", additional_headers=headers)
        )
        client = cls(ws)
        if connect:
            client.connected = await client.request("connect", **fields)
        return client

    async def send(self, message: Any) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def _read(self) -> dict[str, Any]:
        """The next message, which must be strict JSON: every reply and push
        a test reads is checked as a browser would need it."""
        value = strict_json(await within(self.ws.recv()))
        assert isinstance(value, dict)
        return value

    async def reply(self, rid: Any) -> dict[str, Any]:
        """The reply to request ``rid``; pushes that come first are kept."""
        while True:
            message = await self._read()
            if "push" in message:
                self.pushes.append(message)
                continue
            assert message.get("id") == rid, message
            return message

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request; return its result or raise ``ReplyError``."""
        self._next_id += 1
        rid = self._next_id
        await self.send({"id": rid, "op": op, **fields})
        message = await self.reply(rid)
        if "error" in message:
            raise ReplyError(message["error"]["code"], message["error"]["message"])
        result = message["result"]
        assert isinstance(result, dict)
        return result

    async def push(self, kind: str | None = None) -> dict[str, Any]:
        """The next push (of ``kind``, skipping others)."""
        while True:
            message = self.pushes.popleft() if self.pushes else await self._read()
            assert "push" in message, message
            if kind is None or message["push"] == kind:
                return message

    async def pubs(self, n: int) -> list[Any]:
        """The data of the next ``n`` publications, checking offsets increase."""
        out, last = [], None
        for _ in range(n):
            message = await self.push("pub")
            if last is not None:
                assert message["offset"] == last + 1, message
            last = message["offset"]
            out.append(message["data"])
        return out

    async def error(self, op: str, **fields: Any) -> tuple[int, str]:
        """The code and message of the error that ``op`` must get."""
        try:
            result = await self.request(op, **fields)
        except ReplyError as exc:
            return exc.code, exc.message
        raise AssertionError(f"{op} succeeded: {result}")

    async def closed(self) -> tuple[int | None, str | None]:
        """Wait for the hub to close the connection; its code and reason."""
        try:
            while True:
                await within(self.ws.recv())
        except tidewire.ConnectionClosed:
            pass
        await within(self.ws.wait_closed())
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        await self.ws.close()


def expiring(seconds: float) -> int:
    return int(time.time() + seconds)
