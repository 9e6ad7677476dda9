"""The broker interface: what the hub needs from whatever carries its messages.

A broker assigns each publication its offset, keeps the bounded history,
delivers publications and presence changes to the hub nodes that listen to a
channel, and keeps presence. ``memory`` (``MemoryBroker``) does it in one
process; ``redisbroker`` (``RedisBroker``) does it for many nodes. The hub calls only what is
here, so that a broker plugs in without changes to the hub:

- ``start(sink)`` / ``close()``: ``sink`` receives the events of the channels
  this node listens to, in each channel's order;
- ``listen(channel)`` / ``unlisten(channel)``: the node has its first
  subscriber to ``channel`` / has lost its last one;
- ``publish``, ``history``, ``presence_add``, ``presence_remove``, ``presence``;
- ``publish_many``: several publications in order, as one batch where the
  broker can (Redis: one pipeline, one round trip); by default ``publish``
  for each;
- ``control(message)``: hand ``message`` to every node's sink as a ``Control``,
  this node's included (server-side subscriptions made on one node act on all).

Every coroutine raises ``BrokerUnavailable`` when the broker can't be reached,
which the hub answers with 503 rather than accepting and then losing a message.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..exceptions import TidewireError

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "ClientInfo",
    "Control",
    "EventSink",
    "History",
    "Join",
    "Leave",
    "Event",
    "Position",
    "Publication",
    "Reset",
    "ToPublish",
    "select_history",
]


class BrokerUnavailable(TidewireError):
    """The broker can't be reached; nothing was done."""


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: every offset up to ``offset`` of ``epoch``."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a subscriber is, as presence shows it."""

    client: str
    user: str
    info: str | None = None  # a JSON object, already encoded

    def to_json(self) -> str:
        import json

        body = f'"client":{json.dumps(self.client)},"user":{json.dumps(self.user)}'
        if self.info is not None:
            body += f',"info":{self.info}'
        return "{" + body + "}"


@dataclass(frozen=True, slots=True)
class Publication:
    """One message in a channel. ``data`` is JSON text, encoded once by the
    publisher and never decoded on the way; ``time`` is when it was accepted
    (``time.time()``), for the delivery-latency metric."""

    offset: int
    data: str
    sender: ClientInfo | None = None
    time: float = 0.0


@dataclass(frozen=True, slots=True)
class ToPublish:
    """One publication of a ``publish_many`` batch: ``publish``'s arguments."""

    channel: str
    data: str
    sender: ClientInfo | None = None
    history_size: int = 0
    history_ttl: float = 0.0


@dataclass(frozen=True, slots=True)
class Join:
    client: ClientInfo


@dataclass(frozen=True, slots=True)
class Leave:
    client: ClientInfo


@dataclass(frozen=True, slots=True)
class Reset:
    """The channel's stream has a gap this node can't fill (its broker
    connection was lost for too long, or the broker lost its data): its
    subscribers must resubscribe and recover from history."""


@dataclass(frozen=True, slots=True)
class Control:
    """A message between hub nodes (JSON text), delivered with the channel
    ``""``: every node gets it, in no order relative to channel events."""

    message: str


@dataclass(frozen=True, slots=True)
class History:
    """What ``history()`` found.

    ``top`` is the channel's latest position. ``publications`` are oldest
    first. ``complete`` is true when they are every publication after the
    asked position (always true without one).
    """

    top: Position
    publications: list[Publication]
    complete: bool = True


def select_history(
    top: Position, kept: list[Publication], since: Position | None, limit: int | None
) -> History:
    """What ``Broker.history`` answers, from every publication still ``kept``
    (oldest first) in a channel whose latest position is ``top``."""
    if since is None:
        if limit is not None:
            kept = kept[len(kept) - limit:] if limit > 0 else []
        return History(top, kept)
    if since.epoch != top.epoch or since.offset > top.offset:
        # Another epoch (or a position from the future): everything kept is
        # new to the client, but what it missed before can't be known.
        return History(top, kept, complete=False)
    after = [pub for pub in kept if pub.offset > since.offset]
    first = after[0].offset if after else top.offset + 1
    return History(top, after, complete=first == since.offset + 1)


Event = Publication | Join | Leave | Reset | Control


class EventSink(Protocol):
    def __call__(self, channel: str, event: Event) -> None: ...


class Broker(abc.ABC):
    """The base of every broker; see the module docstring for the contract."""

    @abc.abstractmethod
    async def start(self, sink: EventSink) -> None:
        """Connect; from now on deliver events of listened channels to ``sink``."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop delivering and release every resource."""

    @abc.abstractmethod
    async def listen(self, channel: str) -> None:
        """Deliver ``channel``'s events to this node's sink."""

    @abc.abstractmethod
    async def unlisten(self, channel: str) -> None:
        """Stop delivering ``channel``'s events to this node."""

    @abc.abstractmethod
    async def publish(
        self,
        channel: str,
        data: str,
        *,
        sender: ClientInfo | None = None,
        history_size: int = 0,
        history_ttl: float = 0.0,
    ) -> Position:
        """Give ``data`` the channel's next offset, keep it in the channel's
        history (at most ``history_size`` entries, ``history_ttl`` seconds),
        deliver it to every listening node; return its position."""

    async def publish_many(
        self, batch: Sequence[ToPublish]
    ) -> list[Position | BrokerUnavailable]:
        """Publish each of ``batch`` in order, as ``publish`` does; the list
        holds each one's position, or the ``BrokerUnavailable`` it failed with.
        One caller's publications keep their order of offsets in a channel."""
        out: list[Position | BrokerUnavailable] = []
        for item in batch:
            try:
                out.append(await self.publish(
                    item.channel, item.data, sender=item.sender,
                    history_size=item.history_size, history_ttl=item.history_ttl,
                ))
            except BrokerUnavailable as exc:
                out.append(exc)
        return out

    @abc.abstractmethod
    async def history(
        self, channel: str, *, since: Position | None = None, limit: int | None = None
    ) -> History:
        """The channel's publications: after ``since`` if given (``complete``
        says whether any are missing), else the latest ``limit`` (``None``:
        all kept; ``0``: none, only ``top``)."""

    @abc.abstractmethod
    async def presence_add(self, channel: str, client: ClientInfo, *, notify: bool) -> None:
        """Record ``client`` as subscribed; with ``notify``, deliver a ``Join``."""

    @abc.abstractmethod
    async def presence_remove(self, channel: str, client: ClientInfo, *, notify: bool) -> None:
        """Forget ``client`` in ``channel``; with ``notify``, deliver a ``Leave``."""

    @abc.abstractmethod
    async def presence(self, channel: str) -> list[ClientInfo]:
        """Every client subscribed to ``channel``, on every node."""

    @abc.abstractmethod
    async def control(self, message: str) -> None:
        """Deliver ``message`` to the sink of every node, this one included, as
        a ``Control``; at most once, and only to nodes the broker reaches now."""

    @abc.abstractmethod
    async def channels(self) -> dict[str, int]:
        """Channels with subscribers or history, and how many subscribers
        each has on every node (the hub records every subscriber's presence;
        a namespace's ``presence`` setting only decides who may read it)."""

    @property
    def healthy(self) -> bool:
        """False while the broker is unreachable or doesn't deliver."""
        return True

    @property
    def name(self) -> str:
        """What the broker is, for logs and ``/healthz``; never a password."""
        return type(self).__name__
