"""tidewire as the WebSocket engine of ASGI servers.

``uvicorn app:app --ws tidewire.asgi:UvicornProtocol`` (or
``uvicorn.run(app, ws="tidewire.asgi:UvicornProtocol")``) serves an ASGI app's
WebSocket endpoints (FastAPI, Starlette, Django Channels...) with tidewire's
protocol core and connection machinery. See docs/asgi.md.
"""

from __future__ import annotations

from ..exceptions import ClientDisconnected
from .connection import SPEC_VERSION, ASGIConnection
from .uvicorn import UvicornProtocol

__all__ = ["UvicornProtocol", "ASGIConnection", "ClientDisconnected", "SPEC_VERSION"]
