"""The soak's clients: many subscribers and one publisher, on tidewire's client.

Each ``Subscriber`` is one WebSocket connection on ``/ws`` that connects,
subscribes to each of the run's channels and checks every publication as it
is parsed (an ``on_message`` callback: no task wakes up per message). The ``Publisher`` is a
backend connection (``connect`` with the API key) that publishes
``{"seq": n, "pad": "..."}`` at a steady rate, round robin over the channels.

Since every subscriber is subscribed before the first publication, the
publication ``seq`` of a channel must arrive with offset ``top + 1 + seq``,
``top`` being the offset its subscribe reply gave, and nothing else may come.
A subscriber counts every departure from that: offsets skipped (lost unless
they come later), offsets that come after a greater one (reordered), offsets
that come twice (duplicates), and data whose ``seq`` isn't the one its offset
says (mismatched).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import tidewire
from tidewire.exceptions import ConnectionClosed

__all__ = [
    "Crowd",
    "Subscriber",
    "Publisher",
    "Tally",
    "SwarmError",
    "channel_names",
    "open_subscribers",
]

EXAMPLES = 5  # departures quoted per kind
OPEN_AT_ONCE = 50  # connections being opened together, as a browser crowd would
REQUEST_TIMEOUT = 30.0  # seconds for a reply during setup, on a loaded machine


class SwarmError(RuntimeError):
    """A client couldn't do what the soak needs of it; the message says what."""


def channel_names(count: int, namespace: str) -> list[str]:
    return [f"{namespace}:{i}" for i in range(count)]


@dataclass
class Tally:
    """What every subscriber found, summed; ``examples`` quotes the first few."""

    delivered: int = 0
    lost: int = 0
    reordered: int = 0
    duplicates: int = 0
    mismatched: int = 0
    closed_early: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, text: str) -> None:
        quoted = self.examples.setdefault(kind, [])
        if len(quoted) < EXAMPLES:
            quoted.append(text)


class Crowd:
    """What the subscribers share: their ``tally``, how many have had their
    last publication (``done``, and ``all_done`` once all ``size`` have), and
    ``caught_up()``, for the publisher to wait for them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tally = Tally()
        self.done = 0
        self.all_done = asyncio.Event()
        self.wake_at = math.inf  # deliveries the publisher waits for
        self._waiter: asyncio.Future[None] | None = None

    def finished_one(self) -> None:
        self.done += 1
        if self.done == self.size:
            self.all_done.set()

    def wake(self) -> None:
        self.wake_at = math.inf
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def caught_up(self, deliveries: int) -> None:
        """Return once the subscribers have had ``deliveries`` in all."""
        if self.tally.delivered >= deliveries:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        self.wake_at = deliveries
        try:
            await self._waiter
        finally:
            self._waiter = None


async def _request(ws: tidewire.ClientConnection, op: str, **fields: Any) -> dict[str, Any]:
    """Send one request and read its reply (before any push can come)."""
    await ws.send(json.dumps({"id": op, "op": op, **fields}))
    reply: dict[str, Any] = json.loads(
        await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT)
    )
    if "error" in reply:
        raise SwarmError(f"{op} refused: {reply['error']}")
    return reply["result"]  # type: ignore[no-any-return]


class _Stream:
    """What a subscriber expects next of one channel."""

    __slots__ = ("shift", "next", "end", "missing")

    def __init__(self, top: int, count: int) -> None:
        self.shift = self.next = top + 1  # the offset of seq 0
        self.end = top + count  # the offset of the last publication due
        self.missing: set[int] = set()  # offsets skipped that may still come


class Subscriber:
    """One client of ``crowd`` subscribed to ``channels``; it tells the crowd
    once the last publication due in every channel has come."""

    __slots__ = ("index", "channels", "ws", "crowd", "tally", "streams", "waiting")

    def __init__(self, index: int, channels: list[str], crowd: Crowd) -> None:
        self.index = index
        self.channels = channels
        self.crowd = crowd
        self.tally = crowd.tally
        self.ws: tidewire.ClientConnection | None = None
        self.streams: dict[str, _Stream] = {}
        self.waiting = 0  # channels whose last publication hasn't come yet

    async def open(self, url: str, counts: dict[str, int], compression: bool) -> None:
        """Connect, subscribe, then take publications as they come."""
        ws = self.ws = await tidewire.connect(
            url, compression="deflate" if compression else None
        )
        await _request(ws, "connect")
        for channel in self.channels:
            result = await _request(ws, "subscribe", channel=channel)
            self.expect(channel, result["offset"], counts[channel])
        if not self.waiting:
            self.crowd.finished_one()
        ws.on_message(self.receive)

    def expect(self, channel: str, top: int, count: int) -> None:
        """``channel``, subscribed at offset ``top``, owes ``count`` publications."""
        self.streams[channel] = _Stream(top, count)
        self.waiting += count > 0

    def receive(self, text: str | bytes) -> None:
        """Check one message from the hub (the connection's message callback)."""
        message = json.loads(text)
        tally = self.tally
        stream = self.streams.get(message.get("channel")) if message.get("push") == "pub" else None
        if stream is None:
            tally.note("unexpected", f"subscriber {self.index}: {text[:200]!r}")
            return
        tally.delivered += 1
        if tally.delivered >= self.crowd.wake_at:
            self.crowd.wake()
        offset = message["offset"]
        expected = stream.next
        where = f"subscriber {self.index} ({message['channel']})"
        if offset == expected:
            stream.next = offset + 1
        elif offset > expected:
            stream.missing.update(range(expected, offset))
            stream.next = offset + 1
            tally.note("gaps", f"{where}: offset {offset} after {expected - 1}")
        elif offset in stream.missing:
            stream.missing.discard(offset)
            tally.reordered += 1
            tally.note("reordered", f"{where}: offset {offset} after {stream.next - 1}")
        else:
            tally.duplicates += 1
            tally.note("duplicates", f"{where}: offset {offset} again")
        data = message.get("data")
        seq = data.get("seq") if isinstance(data, dict) else None
        if seq != offset - stream.shift:
            tally.mismatched += 1
            tally.note("mismatched", f"{where}: offset {offset} carries seq {seq}, "
                       f"not {offset - stream.shift}")
        if offset == stream.end:
            self.waiting -= 1
            if not self.waiting:
                self.crowd.finished_one()

    def settle(self) -> None:
        """Count what never came, and a close the soak didn't ask for."""
        tally = self.tally
        for stream in self.streams.values():
            tally.lost += len(stream.missing) + max(0, stream.end - (stream.next - 1))
        ws = self.ws
        if ws is not None and ws.close_code is not None:
            tally.closed_early += 1
            tally.note("closed", f"subscriber {self.index}: closed by the hub with "
                       f"{ws.close_code} {ws.close_reason!r}")

    async def leave(self) -> None:
        """Go, one of three ways by index: unsubscribe then close; close;
        drop the TCP connection without a closing handshake."""
        ws = self.ws
        if ws is None or ws.close_code is not None:
            return
        way = self.index % 3
        if way == 0:
            ws.on_message(None)
            try:
                for channel in self.channels:
                    await _request(ws, "unsubscribe", channel=channel)
            except (ConnectionClosed, SwarmError, asyncio.TimeoutError) as exc:
                self.tally.note("leave", f"subscriber {self.index}: unsubscribe failed: {exc!r}")
        if way in (0, 1):
            await ws.close()
        elif ws.transport is not None:
            ws.transport.abort()


async def open_subscribers(subscribers: list[Subscriber], url: str, counts: dict[str, int],
                           compression: bool) -> None:
    """Open every subscriber, ``OPEN_AT_ONCE`` at a time; raise ``SwarmError``
    saying how many failed, and why the first did."""
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one(sub: Subscriber) -> None:
        async with gate:
            await sub.open(url, counts, compression)

    results = await asyncio.gather(*(one(s) for s in subscribers), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise SwarmError(f"{len(failed)} of {len(subscribers)} subscribers failed to "
                         f"subscribe; the first: {failed[0]!r}")


class Publisher:
    """A backend that publishes ``total`` publications at ``rate`` per second,
    round robin over ``channels``. It awaits ``before(n)`` before publication
    ``n`` (the time that takes is ``held``), and tells ``on_published(n)``
    after each reply the number of replies so far."""

    def __init__(self, url: str, api_key: str, channels: list[str], total: int, rate: float,
                 size: int, before: Callable[[int], Awaitable[None]],
                 on_published: Callable[[int], None]) -> None:
        self.url = url
        self.api_key = api_key
        self.channels = channels
        self.total = total
        self.rate = rate
        self.pad = "x" * max(0, size - len('{"seq":0000,"pad":""}'))
        self.before = before
        self.on_published = on_published
        self.held = 0.0
        self.replies = 0
        self.failures = 0  # error replies, replies out of order, offsets not consecutive
        self.examples: list[str] = []
        self.offsets: dict[str, int] = {}  # per channel: the offset of the last reply
        self.started = self.finished = 0.0
        self._done = asyncio.get_running_loop().create_future()

    async def run(self) -> None:
        """Publish everything, then wait for the last replies; what goes wrong
        on the way is counted in ``failures``, not raised."""
        ws = await tidewire.connect(self.url, compression=None)
        try:
            await _request(ws, "connect", api_key=self.api_key)
            ws.on_message(self._on_reply)
            channels, per = self.channels, len(self.channels)
            self.started = start = time.monotonic()
            for n in range(self.total):
                delay = start + n / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                waited = time.monotonic()
                await self.before(n)
                self.held += time.monotonic() - waited
                ws.send_nowait(
                    f'{{"id":{n},"op":"publish","channel":"{channels[n % per]}",'
                    f'"data":{{"seq":{n // per},"pad":"{self.pad}"}}}}'
                )
                if ws.write_paused:
                    await ws.drain()
            await asyncio.wait_for(self._done, REQUEST_TIMEOUT)
        except ConnectionClosed as exc:
            self._fail(f"the hub closed the publisher's connection: {exc}")
        except asyncio.TimeoutError:
            self._fail(f"{self.total - self.replies} publishes unanswered "
                       f"{REQUEST_TIMEOUT:.0f} s after the last was sent")
        finally:
            self.finished = time.monotonic()
            await ws.close()

    def _fail(self, text: str) -> None:
        self.failures += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)

    def _on_reply(self, text: str | bytes) -> None:
        reply = json.loads(text)
        n = reply.get("id")
        if n != self.replies:
            self._fail(f"reply {self.replies} has id {n}")
        if "error" in reply:
            self._fail(f"publish {n}: {reply['error']}")
        else:
            channel = self.channels[self.replies % len(self.channels)]
            offset = reply["result"]["offset"]
            last = self.offsets.get(channel)
            if last is not None and offset != last + 1:
                self._fail(f"publish {n} to {channel}: offset {offset} after {last}")
            self.offsets[channel] = offset
        self.replies += 1
        self.on_published(self.replies)
        if self.replies == self.total and not self._done.done():
            self._done.set_result(None)
