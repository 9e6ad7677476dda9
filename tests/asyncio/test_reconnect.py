"""async for ws in connect(uri): reconnection with backoff, and when it stops."""

from __future__ import annotations

import pytest

import tidewire
from tidewire import ConnectionClosed, InvalidStatus, Request, Response, ServerConnection

from .test_connection import within

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


async def test_reconnects_after_going_away_and_stops_on_1000() -> None:
    visits = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal visits
        visits += 1
        await ws.send(f"visit {visits}")
        # Three restarts (1001), then a normal close: don't come back.
        await ws.close(1001 if visits < 4 else 1000)

    seen = []
    async with tidewire.serve(handler, "127.0.0.1", 0) as server:

        async def run() -> None:
            async for ws in tidewire.connect(f"ws://127.0.0.1:{server.port}/", **FAST):
                try:
                    async for message in ws:
                        seen.append(message)
                except ConnectionClosed:
                    continue

        await within(run(), 10)
    assert seen == ["visit 1", "visit 2", "visit 3", "visit 4"]


async def test_retries_while_server_answers_503() -> None:
    attempts = 0

    def busy(ws: ServerConnection, request: Request) -> Response | None:
        nonlocal attempts
        attempts += 1
        return ws.respond(503, "try later\n") if attempts < 3 else None

    async def bye(ws: ServerConnection) -> None:
        await ws.close(1000)

    async with tidewire.serve(bye, "127.0.0.1", 0, process_request=busy) as server:
        connections = 0

        async def run() -> None:
            nonlocal connections
            async for _ in tidewire.connect(f"ws://127.0.0.1:{server.port}/", **FAST):
                connections += 1

        await within(run(), 10)
    assert attempts == 3 and connections == 1


async def test_refusal_with_4xx_stops_at_once() -> None:
    def deny(ws: ServerConnection, request: Request) -> Response:
        return ws.respond(403, "go away\n")

    async def never(ws: ServerConnection) -> None:
        raise AssertionError("not reached")

    async with tidewire.serve(never, "127.0.0.1", 0, process_request=deny) as server:
        with pytest.raises(InvalidStatus) as info:
            async for _ in tidewire.connect(f"ws://127.0.0.1:{server.port}/", **FAST):
                pass
        assert info.value.response.status == 403


async def test_leaving_the_loop_closes_the_connection() -> None:
    async def stay(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with tidewire.serve(stay, "127.0.0.1", 0) as server:
        async for ws in tidewire.connect(f"ws://127.0.0.1:{server.port}/", **FAST):  # noqa: B007
            break
        await within(ws.wait_closed())
        assert ws.protocol.close_sent is not None and ws.protocol.close_sent.code == 1000


def test_backoff_grows_exponentially_with_jitter() -> None:
    c = tidewire.connect("ws://localhost/", backoff_initial=1, backoff_max=8)
    for attempt, cap in [(0, 1), (1, 2), (2, 4), (3, 8), (10, 8)]:
        delays = [c._backoff(attempt, OSError()) for _ in range(50)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # jitter spreads over the whole range
