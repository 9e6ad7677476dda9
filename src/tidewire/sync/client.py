"""WebSocket clients on threads: ``connect()`` and ``ClientConnection``."""

from __future__ import annotations

import logging
import socket
import ssl as ssl_module
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import protocol as proto
from ..protocol.client import USER_AGENT
from ..protocol.connection import DEFAULT_MAX_SIZE
from ..protocol.deflate import DeflateOptions
from ..protocol.http import Headers
from ..proxy import ProxySetting, choose_proxy, open_tunnel_sync
from .connection import RECV_SIZE, Connection, remaining, set_nodelay

__all__ = ["connect", "unix_connect", "ClientConnection"]

logger = logging.getLogger("tidewire.client")

HeadersLike = Headers | Mapping[str, str] | Sequence[tuple[str, str]]


class ClientConnection(Connection):
    """The client's side of one connection, returned by ``connect()``."""

    protocol: proto.ClientProtocol

    def __init__(self, sock: socket.socket, protocol: proto.ClientProtocol, **kwargs: Any) -> None:
        super().__init__(sock, logger=logger, **kwargs)
        self.protocol = protocol
        protocol.defer_failures = True  # answer earlier messages before failing

    def _handshake(self, deadline: float | None) -> None:
        """Send the upgrade request and read the response; raise
        ``InvalidHandshake`` if it isn't a valid 101, ``TimeoutError`` after
        ``deadline``."""
        p = self.protocol
        p.send_request(p.connect())
        self.sock.sendall(b"".join(p.data_to_send()))
        while p.state is proto.State.CONNECTING and p.handshake_exc is None:
            self.sock.settimeout(remaining(deadline))
            data = self.sock.recv(RECV_SIZE)
            with self._lock:
                if data:
                    p.receive_data(data)
                else:
                    p.receive_eof()
                self._deliver(p.events_received())
        if p.handshake_exc is not None:
            raise p.handshake_exc
        self.sock.settimeout(None)


def _open_socket(
    uri: proto.WebSocketURI, unix_path: str | None, proxy_url: str | None, timeout: float | None
) -> socket.socket:
    if unix_path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(unix_path)
        except BaseException:
            sock.close()
            raise
        return sock
    if proxy_url is not None:
        return open_tunnel_sync(proxy_url, uri, timeout)
    return socket.create_connection((uri.host, uri.port), timeout)


def _headers(value: HeadersLike | None) -> Headers | None:
    if value is None or isinstance(value, Headers):
        return value
    items = value.items() if isinstance(value, Mapping) else value
    return Headers(items)


def connect(
    uri: str,
    *,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    additional_headers: HeadersLike | None = None,
    user_agent_header: str | None = USER_AGENT,
    compression: str | None = "deflate",
    deflate_options: DeflateOptions | None = None,
    open_timeout: float | None = 10,
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    close_timeout: float | None = 10,
    max_size: int | None = DEFAULT_MAX_SIZE,
    max_queue: int | None = 16,
    ssl: ssl_module.SSLContext | bool | None = None,
    unix_path: str | None = None,
    proxy: ProxySetting = True,
    sock: socket.socket | None = None,
    server_hostname: str | None = None,
) -> ClientConnection:
    """Open a WebSocket connection to ``uri``; use it in a ``with`` block
    or call ``close()`` when done.

    The connection goes through the proxy that ``proxy`` names, by default
    the one the environment gives (see ``tidewire.proxy``); to the Unix socket
    at ``unix_path``; or over ``sock``, a socket connected already. ``wss://``
    verifies the server's certificate with the system's CAs unless ``ssl``
    gives another context. Raise ``InvalidURI``, ``OSError`` when the
    connection is refused, ``InvalidHandshake`` (``InvalidStatus`` for a
    refusal, ``ProxyError``) or ``TimeoutError`` after ``open_timeout``.
    """
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression: {compression!r}")
    wsuri = proto.parse_uri(uri)
    if wsuri.secure and ssl is None:
        ssl = True
    if not wsuri.secure and ssl:
        raise ValueError("ssl given for a ws:// URI; use wss://")
    protocol = proto.ClientProtocol(
        wsuri,
        origin=origin,
        subprotocols=subprotocols,
        compression=(deflate_options or DeflateOptions()) if compression else None,
        extra_headers=_headers(additional_headers),
        user_agent=user_agent_header,
        max_size=max_size,
    )
    if unix_path is not None or sock is not None:
        proxy = None
    proxy_url = choose_proxy(wsuri, proxy)
    deadline = None if open_timeout is None else time.monotonic() + open_timeout
    try:
        if sock is None:
            sock = _open_socket(wsuri, unix_path, proxy_url, remaining(deadline))
        try:
            set_nodelay(sock)
            sock.settimeout(remaining(deadline))
            if ssl:
                context = ssl if isinstance(ssl, ssl_module.SSLContext) else None
                context = context or ssl_module.create_default_context()
                sock = context.wrap_socket(sock, server_hostname=server_hostname or wsuri.host)
            connection = ClientConnection(
                sock,
                protocol,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=close_timeout,
                max_queue=max_queue,
            )
            connection._handshake(deadline)
        except BaseException:
            sock.close()
            raise
    except TimeoutError:
        raise TimeoutError(
            f"timed out after {open_timeout}s opening {wsuri.host}:{wsuri.port}"
        ) from None
    connection._start()
    return connection


def unix_connect(path: str, uri: str = "ws://localhost/", **kwargs: Any) -> ClientConnection:
    """Like ``connect()``, over the Unix socket at ``path``; ``uri`` gives the
    Host header and the path of the request."""
    return connect(uri, unix_path=path, **kwargs)
