"""WebSocket servers on asyncio: ``serve()``, ``Server`` and ``ServerConnection``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, cast

from .. import protocol as proto
from ..exceptions import ConnectionClosed
from ..protocol.connection import DEFAULT_MAX_SIZE
from ..protocol.deflate import DeflateOptions
from ..protocol.frames import CloseCode
from ..protocol.http import Request, Response
from ..protocol.server import SERVER_HEADER, server_protocol_factory
from .connection import Connection

__all__ = ["serve", "unix_serve", "Server", "ServerConnection"]

logger = logging.getLogger("tidewire.server")

Handler = Callable[["ServerConnection"], Awaitable[None]]
ProcessRequest = Callable[
    ["ServerConnection", Request], "Response | None | Awaitable[Response | None]"
]
ProcessResponse = Callable[
    ["ServerConnection", Request, Response],
    "Response | None | Awaitable[Response | None]",
]


class ServerConnection(Connection):
    """The server's side of one connection, handed to the handler."""

    __slots__ = (
        "server",
        "open_timeout",
        "handler_task",
    )

    protocol: proto.ServerProtocol

    def __init__(
        self,
        server: Server,
        protocol: proto.ServerProtocol,
        *,
        open_timeout: float | None = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(logger=logger, **kwargs)
        self.server = server
        self.protocol = protocol
        protocol.defer_failures = True  # answer earlier messages before failing
        self.open_timeout = open_timeout
        self.handler_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._connections.add(self)
        if self.open_timeout is not None:
            self.server._opening_started(self, self.open_timeout)

    def _on_open_timeout(self) -> None:
        if self.protocol.state is proto.State.CONNECTING and self.transport is not None:
            logger.info(
                "opening handshake from %s timed out after %ss",
                self.remote_address,
                self.open_timeout,
            )
            self.transport.abort()

    def _on_handshake(self, event: proto.Request | proto.Response) -> None:
        assert isinstance(event, proto.Request)
        server = self.server
        if server.process_request is None and server.process_response is None:
            # Nothing to wait for: answer now, without a task.
            self._respond(self.protocol.accept(event))
        else:
            self.server._track(self.loop.create_task(self._handshake(event)))

    async def _handshake(self, request: Request) -> None:
        server = self.server
        try:
            response = None
            if server.process_request is not None:
                response = await _maybe_await(server.process_request(self, request))
            if response is None:
                response = self.protocol.accept(request)
            if server.process_response is not None:
                changed = await _maybe_await(
                    server.process_response(self, request, response)
                )
                if changed is not None:
                    response = changed
        except Exception:
            logger.error("error in the opening handshake hook", exc_info=True)
            response = self.protocol.reject(500, "Internal server error.\n")
        if not self._sock_closed:
            self._respond(response)
            self._process()

    def _respond(self, response: Response) -> None:
        """Send the answer to the upgrade request; a 101 starts the handler."""
        self.protocol.send_response(response)
        self.server._opening.pop(self, None)
        if response.status == 101:
            self.start_keepalive()
            self.handler_task = self.loop.create_task(self._run_handler())
            self.server._track(self.handler_task)

    async def _run_handler(self) -> None:
        try:
            await self.server.handler(self)
        except ConnectionClosed:
            pass
        except Exception:
            logger.error("connection handler failed", exc_info=True)
            self._start_close(CloseCode.INTERNAL_ERROR)
        # Not awaited: connection_lost() does the rest, and a close timer
        # drops a peer that doesn't answer. Server.close() waits for sockets.
        self._start_close()

    def respond(self, status: int, text: str) -> Response:
        """A plain-text HTTP response, for ``process_request`` to refuse with."""
        return self.protocol.reject(status, text)

    def _on_closed(self) -> None:
        self.server._opening.pop(self, None)
        exc = self.protocol.handshake_exc
        if exc is not None:
            logger.info("refused WebSocket handshake from %s: %s", self.remote_address, exc)
        self.server._connections.discard(self)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class Server:
    """A listening WebSocket server; ``serve()`` makes one."""

    def __init__(
        self,
        handler: Handler,
        *,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        protocol_factory: Callable[[], proto.ServerProtocol],
        connection_options: dict[str, Any],
    ) -> None:
        self.handler = handler
        self.process_request = process_request
        self.process_response = process_response
        self._protocol_factory = protocol_factory
        self._connection_options = connection_options
        self._connections: set[ServerConnection] = set()
        # Handlers and handshake hooks still running, their socket closed or not.
        self._tasks: set[asyncio.Task[None]] = set()
        # Connections in their opening handshake, by deadline: one timer for
        # them all instead of one each (see _opening_started).
        self._opening: dict[ServerConnection, float] = {}
        self._open_timer: asyncio.TimerHandle | None = None
        self.server: asyncio.Server | None = None
        self._closing: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._closed = self._loop.create_future()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _opening_started(self, conn: ServerConnection, timeout: float) -> None:
        """Watch ``conn`` until its handshake is answered or ``timeout`` ends.
        Every connection of a server has the same timeout, so the oldest is
        always the next due: the timer waits for it alone."""
        deadline = conn.loop.time() + timeout
        self._opening[conn] = deadline
        if self._open_timer is None:
            self._open_timer = conn.loop.call_at(deadline, self._open_timer_due)

    def _open_timer_due(self) -> None:
        self._open_timer = None
        opening = self._opening
        loop = self._loop
        now = loop.time()
        while opening:
            conn, deadline = next(iter(opening.items()))
            if deadline > now:
                self._open_timer = loop.call_at(deadline, self._open_timer_due)
                return
            del opening[conn]
            conn._on_open_timeout()

    def _make_connection(self) -> ServerConnection:
        return ServerConnection(
            self, self._protocol_factory(), loop=self._loop, **self._connection_options
        )

    @property
    def connections(self) -> set[ServerConnection]:
        """The connections open now, handshake done or not."""
        return set(self._connections)

    @property
    def sockets(self) -> tuple[Any, ...]:
        return () if self.server is None else tuple(self.server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket (handy with port 0)."""
        return int(self.sockets[0].getsockname()[1])

    def close(self, close_connections: bool = True, *, reason: str = "") -> None:
        """Stop accepting; close every connection with 1001 (going away) and
        ``reason``, for example a hint that clients may reconnect elsewhere."""
        if self._closing is None:
            self._closing = self._loop.create_task(
                self._close(close_connections, reason)
            )

    async def _close(self, close_connections: bool, reason: str) -> None:
        if self.server is not None:
            self.server.close()
        conns = list(self._connections)
        if close_connections:
            await asyncio.gather(
                *(
                    c.close(CloseCode.GOING_AWAY, reason)
                    for c in conns
                    if c.state is proto.State.OPEN
                )
            )
            for c in conns:
                if c.transport is not None and c.state is proto.State.CONNECTING:
                    c.transport.close()
        await asyncio.gather(*(c.wait_closed() for c in conns))
        # Also the handlers of connections closed earlier, still cleaning up.
        while self._tasks:
            await asyncio.wait(list(self._tasks))
        if self.server is not None:
            await self.server.wait_closed()
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait until ``close()`` is done: every socket closed and every
        handler returned, also those whose client left earlier."""
        await asyncio.shield(self._closed)

    async def serve_forever(self) -> None:
        """Serve until ``close()`` is called."""
        await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


class serve:
    """Start a WebSocket server on ``host`` and ``port``.

    Use ``async with serve(handler, host, port) as server`` or
    ``server = await serve(...)``. ``handler(connection)`` runs for each
    connection; the connection is closed when it returns. Other keyword
    arguments go to ``loop.create_server`` (``ssl``, ``sock``, ``reuse_port``,
    ``backlog``...).

    ``process_request`` also sees requests that aren't upgrades, so that one
    port can serve an HTTP API beside the WebSocket endpoint: with
    ``max_request_body`` above 0, a request's body (up to that many bytes,
    delimited by Content-Length) is read first and found in ``request.body``.
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[Sequence[str]], str | None] | None = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        compression: str | None = "deflate",
        deflate_options: DeflateOptions | None = None,
        server_header: str | None = SERVER_HEADER,
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_queue: int | None = 16,
        write_limit: int = 2**16,
        max_request_body: int = 0,
        ssl: ssl_module.SSLContext | None = None,
        unix_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        protocol_factory = server_protocol_factory(
            origins=origins,
            subprotocols=subprotocols,
            select_subprotocol=select_subprotocol,
            compression=compression,
            deflate_options=deflate_options,
            max_size=max_size,
            server_header=server_header,
            max_body=max_request_body,
        )

        self._handler = handler
        self._host = host
        self._port = port
        self._ssl = ssl
        self._unix_path = unix_path
        self._kwargs = kwargs
        self._server_args: dict[str, Any] = dict(
            process_request=process_request,
            process_response=process_response,
            protocol_factory=protocol_factory,
            connection_options=dict(
                open_timeout=open_timeout,
                ping_interval=ping_interval,
                ping_timeout=ping_timeout,
                close_timeout=close_timeout,
                max_queue=max_queue,
                write_limit=write_limit,
            ),
        )
        self._server: Server | None = None

    async def _create(self) -> Server:
        server = Server(self._handler, **self._server_args)
        loop = asyncio.get_running_loop()
        # An asyncio protocol by its methods, not by its base: see Connection.
        factory = cast("Callable[[], asyncio.Protocol]", server._make_connection)
        if self._unix_path is not None:
            server.server = await loop.create_unix_server(
                factory, self._unix_path, ssl=self._ssl, **self._kwargs
            )
        else:
            server.server = await loop.create_server(
                factory, self._host, self._port, ssl=self._ssl, **self._kwargs
            )
        self._server = server
        return server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._create().__await__()

    async def __aenter__(self) -> Server:
        return await self._create()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


def unix_serve(handler: Handler, path: str | None = None, **kwargs: Any) -> serve:
    """Like ``serve()``, on the Unix socket at ``path``."""
    return serve(handler, unix_path=path, **kwargs)
