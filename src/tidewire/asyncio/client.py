"""WebSocket clients on asyncio: ``connect()`` and ``ClientConnection``."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from typing import Any, cast

from .. import protocol as proto
from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from ..protocol.client import USER_AGENT
from ..protocol.connection import DEFAULT_MAX_SIZE
from ..protocol.deflate import DeflateOptions
from ..protocol.http import Headers
from ..proxy import ProxySetting, choose_proxy, open_tunnel
from .connection import Connection

__all__ = ["connect", "unix_connect", "ClientConnection"]

logger = logging.getLogger("tidewire.client")

HeadersLike = Headers | Mapping[str, str] | Sequence[tuple[str, str]]


class ClientConnection(Connection):
    """The client's side of one connection, returned by ``connect()``."""

    __slots__ = (
        "handshake_done",
    )

    protocol: proto.ClientProtocol

    def __init__(self, protocol: proto.ClientProtocol, **kwargs: Any) -> None:
        super().__init__(logger=logger, **kwargs)
        self.protocol = protocol
        protocol.defer_failures = True  # answer earlier messages before failing
        self.handshake_done: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def _on_handshake(self, event: proto.Request | proto.Response) -> None:
        if self.handshake_done.done():
            return
        exc = self.protocol.handshake_exc
        if exc is not None:
            self.handshake_done.set_exception(exc)
        else:
            self.handshake_done.set_result(None)
            self.start_keepalive()

    def _on_closed(self) -> None:
        if not self.handshake_done.done():
            exc = self.protocol.handshake_exc
            self.handshake_done.set_exception(
                exc or ConnectionError("connection closed during the opening handshake")
            )


def _headers(value: HeadersLike | None) -> Headers | None:
    if value is None or isinstance(value, Headers):
        return value
    items = value.items() if isinstance(value, Mapping) else value
    return Headers(items)


class connect:
    """Open a WebSocket connection to ``uri``.

    Use ``async with connect(uri) as ws`` or ``ws = await connect(uri)``.
    Raise ``InvalidURI``, ``OSError`` when the connection is refused,
    ``InvalidHandshake`` (``InvalidStatus`` for a refusal) or ``TimeoutError``
    after ``open_timeout``.

    ``async for ws in connect(uri)`` reconnects: each turn of the loop gets a
    new connection after the previous one was lost, waiting between attempts
    with exponential backoff and full jitter (from ``backoff_initial`` up to
    ``backoff_max`` seconds). It stops when the server closes with 1000 (it
    asked us to go), when the client closed the connection itself, or when the
    handshake is refused with a 4xx status (raised as ``InvalidStatus``).
    """

    def __init__(
        self,
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
        write_limit: int = 2**16,
        ssl: ssl_module.SSLContext | bool | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        unix_path: str | None = None,
        proxy: ProxySetting = True,
        **kwargs: Any,
    ) -> None:
        if compression not in ("deflate", None):
            raise ValueError(f"unsupported compression: {compression!r}")
        self.uri = proto.parse_uri(uri)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.unix_path = unix_path
        self.proxy = None if unix_path is not None or "sock" in kwargs else choose_proxy(
            self.uri, proxy
        )
        self._protocol_args: dict[str, Any] = dict(
            origin=origin,
            subprotocols=subprotocols,
            compression=(deflate_options or DeflateOptions()) if compression else None,
            extra_headers=_headers(additional_headers),
            user_agent=user_agent_header,
            max_size=max_size,
        )
        self._connection_args: dict[str, Any] = dict(
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
            write_limit=write_limit,
        )
        self.open_timeout = open_timeout
        if self.uri.secure and ssl is None:
            ssl = True
        if not self.uri.secure and ssl:
            raise ValueError("ssl given for a ws:// URI; use wss://")
        self._ssl = ssl
        self._kwargs = kwargs
        self.connection: ClientConnection | None = None

    async def _create(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        uri = self.uri

        def factory() -> asyncio.Protocol:
            protocol = proto.ClientProtocol(uri, **self._protocol_args)
            # An asyncio protocol by its methods, not by its base: see Connection.
            conn = ClientConnection(protocol, loop=loop, **self._connection_args)
            return cast(asyncio.Protocol, conn)

        kwargs = dict(self._kwargs)
        if self._ssl and "server_hostname" not in kwargs:
            kwargs["server_hostname"] = uri.host

        async def open_() -> ClientConnection:
            if self.unix_path is not None:
                _, made = await loop.create_unix_connection(
                    factory, self.unix_path, ssl=self._ssl, **kwargs
                )
            elif self.proxy is not None:
                sock = await open_tunnel(self.proxy, uri, self.open_timeout)
                _, made = await loop.create_connection(
                    factory, sock=sock, ssl=self._ssl, **kwargs
                )
            elif "sock" in kwargs:
                _, made = await loop.create_connection(factory, ssl=self._ssl, **kwargs)
            else:
                _, made = await loop.create_connection(
                    factory, uri.host, uri.port, ssl=self._ssl, **kwargs
                )
            conn = cast(ClientConnection, made)
            try:
                await conn.handshake_done
            except BaseException:
                if conn.transport is not None:
                    conn.transport.abort()
                raise
            return conn

        try:
            conn = await asyncio.wait_for(open_(), self.open_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"timed out after {self.open_timeout}s opening {uri.host}:{uri.port}"
            ) from None
        self.connection = conn
        return conn

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._create().__await__()

    async def __aenter__(self) -> ClientConnection:
        return await self._create()

    async def __aexit__(self, *exc: object) -> None:
        assert self.connection is not None
        await self.connection.close()

    async def __aiter__(self) -> AsyncIterator[ClientConnection]:
        attempt = 0
        while True:
            try:
                ws = await self._create()
            except (InvalidURI, ValueError):
                raise
            except InvalidStatus as exc:
                if 400 <= exc.response.status < 500:
                    raise
                delay = self._backoff(attempt, exc)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                delay = self._backoff(attempt, exc)
            else:
                attempt = -1
                try:
                    yield ws
                finally:
                    if ws.state is not proto.State.CLOSED:
                        await ws.close()
                closed = ws.protocol.close_exc()
                if _should_stop(ws, closed):
                    return
                delay = self._backoff(0, closed)
            attempt += 1
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        """Full jitter: a random delay up to an exponentially growing cap."""
        cap = min(self.backoff_max, self.backoff_initial * 2**attempt)
        delay = random.uniform(0, cap)
        logger.info("connection to %s lost or failed (%s); retrying in %.2fs",
                    self.uri.host, exc, delay)
        return delay


def _should_stop(ws: ClientConnection, closed: ConnectionClosed) -> bool:
    """A close that means "don't come back": 1000 from the server, or our own."""
    rcvd, sent = closed.rcvd, closed.sent
    if rcvd is not None and rcvd.code == proto.CloseCode.NORMAL:
        return True
    return sent is not None and closed.rcvd_then_sent is False and sent.code in (
        proto.CloseCode.NORMAL,
        proto.CloseCode.GOING_AWAY,
    ) and not ws.protocol.failed


def unix_connect(
    path: str, uri: str = "ws://localhost/", **kwargs: Any
) -> connect:
    """Like ``connect()``, over the Unix socket at ``path``; ``uri`` gives the
    Host header and the path of the request."""
    return connect(uri, unix_path=path, **kwargs)
