"""ws:// and wss:// URIs (RFC 6455 section 3)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]


@dataclass(frozen=True)
class WebSocketURI:
    secure: bool
    host: str
    port: int
    path: str  # resource name: path and query
    user: str | None = None
    password: str | None = None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and check a WebSocket URI; raise ``InvalidURI``."""
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme must be ws or wss")
    if not parsed.hostname:
        raise InvalidURI(uri, "no host")
    if parsed.fragment:
        raise InvalidURI(uri, "a WebSocket URI has no fragment")
    secure = parsed.scheme == "wss"
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    # Keep the request line valid whatever the user typed.
    path = urllib.parse.quote(path, safe="/%:@!$&'()*+,;=?~-._")
    return WebSocketURI(
        secure=secure,
        host=parsed.hostname,
        port=port if port is not None else (443 if secure else 80),
        path=path,
        user=urllib.parse.unquote(parsed.username) if parsed.username else None,
        password=urllib.parse.unquote(parsed.password) if parsed.password else None,
    )
