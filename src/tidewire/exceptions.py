"""Every exception that tidewire raises.

::

    TidewireError
    ├── ConnectionClosed
    │   ├── ConnectionClosedOK          close code 1000 or 1001 both ways
    │   └── ConnectionClosedError       anything else, including no close frame
    ├── InvalidURI (ValueError)         a ws:// or wss:// URI that can't be used
    ├── InvalidHandshake                the opening handshake failed
    │   ├── InvalidMessage              malformed HTTP; carries an HTTP status
    │   ├── InvalidHeader               a header is missing, repeated or wrong
    │   ├── InvalidStatus               the server answered something else than 101
    │   ├── NegotiationError            no agreement on an extension or subprotocol
    │   └── ProxyError                  the proxy refused or failed the tunnel
    ├── ProtocolError                   the peer broke RFC 6455 or RFC 7692
    │   ├── InvalidUTF8 (1007)
    │   └── PayloadTooBig (1009)
    ├── ConcurrencyError (RuntimeError) two coroutines or threads read at once
    └── ClientDisconnected (OSError)    an ASGI app sent to a closed connection

Errors that come from the peer carry a hint for the answer: ``ProtocolError`` has
the close code to send, ``InvalidHandshake`` the HTTP status to reply with.
Misuse of the API (a bad close code given to ``close()``, sending a non-string)
raises the standard ``ValueError`` or ``TypeError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.frames import Close
    from .protocol.http import Response

__all__ = [
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
    "ClientDisconnected",
]


class TidewireError(Exception):
    """Base class of every tidewire exception."""


class ConnectionClosed(TidewireError):
    """The connection is closed; raised by ``recv()``, ``send()`` and friends.

    ``rcvd`` is the close frame received from the peer and ``sent`` the one we
    sent, each ``None`` when there was none. ``rcvd_then_sent`` tells which came
    first when both exist. The exception that caused the closure, if any, is the
    ``__cause__``.
    """

    def __init__(
        self,
        rcvd: Close | None,
        sent: Close | None,
        rcvd_then_sent: bool | None = None,
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        # The message is made by __str__ when asked: a server that closes
        # thousands of connections catches most of these unread.
        super().__init__(rcvd, sent, rcvd_then_sent)

    def __str__(self) -> str:
        if self.rcvd is None and self.sent is None:
            return "no close frame received or sent"
        if self.rcvd is None:
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"

    @property
    def code(self) -> int:
        """The close code the peer sent, 1006 when it sent none."""
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason the peer sent, empty when it sent none."""
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed cleanly with 1000 (normal) or 1001 (going away)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code, or without a close handshake."""


class InvalidURI(TidewireError, ValueError):
    """A URI that is not a valid ws:// or wss:// URI."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(f"{uri!r} isn't a valid WebSocket URI: {msg}")


class InvalidHandshake(TidewireError):
    """The opening handshake failed. ``status`` is the HTTP status to answer."""

    status = 400


class InvalidMessage(InvalidHandshake):
    """Malformed or oversized HTTP request or response."""

    def __init__(self, msg: str, status: int = 400) -> None:
        self.status = status
        super().__init__(msg)


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing, repeated or has a wrong value."""

    def __init__(self, name: str, msg: str, status: int = 400) -> None:
        self.name = name
        self.status = status
        super().__init__(f"{name} header: {msg}")


class InvalidStatus(InvalidHandshake):
    """The server refused the upgrade: it answered with a status other than 101."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(
            f"server rejected WebSocket connection: HTTP {response.status}"
        )


class NegotiationError(InvalidHandshake):
    """Extension or subprotocol negotiation failed."""


class ProxyError(InvalidHandshake):
    """The proxy can't be used, or refused or failed to open the tunnel."""


class ProtocolError(TidewireError):
    """The peer broke the protocol. ``code`` is the close code to answer with."""

    code = 1002


class InvalidUTF8(ProtocolError):
    """A text message or a close reason is not valid UTF-8."""

    code = 1007


class PayloadTooBig(ProtocolError):
    """A frame or a message exceeds the configured limit."""

    code = 1009


class ConcurrencyError(TidewireError, RuntimeError):
    """Two coroutines or threads called ``recv()`` at the same time."""


class ClientDisconnected(TidewireError, OSError):
    """An ASGI application called ``send()`` on a connection that is closed or
    closing: the ``OSError`` subclass that the ASGI spec (2.4 and later) asks
    servers to raise. The ``ConnectionClosed`` that tells how it closed, if
    any, is the ``__cause__``."""
