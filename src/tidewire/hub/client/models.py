"""What the hub's client hands to the application: positions, publications,
presence, and the events of subscriptions. Plain frozen dataclasses, built from
the hub's JSON (docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "State",
    "SubscriptionState",
    "Position",
    "ClientInfo",
    "Publication",
    "Session",
    "SubscribedContext",
    "Join",
    "Leave",
    "Unsubscribed",
    "SubscriptionEvent",
    "DisconnectEvent",
    "HistoryResult",
    "PresenceStats",
    "Published",
]

State = Literal["disconnected", "connecting", "connected"]
SubscriptionState = Literal["unsubscribed", "subscribing", "subscribed"]


@dataclass(frozen=True)
class Position:
    """A place in a channel's stream: everything up to ``offset`` of ``epoch``."""

    epoch: str
    offset: int

    def wire(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "offset": self.offset}


@dataclass(frozen=True)
class ClientInfo:
    """A client as presence shows it, and as the sender of its publications."""

    client: str
    user: str
    info: dict[str, Any] | None = None

    @classmethod
    def parse(cls, value: dict[str, Any]) -> ClientInfo:
        return cls(str(value.get("client", "")), str(value.get("user", "")), value.get("info"))


@dataclass(frozen=True)
class Publication:
    """One publication of a channel. ``sender`` is the publishing client,
    ``None`` when a backend published."""

    channel: str
    epoch: str
    offset: int
    data: Any
    sender: ClientInfo | None = None

    @classmethod
    def parse(cls, channel: str, epoch: str, value: dict[str, Any]) -> Publication:
        sender = value.get("from")
        return cls(channel, epoch, value["offset"], value.get("data"),
                   ClientInfo.parse(sender) if isinstance(sender, dict) else None)


@dataclass(frozen=True)
class Session:
    """The hub's answer to ``connect``: this connection's id, its user
    (``""`` when anonymous), the hub's version, the seconds between pings,
    the expiry (Unix seconds) and what the connect proxy returned."""

    client: str
    user: str
    version: str
    heartbeat: float
    expires: float | None = None
    data: Any = None

    @classmethod
    def parse(cls, value: dict[str, Any]) -> Session:
        return cls(value["client"], value["user"], value.get("version", ""),
                   value.get("heartbeat", 0), value.get("expires"), value.get("data"))


@dataclass(frozen=True)
class SubscribedContext:
    """A subscription began (``resubscribed`` false) or began again after a
    reconnection (true). ``recovered`` is true when the hub proved that
    nothing was missed since the last position: what was missed follows as
    publications. False on a first subscription without ``since``, and when
    publications may have been lost (the epoch changed, or the gap is older
    than the channel's history): reload the state from your backend."""

    channel: str
    epoch: str
    offset: int
    resubscribed: bool
    recovered: bool
    presence: list[ClientInfo] | None = None


@dataclass(frozen=True)
class Join:
    """A client subscribed to ``channel`` (where join and leave pushes are on)."""

    channel: str
    client: ClientInfo


@dataclass(frozen=True)
class Leave:
    """A client left ``channel``."""

    channel: str
    client: ClientInfo


@dataclass(frozen=True)
class Unsubscribed:
    """The hub ended the subscription (your backend's ``/api/unsubscribe``)."""

    channel: str


SubscriptionEvent = SubscribedContext | Publication | Join | Leave | Unsubscribed


@dataclass(frozen=True)
class DisconnectEvent:
    """A connection, or an attempt at one, ended: its close code (1006 when
    it failed or the client gave up on it), its reason, whether the client
    will reconnect by itself, and after how many seconds."""

    code: int
    reason: str
    reconnect: bool
    delay: float | None


@dataclass(frozen=True)
class HistoryResult:
    """A channel's publications, oldest first, with its latest position;
    ``recovered`` when asked ``since`` a position."""

    epoch: str
    offset: int
    publications: list[Publication]
    recovered: bool | None = None

    @classmethod
    def parse(cls, channel: str, value: dict[str, Any]) -> HistoryResult:
        epoch = value["epoch"]
        return cls(epoch, value["offset"],
                   [Publication.parse(channel, epoch, p) for p in value.get("publications", [])],
                   value.get("recovered"))


@dataclass(frozen=True)
class PresenceStats:
    """How many clients are subscribed, and how many distinct users they are."""

    num_clients: int
    num_users: int


@dataclass(frozen=True)
class Published:
    """Where a publication of the HTTP API landed."""

    channel: str
    epoch: str
    offset: int

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)


def presence_list(value: dict[str, Any]) -> list[ClientInfo]:
    return [ClientInfo.parse(c) for c in value.get("clients", [])]
