"""A real application backend for the proxy tests: aiohttp.web on a free port.

Each event (``/connect``, ``/refresh``, ``/rpc``, ``/subscribe``,
``/publish``) answers what the test scripts, in one of these modes:

- ``ok``: the JSON of ``answers[event]`` (a dict, or a function of the
  request's body returning one), or raw bytes as they are; without one, an
  anonymous user for connect and an empty result for the others;
- ``slow``: no answer until the test ends (past any proxy timeout);
- ``stall``: the headers and half a body, then nothing until the test ends;
- ``500``: HTTP 500;
- ``garbage``: HTTP 200 with a body that isn't JSON;
- ``cut``: HTTP 200 announcing 1,000 bytes, then the connection closes
  after 10 of them.

``down_url()`` is the URL of a port where nothing listens. Every request is
kept, with its headers, and ``await backend.next(event)`` returns the next one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from .redis_server import free_port

Answer = dict[str, Any] | bytes | Callable[[dict[str, Any]], "dict[str, Any] | bytes"]


@dataclass
class Call:
    body: dict[str, Any]
    headers: dict[str, str]


class Backend:
    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.modes: dict[str, str | list[str]] = {}  # a list: one per call, the last repeats
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers per event
        self.calls: dict[str, asyncio.Queue[Call]] = {}
        self.count: dict[str, int] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{event}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, event: str) -> str:
        return f"http://127.0.0.1:{self.port}/{event}"

    def urls(self, *events: str) -> dict[str, str]:
        return {event: self.url(event) for event in events}

    def queue(self, event: str) -> asyncio.Queue[Call]:
        return self.calls.setdefault(event, asyncio.Queue())

    async def next(self, event: str) -> Call:
        """The next request of ``event`` (waiting for it if need be)."""
        return await self.queue(event).get()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        event = request.match_info["event"]
        body = json.loads(await request.read())
        self.count[event] = self.count.get(event, 0) + 1
        self.queue(event).put_nowait(Call(body, dict(request.headers)))
        mode = self.modes.get(event, "ok")
        if isinstance(mode, list):
            mode = mode.pop(0) if len(mode) > 1 else mode[0]
        if mode == "slow":
            await self._release.wait()
            return web.Response(status=204)
        if mode == "500":
            return web.Response(status=500, text="internal server error")
        if mode == "garbage":
            return web.Response(status=200, text="<html>surprise</html>",
                                content_type="text/html")
        if mode in ("stall", "cut"):
            response = web.StreamResponse(status=200)
            response.content_length = 1000
            response.content_type = "application/json"
            await response.prepare(request)
            await response.write(b'{"result": ')
            if mode == "cut":
                assert request.transport is not None
                request.transport.close()
            else:
                await self._release.wait()
            return response
        default = {"result": {"user": ""}} if event == "connect" else {"result": {}}
        answer = self.answers.get(event, default)
        if callable(answer):
            answer = answer(body)
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return web.Response(status=200, body=raw, content_type="application/json",
                            headers=self.headers.get(event))


def down_url(event: str) -> str:
    """A URL where nothing listens: the backend is down."""
    return f"http://127.0.0.1:{free_port()}/{event}"


@pytest.fixture(name="backend")
async def backend_fixture() -> AsyncIterator[Backend]:
    """The application's backend, for a hub's proxy to ask."""
    app = Backend()
    await app.start()
    yield app
    await app.close()
