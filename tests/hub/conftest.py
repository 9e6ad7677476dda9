"""Fixtures of the hub's tests: a hub on a free port, on each broker.

Every test that uses ``hub`` or ``make_hub`` runs twice: on the memory broker
and on the Redis broker, against a real ``redis-server`` (flushed between tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from tidewire.hub import Hub, HubConfig, Namespace

from .backend import backend_fixture  # noqa: F401 - the fixture `backend`
from .helpers import API_KEY, SECRET
from .redis_server import RedisServer

NAMESPACES = {
    "": Namespace(history_size=10, history_ttl=300),
    "chat": Namespace(
        history_size=100, history_ttl=300, presence=True, join_leave=True,
        publish=True, anonymous=True,
    ),
    "news": Namespace(history_size=5, history_ttl=300, anonymous=True),
    "private": Namespace(history_size=10, history_ttl=300, presence=True, publish=True),
}


def config(**changes: Any) -> HubConfig:
    values: dict[str, Any] = dict(
        port=0, api_key=API_KEY, token_secret=SECRET, demo=False, namespaces=NAMESPACES
    )
    values.update(changes)
    return HubConfig(**values)


MakeHub = Callable[..., Awaitable[Hub]]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session's tests that don't stop it."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared redis-server's URL, flushed for this test."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def make_hub(broker_url: str) -> AsyncIterator[MakeHub]:
    """Start hubs with ``await make_hub(**config changes)``; all stop at the end.
    Hubs of one test share one broker: on Redis they are nodes of one hub."""
    async with AsyncExitStack() as stack:

        async def make(**changes: Any) -> Hub:
            changes.setdefault("broker", broker_url)
            return await stack.enter_async_context(Hub(config(**changes)))

        yield make


@pytest.fixture
async def hub(make_hub: MakeHub) -> Hub:
    return await make_hub()

