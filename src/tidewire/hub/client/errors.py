"""The exceptions of the hub's Python client and backend helper.

::

    HubClientError (TidewireError)
    ├── HubError                  the hub answered a request with an error: code, message
    ├── BackendError              the HTTP API answered an error, or couldn't be reached:
    │                             status (None without an answer), message
    ├── RequestTimeout (TimeoutError)       no reply within the request's timeout
    ├── ConnectionLost (ConnectionError)    the connection closed before the reply
    ├── NotConnected (ConnectionError)      the client is disconnected: nothing was sent
    └── TokenError                the application's ``get_token`` raised (the ``__cause__``)

A ``HubError`` carries the protocol's codes (docs/protocol.md): 400 to 599. Codes
from 500 up mean "try again later"; below, "no".
"""

from __future__ import annotations

from ...exceptions import TidewireError

__all__ = [
    "HubClientError",
    "HubError",
    "BackendError",
    "RequestTimeout",
    "ConnectionLost",
    "NotConnected",
    "TokenError",
]


class HubClientError(TidewireError):
    """The root of the hub client's errors."""


class HubError(HubClientError):
    """An error reply of the hub: ``code`` (400 to 599) and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


class BackendError(HubClientError):
    """An error of the hub's HTTP API: ``status`` (``None`` when no answer
    came: the hub is down or the connection failed) and the hub's ``message``."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message if status is None else f"{status} {message}")
        self.status = status
        self.message = message


class RequestTimeout(HubClientError, TimeoutError):
    """No reply came within the request's timeout."""


class ConnectionLost(HubClientError, ConnectionError):
    """The connection closed before the reply came: the request may or may
    not have been done."""


class NotConnected(HubClientError, ConnectionError):
    """The client is disconnected (never connected, closed, or the hub said
    not to come back): the request was not sent."""


class TokenError(HubClientError):
    """The application's ``get_token`` raised; the exception is the ``__cause__``."""
