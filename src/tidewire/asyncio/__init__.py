"""WebSocket clients and servers on asyncio."""

from __future__ import annotations

from .client import ClientConnection, connect
from .connection import Connection, Data
from .fanout import broadcast
from .server import Server, ServerConnection, serve

__all__ = [
    "connect",
    "serve",
    "broadcast",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "Server",
    "Data",
]
