"""tidewire as uvicorn's WebSocket engine: ``uvicorn app:app --ws tidewire.asgi:UvicornProtocol``.

uvicorn's HTTP protocols (h11 and httptools) parse a request, see an upgrade to
``websocket``, make this class with ``(config=..., server_state=...,
app_state=...)``, hand it the transport and the request's bytes, and step
aside. From there tidewire parses the handshake again with its own core and
runs the connection. uvicorn's options map as:

- ``ws_max_size``: the largest message, in bytes (1009 above it);
- ``ws_ping_interval`` / ``ws_ping_timeout``: keepalive (0 or ``None`` is off);
- ``ws_per_message_deflate``: permessage-deflate on or off;
- ``ws_max_queue``: unused, as by uvicorn's websockets-sansio and wsproto
  engines: reading stops as soon as one message waits for the app, which
  bounds memory tighter than any queue length;
- ``root_path``, ``server_header`` and ``date_header`` (through the server's
  default headers), and lifespan ``state``.

It joins uvicorn's server state: its connections (``shutdown()`` closes them
with 1012 on a graceful shutdown) and its tasks (which the server waits for).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .connection import ASGIConnection

__all__ = ["UvicornProtocol"]

logger = logging.getLogger("uvicorn.error")

_SHUTTING_DOWN = b"Service Unavailable: the server is shutting down.\n"


class UvicornProtocol(ASGIConnection):
    """uvicorn's WebSocket protocol class, with tidewire inside."""

    __slots__ = ("config", "server_state", "connections", "tasks")

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        super().__init__(
            config.loaded_app,
            root_path=config.root_path,
            asgi_version=config.asgi_version,
            app_state=app_state,
            max_size=config.ws_max_size,
            compression=config.ws_per_message_deflate,
            ping_interval=config.ws_ping_interval,
            ping_timeout=config.ws_ping_timeout,
            logger=logger,
            loop=_loop,
        )
        self.config = config
        self.server_state = server_state
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.connections.add(self)

    def _on_closed(self) -> None:
        self.connections.discard(self)

    def _app_started(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _defaults(self) -> Any:
        # Read at each answer: the server renews its Date header every second.
        return self.server_state.default_headers

    def shutdown(self) -> None:
        """uvicorn stops: close with 1012 (service restart) once open, with a
        503 during the handshake; the app's ``receive()`` then gives the
        disconnect, and the server waits for the app to return."""
        transport = self.transport
        if transport is None or self._sock_closed:
            return
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        p = self.protocol
        if not self.accepted:  # handshake or denial: nothing sent yet
            response = p.reject(503, "")
            response.body = _SHUTTING_DOWN
            response.headers["Content-Length"] = str(len(_SHUTTING_DOWN))
            self._add_headers(response.headers, self._defaults())
            self._end_handshake(response)
        elif p.close_sent is None and not p.failed and p.close_rcvd is None:
            self._set_disconnect({"type": "websocket.disconnect", "code": 1012})
            p.send_close(1012)
            self._flush()
        timer = self._close_timer
        if timer is not None:
            timer.cancel()
            self._close_timer = None
        transport.close()

    def __repr__(self) -> str:
        return f"<UvicornProtocol {self.id} {self.protocol.state.name}>"
