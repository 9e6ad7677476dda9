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
        "_lingering",
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
        self._lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._connections.add(self)
        self.server._opening.add(self)

    def _on_open_timeout(self) -> None:
        if self.protocol.state is proto.State.CONNECTING and self.transport is not None:
            logger.info(
                "opening handshake from %s timed out after %ss",
                self.remote_address,
                self.open_timeout,
            )
            self.transport.abort()

    def _on_idle_timeout(self) -> None:
        """No request came whole within ``http_idle_timeout`` of the last answer."""
        if self.protocol.state is not proto.State.CONNECTING or self.transport is None:
            return
        if self._received:
            # A request has begun: it has open_timeout more to come and be answered.
            self.server._opening.add(self)
        else:
            self.transport.close()

    def _on_handshake(self, event: proto.Request | proto.Response) -> None:
        assert isinstance(event, proto.Request)
        server = self.server
        self._request_started()
        if server.process_request is None and server.process_response is None:
            # Nothing to wait for: answer now, without a task.
            self._respond(self.protocol.accept(event))
        else:
            # Read nothing more until the answer is sent: what a client sends
            # meanwhile waits in its socket, not in our memory.
            self._pause_reading()
            server._track(self.loop.create_task(self._handshake(event)))

    def _request_started(self) -> None:
        server = self.server
        if self not in server._opening:  # a request after others on this connection
            server._idle.discard(self)
            server._opening.add(self)

    async def _handshake(self, request: Request) -> None:
        """Answer ``request``, then the requests that came whole behind it
        (pipelined) in the same task: when the hooks don't wait, they are
        all answered in one step of it, and written at once."""
        p = self.protocol
        flushing = False
        while True:
            response = await self._answer(request)
            if self._sock_closed:
                return
            self._respond(response)
            if p.state is not proto.State.CONNECTING or p.close_expected():
                break
            events = p.events_received()  # the next request, if it is whole
            if not events:
                break
            (request,) = events  # type: ignore[assignment]
            self._request_started()
            if not flushing:  # a hook that waits doesn't hold earlier answers back
                flushing = True
                self.loop.call_soon(self._flush)
        self._process()  # write the answers; deliver what followed an upgrade
        if p.request is None or p.state is not proto.State.CONNECTING:
            self._resume_reading()

    async def _answer(self, request: Request) -> Response:
        """The hooks' answer to ``request``, else the upgrade's."""
        server = self.server
        try:
            response = None
            if server.process_request is not None:
                answer = server.process_request(self, request)
                if inspect.isawaitable(answer):  # awaited here: no coroutine in between
                    answer = await answer
                response = answer
            if response is None:
                response = self.protocol.accept(request)
            if server.process_response is not None:
                changed = server.process_response(self, request, response)
                if inspect.isawaitable(changed):
                    changed = await changed
                if changed is not None:
                    response = changed
        except Exception:
            logger.error("error in the opening handshake hook", exc_info=True)
            response = self.protocol.reject(500, "Internal server error.\n")
        return response

    def _respond(self, response: Response) -> None:
        """Send the answer to a request: a 101 starts the handler; after
        another, a kept connection waits for the next request."""
        p = self.protocol
        p.send_response(response)
        server = self.server
        server._opening.discard(self)
        if response.status == 101:
            self.start_keepalive()
            self.handler_task = self.loop.create_task(self._run_handler())
            server._track(self.handler_task)
        elif p.request is None and not p.close_expected():
            self._received = False  # _on_idle_timeout tells whether bytes came
            server._idle.add(self)

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

    def _close_socket(self) -> None:
        transport = self.transport
        if (
            self.protocol.state is not proto.State.CONNECTING
            or transport is None
            or self._sock_closed
            or transport.is_closing()
            or not transport.can_write_eof()
            or not self.protocol.linger
        ):
            super()._close_socket()
            return
        if self._lingering:
            return
        # The last HTTP answer is written, and the client may still send (see
        # ServerProtocol.linger): half-close, and drop what comes until it
        # closes too, or close_timeout passes.
        self._lingering = True
        transport.write_eof()
        self._resume_reading()
        self._arm_close_timer(self.close_timeout if self.close_timeout is not None else 10)

    def _on_closed(self) -> None:
        self.server._opening.discard(self)
        self.server._idle.discard(self)
        exc = self.protocol.handshake_exc
        if exc is not None:
            logger.info("refused WebSocket handshake from %s: %s", self.remote_address, exc)
        self.server._connections.discard(self)


class _Deadlines:
    """Connections that must move on within ``timeout`` of being added (``None``:
    no limit), else ``due(connection)`` is called. Every deadline is as long,
    so the oldest is always the next due: one timer waits for it alone, instead
    of a timer per connection."""

    __slots__ = ("_loop", "timeout", "_due", "_conns", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout: float | None,
        due: Callable[[ServerConnection], None],
    ) -> None:
        self._loop = loop
        self.timeout = timeout
        self._due = due
        self._conns: dict[ServerConnection, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __contains__(self, conn: ServerConnection) -> bool:
        return conn in self._conns

    def add(self, conn: ServerConnection) -> None:
        """Start ``conn``'s deadline, again if it had one."""
        if self.timeout is None:
            return
        deadline = self._loop.time() + self.timeout
        self._conns.pop(conn, None)  # to the end: the order is the deadlines'
        self._conns[conn] = deadline
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def discard(self, conn: ServerConnection) -> None:
        self._conns.pop(conn, None)

    def _on_timer(self) -> None:
        self._timer = None
        conns = self._conns
        now = self._loop.time()
        while conns:
            conn, deadline = next(iter(conns.items()))
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._on_timer)
                return
            del conns[conn]
            self._due(conn)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
        http_idle_timeout: float | None = None,
    ) -> None:
        self.handler = handler
        self.process_request = process_request
        self.process_response = process_response
        self._protocol_factory = protocol_factory
        self._connection_options = connection_options
        self._connections: set[ServerConnection] = set()
        # Handlers and handshake hooks still running, their socket closed or not.
        self._tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self._closing: asyncio.Task[None] | None = None
        self._loop = loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        # Connections reading a request or answering it (the first one, until
        # it is whole and answered; on a kept connection, one that has begun)...
        self._opening = _Deadlines(
            loop, connection_options.get("open_timeout"), ServerConnection._on_open_timeout
        )
        # ... and kept connections waiting for their next request.
        self._idle = _Deadlines(loop, http_idle_timeout, ServerConnection._on_idle_timeout)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        self._opening.cancel()
        self._idle.cancel()
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
    With ``http_keepalive``, a connection whose request the hook answered is
    kept for the next request (HTTP/1.1 persistent connections), for up to
    ``http_max_requests`` requests, until it is idle for ``http_idle_timeout``
    seconds.
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
        http_keepalive: bool = False,
        http_idle_timeout: float = 5,
        http_max_requests: int = 1000,
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
            max_requests=http_max_requests if http_keepalive else 1,
            idle_timeout=http_idle_timeout if http_keepalive else None,
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
            http_idle_timeout=http_idle_timeout if http_keepalive else None,
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
