"""Fixtures of the hub's tests: a hub on a free port, on the memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tidewire.hub import Hub, HubConfig, Namespace

from .helpers import API_KEY, SECRET

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


@pytest.fixture
async def make_hub() -> AsyncIterator[MakeHub]:
    """Start hubs with ``await make_hub(**config changes)``; all stop at the end."""
    async with AsyncExitStack() as stack:

        async def make(**changes: Any) -> Hub:
            return await stack.enter_async_context(Hub(config(**changes)))

        yield make


@pytest.fixture
async def hub(make_hub: MakeHub) -> Hub:
    return await make_hub()
