"""WebSocket clients and servers on threads, with the names of ``tidewire``'s
asyncio API: a thread reads each connection, and calls block."""

from __future__ import annotations

from .client import ClientConnection, connect, unix_connect
from .connection import Connection, Data
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
    "Connection",
    "ClientConnection",
    "ServerConnection",
    "Server",
    "Data",
]
