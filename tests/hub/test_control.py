"""Control messages between hub nodes, on both brokers: ``Broker.control``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest

from tidewire.hub import Broker, Control, Publication, make_broker

from .helpers import within

Node = tuple[Broker, "asyncio.Queue[tuple[str, Any]]"]


@pytest.fixture
async def start_node(broker_url: str) -> AsyncIterator[Callable[[], Any]]:
    """Start a broker of the test's kind with a sink that queues its events;
    on Redis, each one is a node of one hub."""
    async with AsyncExitStack() as stack:

        async def start() -> Node:
            broker = make_broker(broker_url)
            events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            await broker.start(lambda channel, event: events.put_nowait((channel, event)))
            stack.push_async_callback(broker.close)
            return broker, events

        yield start


async def test_a_control_message_reaches_the_sending_node(start_node: Any) -> None:
    broker, events = await start_node()
    await broker.control('{"op": "subscribe"}')
    assert await within(events.get()) == ("", Control('{"op": "subscribe"}'))


async def test_control_messages_come_apart_from_channel_events(start_node: Any) -> None:
    broker, events = await start_node()
    await broker.listen("chat:x")
    await broker.publish("chat:x", '"hello"')
    await broker.control("one")
    got = [await within(events.get()) for _ in range(2)]
    assert got[0][0] == "chat:x" and isinstance(got[0][1], Publication)
    assert got[1] == ("", Control("one"))


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)
async def test_a_control_message_reaches_every_node_as_soon_as_it_started(
    start_node: Any,
) -> None:
    a, a_events = await start_node()
    for i in range(3):
        # A node that has just started hears what another one says next.
        b, b_events = await start_node()
        await a.control(f"message {i}")
        assert await within(b_events.get()) == ("", Control(f"message {i}"))
    assert [(await within(a_events.get()))[1].message for _ in range(3)] == [
        "message 0", "message 1", "message 2"
    ]
    assert a_events.empty()
