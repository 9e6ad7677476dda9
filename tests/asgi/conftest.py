"""A real uvicorn server in the test's loop, with tidewire's engine.

``serve(app, **options)`` starts uvicorn on a socket bound to port 0 (the
listening socket exists before the server starts, so a client can connect at
once), passes ``options`` to ``uvicorn.Config`` (``ws_max_size``,
``ws_ping_interval``...), and shuts it down gracefully on exit. ``http``
picks uvicorn's HTTP protocol; tests of the handshake run on both.

``Probe`` carries what an app saw back to the test: every ASGI event it
received, its scope, and what its ``send`` raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from tests.conftest import timeout
from tidewire.asgi import UvicornProtocol

__all__ = ["Probe", "Server", "bounded", "lifespan"]

Scope = dict[str, Any]
Message = dict[str, Any]


async def bounded(awaitable: Any, seconds: float = 5) -> Any:
    """``awaitable``'s result, or a test failure after ``seconds`` (scaled)."""
    return await asyncio.wait_for(awaitable, timeout(seconds))


def lifespan(state: dict[str, Any]) -> Callable[..., Any]:
    """An app that answers uvicorn's lifespan events and, at startup, puts
    ``state`` into the lifespan state that every connection's scope gets."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "lifespan.shutdown":
            scope["state"].update(state)
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    return app


@dataclass
class Probe:
    """What the app saw, for the test to wait on."""

    scope: asyncio.Future[Scope] = field(default_factory=asyncio.Future)
    events: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    send_error: asyncio.Future[BaseException] = field(default_factory=asyncio.Future)

    async def event(self, seconds: float = 5) -> Message:
        """The next event the app received."""
        return await bounded(self.events.get(), seconds)  # type: ignore[no-any-return]

    async def disconnect(self) -> Message:
        """The app's ``websocket.disconnect`` event, skipping messages before it."""
        while True:
            event = await self.event()
            if event["type"] == "websocket.disconnect":
                return event


@dataclass
class Server:
    server: uvicorn.Server
    port: int
    ticks: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def connections(self) -> list[UvicornProtocol]:
        """The WebSocket connections uvicorn tracks."""
        conns = self.server.server_state.connections
        return [c for c in conns if isinstance(c, UvicornProtocol)]

    def connection(self) -> UvicornProtocol:
        """The one WebSocket connection open, once uvicorn handed it over."""
        conns = self.connections()
        assert len(conns) == 1, conns
        return conns[0]

    async def shutdown(self) -> None:
        """uvicorn's graceful shutdown, as on SIGTERM."""
        self.server.should_exit = True
        await bounded(self.ticks)
        await bounded(self.server.shutdown(), 15)


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test during which tidewire or uvicorn logs a traceback at
    WARNING or above. A test that provokes one on purpose (an app that
    raises) checks it and removes it from ``caplog.records``."""
    yield
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    shown = [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.WARNING and (r.exc_info or r.exc_text)
        and r.name.split(".")[0] in ("tidewire", "uvicorn")
    ]
    assert not shown, f"tracebacks in the log: {shown}"


@pytest.fixture(params=["httptools"])
def http(request: pytest.FixtureRequest) -> str:
    """uvicorn's HTTP protocol; a test parametrizes it to run on both."""
    return str(request.param)


@pytest.fixture
async def serve(
    http: str, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Callable[..., contextlib.AbstractAsyncContextManager[Server]]]:
    caplog.set_level(logging.DEBUG)
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))

    @contextlib.asynccontextmanager
    async def start(app: Any, state: dict[str, Any] | None = None, **options: Any
                    ) -> AsyncIterator[Server]:
        startup = lifespan(state or {})

        async def asgi(scope: Scope, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await startup(scope, receive, send)
            else:
                await app(scope, receive, send)

        options.setdefault("lifespan", "on")
        config = uvicorn.Config(
            asgi, ws=UvicornProtocol, http=http, log_config=None, **options
        )
        server = uvicorn.Server(config)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        config.load()
        server.lifespan = config.lifespan_class(config)
        await bounded(server.startup(sockets=[sock]))
        # uvicorn's ticks: the Date and Server headers, should_exit checks.
        ticks = asyncio.create_task(server.main_loop())
        try:
            yield Server(server, sock.getsockname()[1], ticks)
        finally:
            if not server.should_exit:
                server.should_exit = True
                await bounded(ticks)
                await bounded(server.shutdown(sockets=[sock]), 15)
            sock.close()

    try:
        yield start
        gc.collect()  # "exception was never retrieved" shows when a task dies
    finally:
        loop.set_exception_handler(previous)
    assert not loop_errors, [context.get("message") for context in loop_errors]
