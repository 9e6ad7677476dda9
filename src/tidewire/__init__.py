"""tidewire: WebSockets for Python, done completely and fast.

The asyncio API lives at the top level; ``tidewire.sync`` has the same names
for threads, and ``tidewire.protocol`` is the sans-I/O core under both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .exceptions import (  # noqa: E402
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
    InvalidUTF8,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    TidewireError,
)
from .protocol import (  # noqa: E402
    Close,
    CloseCode,
    DeflateOptions,
    Headers,
    Request,
    Response,
    State,
)

if TYPE_CHECKING:
    from .asyncio import (
        ClientConnection,
        Connection,
        Data,
        Server,
        ServerConnection,
        broadcast,
        connect,
        serve,
        unix_connect,
        unix_serve,
    )

# The asyncio names load on first use, so that importing the sans-I/O core
# (tidewire.protocol) doesn't import asyncio.
_LAZY = {
    "broadcast",
    "ClientConnection",
    "Connection",
    "Data",
    "Server",
    "ServerConnection",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import asyncio as _asyncio

        value = getattr(_asyncio, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tidewire' has no attribute {name!r}")


__all__ = [
    "__version__",
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
    "Close",
    "CloseCode",
    "DeflateOptions",
    "Headers",
    "Request",
    "Response",
    "State",
    "TidewireError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidURI",
    "InvalidHandshake",
    "InvalidMessage",
    "InvalidHeader",
    "InvalidStatus",
    "NegotiationError",
    "ProxyError",
    "ProtocolError",
    "InvalidUTF8",
    "PayloadTooBig",
    "ConcurrencyError",
]
