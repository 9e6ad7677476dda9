"""The real-time hub: channels, presence, history and recovery over WebSocket.

``tidewire serve`` runs it; ``Hub`` embeds it in a program. docs/hub.md tells
the concepts, docs/protocol.md the client protocol.
"""

from __future__ import annotations

from .app import Hub, make_broker
from .broker import (
    Broker,
    BrokerUnavailable,
    ClientInfo,
    Control,
    History,
    Join,
    Leave,
    Position,
    Publication,
    ToPublish,
)
from .config import ConfigError, HubConfig, Namespace, ProxyConfig, load_config
from .memory import MemoryBroker

__all__ = [
    "Hub",
    "HubConfig",
    "Namespace",
    "ProxyConfig",
    "ConfigError",
    "load_config",
    "make_broker",
    "Broker",
    "BrokerUnavailable",
    "MemoryBroker",
    "ClientInfo",
    "Control",
    "History",
    "Join",
    "Leave",
    "Position",
    "Publication",
    "ToPublish",
]
