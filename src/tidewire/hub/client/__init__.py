"""``tidewire.hub.client``: Python clients of the hub (docs/hub-client.md).

- ``HubClient``: the asyncio WebSocket client, the twin of tidewire.js:
  subscriptions read with ``async for``, recovery after reconnection,
  backoff, heartbeat, rpc, presence, history, publish.
- ``Backend`` and ``AsyncBackend``: the HTTP API for your backend, over one
  pool of kept-alive connections.

It uses the public API of ``tidewire.asyncio`` only, never the hub's server
modules.
"""

from __future__ import annotations

from .backend import AsyncBackend, Backend
from .backoff import backoff
from .client import HubClient, TokenGetter
from .errors import (
    BackendError,
    ConnectionLost,
    HubClientError,
    HubError,
    NotConnected,
    RequestTimeout,
    TokenError,
)
from .models import (
    ClientInfo,
    DisconnectEvent,
    HistoryResult,
    Join,
    Leave,
    Position,
    PresenceStats,
    Publication,
    Published,
    Session,
    State,
    SubscribedContext,
    SubscriptionEvent,
    SubscriptionState,
    Unsubscribed,
)
from .subscription import Subscription, SubscriptionTokenGetter

__all__ = [
    "HubClient",
    "Subscription",
    "Backend",
    "AsyncBackend",
    "backoff",
    "TokenGetter",
    "SubscriptionTokenGetter",
    "HubClientError",
    "HubError",
    "BackendError",
    "RequestTimeout",
    "ConnectionLost",
    "NotConnected",
    "TokenError",
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
