"""Fixtures of the framework tests: an ASGI app under uvicorn with
``ws=UvicornProtocol``, in the test's own event loop, on a free port of
127.0.0.1; clients are tidewire's asyncio client over real sockets.

The server runs in the test's loop, so each test runs on the standard loop and
on uvloop (tests/conftest.py), and a test can look at what the app saw.
Nothing may log an error or a traceback meanwhile: uvicorn, tidewire, the
framework or the app (``server_errors``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import uvicorn

from tidewire.asgi import UvicornProtocol

from ..conftest import timeout

T = TypeVar("T")


class Served:
    """An app that uvicorn serves; ``url(path)`` is its WebSocket address."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        self.port: int = server.servers[0].sockets[0].getsockname()[1]

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def serve_app(app: Any, **options: Any) -> AsyncIterator[Served]:
    """Serve ``app`` as ``uvicorn.run(app, ws=UvicornProtocol, **options)``
    would, until the block ends; then shut down gracefully, as on Ctrl-C."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=UvicornProtocol, log_config=None, **options
    )
    server = uvicorn.Server(config)
    # What Server.serve() does, minus its signal handlers.
    config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    assert server.started, "uvicorn didn't start"
    ticks = asyncio.create_task(server.main_loop())  # the Date header, each second
    try:
        yield Served(server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(ticks, timeout(5))
        await asyncio.wait_for(server.shutdown(), timeout(20))


async def within(awaitable: Awaitable[T], seconds: float = 5) -> T:
    """``await`` it, failing the test after ``seconds`` (scaled)."""
    return await asyncio.wait_for(awaitable, timeout(seconds))


class ErrorRecords(logging.Handler):
    """Keeps every record at ERROR or above, and every one with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def server_errors() -> Iterator[ErrorRecords]:
    """Fail a test during which anything logs an error or a traceback."""
    handler = ErrorRecords()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    if handler.records:
        shown = "\n".join(logging.Formatter().format(r) for r in handler.records[:3])
        pytest.fail(f"{len(handler.records)} error(s) logged:\n{shown}", pytrace=False)
