"""WebSocket clients and servers on asyncio."""

from __future__ import annotations

from .client import ClientConnection, connect, unix_connect
from .connection import Connection, Data
from .fanout import broadcast
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "connect",
    "serve",
    "broadcast",
    "unix_connect",
    "unix_serve",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "Server",
    "Data",
]
