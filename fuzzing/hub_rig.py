"""What the hub's two harnesses share: a hub without sockets, and its checks.

``Rig`` is a real ``Hub`` on the memory broker, never started as a server: a
harness hands its ``Session`` a stand-in WebSocket (``Socket``) or calls its
HTTP API directly. Everything the hub writes to a client is kept in
``sent``, including the pushes its broadcasts would send (made by the same
``push_for``), and ``run()`` fails if anything was logged at ERROR or with a
traceback, or if a task's exception went unseen.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cache
from typing import Any

from fuzzing.harness import fuzz
from tests.jsoncheck import strict_json

__all__ = ["SECRET", "API_KEY", "configs", "Socket", "Rig", "check_sent", "fuzz_hub"]

SECRET = "fuzz-token-secret-of-at-least-32-bytes"
API_KEY = "fuzz-api-key"
ALLOWED_ERRORS = set(range(400, 500)) | {501, 503}


@cache
def configs() -> tuple[Any, Any]:
    """Two hub configurations: without a backend proxy, and with every event proxied."""
    from tidewire.hub import HubConfig, Namespace
    from tidewire.hub.config import ProxyConfig

    namespaces = {
        "": Namespace(history_size=10, history_ttl=300),
        "chat": Namespace(history_size=100, history_ttl=300, presence=True, join_leave=True,
                          publish=True, anonymous=True),
        "news": Namespace(history_size=5, history_ttl=300, anonymous=True),
        "private": Namespace(history_size=10, history_ttl=300, presence=True, publish=True,
                             private=True),
        "proxied": Namespace(history_size=3, presence=True, publish=True, anonymous=True,
                             subscribe_proxy=True, publish_proxy=True),
    }
    base: dict[str, Any] = dict(port=0, api_key=API_KEY, token_secret=SECRET, demo=False,
                                max_subscriptions=4)
    url = "http://127.0.0.1:9/"
    proxy = ProxyConfig(connect=url, refresh=url, rpc=url, subscribe=url, publish=url)
    unproxied = {k: v for k, v in namespaces.items() if k != "proxied"}
    return (HubConfig(**base, namespaces=unproxied),
            HubConfig(**base, namespaces=namespaces, proxy=proxy))


class Inbox:
    """The connection's queue as the session sees it: ``take_all`` hands over
    up to ``batch`` of the messages that follow, as if they had arrived together."""

    def __init__(self, messages: list[str | bytes], batch: int) -> None:
        self.pending = list(messages)
        self.batch = batch

    def take_all(self) -> list[str | bytes]:
        taken = self.pending[: self.batch]
        del self.pending[: self.batch]
        return taken


class Socket:
    """A session's WebSocket: hands over ``messages``, keeps how it was closed."""

    def __init__(self, messages: list[str | bytes], batch: int = 0) -> None:
        self.messages = Inbox(messages, batch)
        self.closed: tuple[int, str] | None = None
        self.refused: list[str] = []  # closes the real connection would refuse
        self.request = None
        self.remote_address = ("127.0.0.1", 4242)
        self.id = "fuzz"

        class Protocol:
            state = None  # not OPEN: broadcast() passes it by; pushes are seen in the sink

        self.protocol = Protocol()

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        pending = self.messages.pending
        while pending:
            if self.closed is not None:
                return
            yield pending.pop(0)
            await asyncio.sleep(0)  # let background tasks and pushes run

    async def drain(self) -> None:
        pass

    async def close(self, code: int = 1000, reason: str = "") -> None:
        from tidewire.protocol.frames import check_close_code

        # What the real connection's close() refuses with a ValueError, often
        # in a task whose exception nobody reads: kept, for run() to fail on.
        if not check_close_code(code) or len(reason.encode()) > 123:
            self.refused.append(f"close({code}, {reason!r})")
            raise ValueError(self.refused[-1])
        if self.closed is None:
            self.closed = (code, reason)


class _Logged(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def check_sent(text: str) -> None:
    """``text``, written to a client, is a strict JSON object; an error in it
    has a 4xx, 501 or 503 code and a message."""
    value = strict_json(text)
    assert isinstance(value, dict), text[:300]
    error = value.get("error")
    if error is not None:
        assert isinstance(error, dict), text[:300]
        assert error.get("code") in ALLOWED_ERRORS, text[:500]
        assert isinstance(error.get("message"), str) and error["message"], text[:300]


_loop: asyncio.AbstractEventLoop | None = None


class Rig:
    """One hub for one input; ``sent`` holds what it wrote to clients."""

    def __init__(self, proxied: bool = False) -> None:
        from tidewire.hub import Hub
        from tidewire.hub.memory import MemoryBroker

        self.config = configs()[proxied]
        self.hub = Hub(self.config, broker=MemoryBroker())
        self.sent: list[str] = []
        self.sockets: list[Socket] = []

    def socket(self, messages: list[str | bytes], batch: int = 0) -> Socket:
        self.sockets.append(Socket(messages, batch))
        return self.sockets[-1]

    def session(self, ws: Socket) -> Any:
        """A ``Session`` of the hub on ``ws`` whose writes are kept."""
        from tidewire.hub.session import Session

        sent = self.sent

        class Recorded(Session):
            def write(self, text: str) -> None:
                sent.append(text)
                super().write(text)

        return Recorded(self.hub, ws)

    async def _run(self, body: Callable[[], Awaitable[None]]) -> None:
        from tidewire.hub.broker import Join, Leave, Publication
        from tidewire.hub.session import push_for

        hub = self.hub

        def sink(channel: str, event: Any) -> None:
            if isinstance(event, (Publication, Join, Leave)):
                self.sent.append(push_for(channel, event))  # what broadcast() would send
            hub._on_event(channel, event)

        await hub.broker.start(sink)
        try:
            await body()
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            await hub.broker.close()

    def run(self, body: Callable[[], Awaitable[None]]) -> None:
        """Run ``body`` on the rig's loop, then check the logs and ``sent``."""
        global _loop
        if _loop is None:
            _loop = asyncio.new_event_loop()
        failures: list[dict[str, Any]] = []
        _loop.set_exception_handler(lambda loop, context: failures.append(context))
        logged = _Logged()
        logger = logging.getLogger("tidewire")
        level = logger.level
        logger.addHandler(logged)
        logger.setLevel(logging.DEBUG)
        try:
            _loop.run_until_complete(self._run(body))
        finally:
            logger.removeHandler(logged)
            logger.setLevel(level)
        assert not failures, failures[0].get("message")  # e.g. a task's exception
        for ws in self.sockets:
            assert not ws.refused, f"the hub asked for an invalid {ws.refused[0]}"
        for record in logged.records:
            assert record.levelno < logging.ERROR, record.getMessage()
            assert record.exc_info is None or record.levelno <= logging.DEBUG, record.getMessage()
        for text in self.sent:
            check_sent(text)


# Imported before atheris instruments the rest: instrumenting them costs
# about a minute of start-up, and the coverage that counts is the hub's.
LIBRARIES = ["asyncio", "json", "email.parser", "http.client", "urllib.request", "tomllib",
             "aiohttp", "jwt", "prometheus_client"]


def fuzz_hub(test_one_input: Callable[[bytes], None]) -> None:
    """A hub harness's ``main()``: fuzz with tidewire instrumented."""
    for name in LIBRARIES:
        importlib.import_module(name)
    fuzz(test_one_input, lambda: [importlib.import_module(name) for name in
                                  ("tidewire.hub", "tidewire.hub.memory")])
