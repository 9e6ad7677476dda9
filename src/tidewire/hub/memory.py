"""The embedded broker: channels, history and presence in this process's memory.

It serves one hub node. Publishing delivers at once, in the caller's turn of the
event loop, so per-channel order is the order of the ``publish`` calls. History
lives as long as the process: a restart begins a new epoch in every channel, which
clients see as ``recovered: false``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import Sequence

from .broker import (
    Broker,
    BrokerUnavailable,
    ClientInfo,
    Control,
    EventSink,
    History,
    Join,
    Leave,
    Position,
    Publication,
    ToPublish,
    select_history,
)

__all__ = ["MemoryBroker"]

SWEEP_INTERVAL = 30.0  # seconds between sweeps of expired history and idle channels


class _Channel:
    __slots__ = ("epoch", "offset", "history", "presence", "listened")

    def __init__(self) -> None:
        self.epoch = secrets.token_urlsafe(6)
        self.offset = 0
        # (monotonic expiry, publication), oldest first
        self.history: deque[tuple[float, Publication]] = deque()
        self.presence: dict[str, ClientInfo] = {}
        self.listened = False

    def trim(self, now: float) -> None:
        history = self.history
        while history and history[0][0] <= now:
            history.popleft()

    def idle(self) -> bool:
        return not (self.history or self.presence or self.listened)


class MemoryBroker(Broker):
    """The default broker: everything in one process, nothing to run beside it."""

    @property
    def name(self) -> str:
        return "memory"

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._sink: EventSink | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        self._sink = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()

    def sweep(self) -> None:
        """Drop expired history, then channels that hold nothing."""
        now = time.monotonic()
        for name, channel in list(self._channels.items()):
            channel.trim(now)
            if channel.idle():
                del self._channels[name]

    def _channel(self, name: str) -> _Channel:
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel()
        return channel

    def _deliver(self, name: str, channel: _Channel, event: Publication | Join | Leave) -> None:
        if channel.listened and self._sink is not None:
            self._sink(name, event)

    async def listen(self, channel: str) -> None:
        self._channel(channel).listened = True

    async def unlisten(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None:
            state.listened = False

    async def publish(
        self,
        channel: str,
        data: str,
        *,
        sender: ClientInfo | None = None,
        history_size: int = 0,
        history_ttl: float = 0.0,
    ) -> Position:
        return self._publish(channel, data, sender, history_size, history_ttl)

    async def publish_many(
        self, batch: Sequence[ToPublish]
    ) -> list[Position | BrokerUnavailable]:
        return [
            self._publish(p.channel, p.data, p.sender, p.history_size, p.history_ttl)
            for p in batch
        ]

    def _publish(self, channel: str, data: str, sender: ClientInfo | None,
                 history_size: int, history_ttl: float) -> Position:
        state = self._channel(channel)
        state.offset += 1
        pub = Publication(state.offset, data, sender, time.time())
        if history_size > 0 and history_ttl > 0:
            history = state.history
            history.append((time.monotonic() + history_ttl, pub))
            while len(history) > history_size:
                history.popleft()
        self._deliver(channel, state, pub)
        return Position(state.epoch, state.offset)

    async def history(
        self, channel: str, *, since: Position | None = None, limit: int | None = None
    ) -> History:
        state = self._channel(channel)
        state.trim(time.monotonic())
        top = Position(state.epoch, state.offset)
        return select_history(top, [pub for _, pub in state.history], since, limit)

    async def presence_add(self, channel: str, client: ClientInfo, *, notify: bool) -> None:
        state = self._channel(channel)
        state.presence[client.client] = client
        if notify:
            self._deliver(channel, state, Join(client))

    async def presence_remove(self, channel: str, client: ClientInfo, *, notify: bool) -> None:
        state = self._channels.get(channel)
        if state is None or state.presence.pop(client.client, None) is None:
            return
        if notify:
            self._deliver(channel, state, Leave(client))

    async def presence(self, channel: str) -> list[ClientInfo]:
        state = self._channels.get(channel)
        return [] if state is None else list(state.presence.values())

    async def control(self, message: str) -> None:
        if self._sink is not None:
            self._sink("", Control(message))

    async def channels(self) -> dict[str, int]:
        now = time.monotonic()
        out: dict[str, int] = {}
        for name, state in self._channels.items():
            state.trim(now)
            if state.presence or state.history:
                out[name] = len(state.presence)
        return out
