"""WebSocket servers on threads: ``serve()``, ``Server`` and ``ServerConnection``.

``Server.serve_forever()`` accepts connections and gives each a thread of its
own, which runs the opening handshake, then the handler. With HTTP keep-alive,
that thread answers the requests of its connection in turn until one upgrades
or the connection closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import ssl as ssl_module
import stat
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .. import protocol as proto
from ..exceptions import ConnectionClosed
from ..protocol.connection import DEFAULT_MAX_SIZE
from ..protocol.deflate import DeflateOptions
from ..protocol.frames import CloseCode
from ..protocol.http import Request, Response
from ..protocol.server import SERVER_HEADER, server_protocol_factory
from .connection import RECV_SIZE, Connection, remaining, set_nodelay

__all__ = ["serve", "unix_serve", "Server", "ServerConnection"]

logger = logging.getLogger("tidewire.server")

Handler = Callable[["ServerConnection"], None]
ProcessRequest = Callable[["ServerConnection", Request], "Response | None"]
ProcessResponse = Callable[["ServerConnection", Request, Response], "Response | None"]


class ServerConnection(Connection):
    """The server's side of one connection, handed to the handler."""

    protocol: proto.ServerProtocol

    def __init__(
        self, sock: socket.socket, protocol: proto.ServerProtocol, server: Server, **kwargs: Any
    ) -> None:
        super().__init__(sock, logger=logger, **kwargs)
        self.server = server
        self.protocol = protocol
        protocol.defer_failures = True  # answer earlier messages before failing

    def respond(self, status: int, text: str) -> Response:
        """A plain-text HTTP response, for ``process_request`` to refuse with."""
        return self.protocol.reject(status, text)

    def _handshake(self, deadline: float | None, context: ssl_module.SSLContext | None) -> bool:
        """Run TLS and the opening handshake; return whether the connection is
        open. On a kept connection, answer requests until one upgrades or the
        connection ends. Close the socket unless it is open."""
        try:
            if context is not None:
                self.sock = context.wrap_socket(self.sock, server_side=True)
            p = self.protocol
            while True:
                request = self._read_request(deadline)
                response = None if request is None else self._answer(request)
                with self._write_lock:  # the response goes before any frame
                    with self._lock:
                        if response is not None:
                            p.send_response(response)
                            if p.state is proto.State.OPEN:
                                self._deliver(p.events_received())
                        out = p.data_to_send()
                    if out:
                        self.sock.sendall(b"".join(out))
                if p.state is proto.State.OPEN:
                    self.sock.settimeout(None)
                    return True
                if p.close_expected() or p.state is not proto.State.CONNECTING:
                    break
                # Kept: the next request may have come already, else wait for it.
                if p.request is None and not self._next_request():
                    self.sock.close()  # idle, or closed by the client: no answer to protect
                    return False
                deadline = self.server.deadline()
            if p.handshake_exc is not None:
                logger.info(
                    "refused WebSocket handshake from %s: %s",
                    self.remote_address,
                    p.handshake_exc,
                )
            self.sock.shutdown(socket.SHUT_WR)
            if p.linger:
                self._linger()
        except BaseException:
            self.sock.close()
            raise
        self.sock.close()
        return False

    def _linger(self) -> None:
        """After the last HTTP answer, drop what the client still sends until
        it closes, or ``close_timeout`` passes (see ``ServerProtocol.linger``)."""
        deadline = time.monotonic() + (self.close_timeout if self.close_timeout is not None else 10)
        try:
            while True:
                self.sock.settimeout(remaining(deadline))
                if not self.sock.recv(RECV_SIZE):
                    return
        except OSError:  # TimeoutError included
            return

    def _next_request(self) -> bool:
        """Wait ``http_idle_timeout`` for the next request to begin on a kept
        connection; return whether anything came."""
        self.sock.settimeout(self.server.http_idle_timeout)
        try:
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            return False  # idle: close quietly
        with self._lock:
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
        return bool(data)

    def _read_request(self, deadline: float | None) -> Request | None:
        """The next request; ``None`` when there is none to answer."""
        p = self.protocol
        while p.request is None and not p.close_expected() and p.state is proto.State.CONNECTING:
            self.sock.settimeout(remaining(deadline))
            data = self.sock.recv(RECV_SIZE)
            with self._lock:
                if data:
                    p.receive_data(data)
                else:
                    p.receive_eof()
        with self._lock:
            p.events_received()  # the request, answered here rather than delivered
        return None if p.close_expected() else p.request

    def _answer(self, request: Request) -> Response:
        """Let the hooks answer the request, or accept it."""
        server = self.server
        try:
            response = None
            if server.process_request is not None:
                response = server.process_request(self, request)
            if response is None:
                response = self.protocol.accept(request)
            if server.process_response is not None:
                changed = server.process_response(self, request, response)
                if changed is not None:
                    response = changed
        except Exception:
            logger.error("error in the opening handshake hook", exc_info=True)
            response = self.protocol.reject(500, "Internal server error.\n")
        return response


class Server:
    """A listening WebSocket server; ``serve()`` makes one.

    Call ``serve_forever()``, and ``shutdown()`` from another thread, or
    leave the ``with`` block, to stop.
    """

    def __init__(
        self,
        sock: socket.socket,
        handler: Handler,
        *,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        ssl: ssl_module.SSLContext | None = None,
        open_timeout: float | None = 10,
        http_idle_timeout: float | None = None,
        protocol_factory: Callable[[], proto.ServerProtocol],
        connection_options: dict[str, Any],
    ) -> None:
        self.socket = sock
        sock.setblocking(False)
        self.handler = handler
        self.process_request = process_request
        self.process_response = process_response
        self.open_timeout = open_timeout
        self.http_idle_timeout = http_idle_timeout
        self._ssl = ssl
        self._protocol_factory = protocol_factory
        self._connection_options = connection_options
        self._lock = threading.Lock()
        self._connections: set[ServerConnection] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._sockets_closed = False
        self._serving: threading.Thread | None = None
        self._stopped = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()

    @property
    def connections(self) -> set[ServerConnection]:
        """The connections open now, handshake done or not."""
        with self._lock:
            return set(self._connections)

    @property
    def port(self) -> int:
        """The port of the listening socket (handy with port 0)."""
        return int(self.socket.getsockname()[1])

    def deadline(self) -> float | None:
        """When a request that begins now must be whole (``open_timeout``)."""
        return None if self.open_timeout is None else time.monotonic() + self.open_timeout

    def serve_forever(self) -> None:
        """Accept connections until ``shutdown()``."""
        with self._lock:
            if self._closing:
                return
            if self._serving is not None:
                raise RuntimeError("serve_forever() is running already")
            self._serving = threading.current_thread()
            self._stopped.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._closing:
                    selector.select()
                    if not self._closing:
                        self._accept()
        finally:
            with self._lock:
                self._serving = None
            self._stopped.set()
            if self._closing:
                self._close_sockets()

    def _accept(self) -> None:
        try:
            sock, _ = self.socket.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # the client left before we got to it
        except OSError as exc:  # out of file descriptors, say
            logger.error("can't accept a connection: %s", exc)
            self._stopped.wait(1)  # don't spin; let connections end
            return
        with self._lock:
            if self._closing:
                sock.close()
                return
            thread = threading.Thread(target=self._run_connection, args=(sock,), daemon=True)
            self._threads.add(thread)
        thread.start()

    def _run_connection(self, sock: socket.socket) -> None:
        """The thread of one connection: handshake, handler, close."""
        conn: ServerConnection | None = None
        try:
            deadline = self.deadline()
            set_nodelay(sock)
            sock.settimeout(self.open_timeout)
            conn = ServerConnection(
                sock, self._protocol_factory(), self, **self._connection_options
            )
            with self._lock:
                self._connections.add(conn)
            try:
                if self._closing or not conn._handshake(deadline, self._ssl):
                    return
            except TimeoutError:
                logger.info(
                    "opening handshake from %s timed out after %ss",
                    conn.remote_address,
                    self.open_timeout,
                )
                return
            except OSError as exc:
                logger.info("opening handshake from %s failed: %s", conn.remote_address, exc)
                return
            conn._start()
            self._run_handler(conn)
        finally:
            sock.close()  # if the handshake didn't take it over
            with self._lock:
                self._connections.discard(conn)
                self._threads.discard(threading.current_thread())

    def _run_handler(self, conn: ServerConnection) -> None:
        try:
            self.handler(conn)
        except ConnectionClosed:
            pass
        except Exception:
            logger.error("connection handler failed", exc_info=True)
            if conn.state is proto.State.OPEN:
                conn.close(CloseCode.INTERNAL_ERROR)
        conn.close()

    def shutdown(self) -> None:
        """Stop accepting, close every connection with 1001 (going away) and
        wait until the handlers return."""
        with self._lock:
            wake = not self._closing
            self._closing = True
            serving = self._serving
            conns = list(self._connections)
            threads = list(self._threads)
        if wake:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass  # closed already
        if serving is None:
            self._close_sockets()
        elif serving is not threading.current_thread():
            self._stopped.wait()
            self._close_sockets()
        for conn in conns:
            if conn.state is proto.State.CONNECTING:
                conn._abort()
            else:
                conn._send_close(CloseCode.GOING_AWAY, "", wait=False)
        for thread in threads:
            thread.join()

    def _close_sockets(self) -> None:
        with self._lock:
            if self._sockets_closed:
                return
            self._sockets_closed = True
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(
    handler: Handler,
    host: str | None = None,
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
    max_request_body: int = 0,
    http_keepalive: bool = False,
    http_idle_timeout: float = 5,
    http_max_requests: int = 1000,
    ssl: ssl_module.SSLContext | None = None,
    unix_path: str | None = None,
    sock: socket.socket | None = None,
    backlog: int = 128,
    reuse_port: bool = False,
) -> Server:
    """Listen on ``host`` and ``port``, on the Unix socket at ``unix_path`` or
    on ``sock``, bound already, and return a ``Server``; call its
    ``serve_forever()``.

    ``handler(connection)`` runs in a thread for each connection; the
    connection is closed when it returns. ``process_request(connection,
    request)`` may answer the HTTP request instead of upgrading it, and
    ``process_response(connection, request, response)`` may change the answer.
    With ``http_keepalive``, a connection whose request the hook answered is
    kept for the next request (HTTP/1.1 persistent connections), for up to
    ``http_max_requests`` requests, until it is idle for ``http_idle_timeout``
    seconds; its thread answers them in turn.
    """
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

    if unix_path is not None:
        sock = _unix_listener(unix_path, backlog)
    elif sock is None:
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        sock = socket.create_server(
            (host or "", port or 0), family=family, backlog=backlog, reuse_port=reuse_port
        )
    return Server(
        sock,
        handler,
        process_request=process_request,
        process_response=process_response,
        ssl=ssl,
        open_timeout=open_timeout,
        http_idle_timeout=http_idle_timeout if http_keepalive else None,
        protocol_factory=protocol_factory,
        connection_options=dict(
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_queue=max_queue,
        ),
    )


def _unix_listener(path: str, backlog: int) -> socket.socket:
    """A listening Unix socket at ``path``, in place of a stale one."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def unix_serve(handler: Handler, path: str, **kwargs: Any) -> Server:
    """Like ``serve()``, on the Unix socket at ``path``."""
    return serve(handler, unix_path=path, **kwargs)
