"""The sans-I/O core: RFC 6455 and RFC 7692 as bytes in, events and bytes out.

Nothing here does I/O, keeps time or imports asyncio: ``asyncio/`` and ``sync/``
drive the same objects.
"""

from __future__ import annotations

from .client import ClientProtocol
from .connection import DEFAULT_MAX_SIZE, Connection, Event, Side, State
from .deflate import DeflateOptions
from .frames import Close, CloseCode, Opcode, Ping, Pong
from .http import Headers, Request, Response
from .server import ServerProtocol
from .uri import WebSocketURI, parse_uri

__all__ = [
    "ClientProtocol",
    "ServerProtocol",
    "Connection",
    "Event",
    "Side",
    "State",
    "DEFAULT_MAX_SIZE",
    "DeflateOptions",
    "Close",
    "CloseCode",
    "Opcode",
    "Headers",
    "Request",
    "Response",
    "Ping",
    "Pong",
    "WebSocketURI",
    "parse_uri",
]
