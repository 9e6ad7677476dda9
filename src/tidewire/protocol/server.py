"""The server side: a ``Connection`` that begins by answering the HTTP upgrade.

In state CONNECTING the server parses the request (and its body, up to
``max_body`` bytes, for requests that the I/O layer's hook answers itself) and
emits a ``Request`` event, or answers a malformed one by itself. The I/O layer then calls
``accept(request)``, optionally replaces its result (``process_request``), and
hands the chosen response to ``send_response``; a 101 opens the connection.

Any other answer closes the connection, unless ``max_requests`` allows more
than one request per connection (HTTP/1.1 persistent connections, RFC 9112
section 9.3): the server then reads the next request, which may have come
already (pipelining), and emits it once the answer to the previous one is sent.
Requests are answered one at a time, in order; an upgrade may come after any
number of plain requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import __version__
from ..exceptions import InvalidHandshake, InvalidHeader, InvalidMessage, NegotiationError
from .connection import DEFAULT_MAX_SIZE, Connection, Side, State
from .deflate import DEFAULT_OPTIONS, Deflate, DeflateOptions, parse_extensions, server_accept
from .handshake import accept_key, check_key, single, split_tokens
from .http import Headers, Request, Response, parse_request, request_body_length

__all__ = ["ServerProtocol", "server_protocol_factory"]

SERVER_HEADER: str = f"tidewire/{__version__}"


_REASONS = {
    101: "Switching Protocols",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


_WEBSOCKET = ["websocket"]
_UPGRADE = ["Upgrade"]
_NONE: list[str] = []
_CLOSE = ["close"]
_EOL = (b"\r", b"\n")
_KEEP_ALIVE = ["keep-alive"]


class ServerProtocol(Connection):
    """Server side of a connection, from the first byte of the request.

    ``origins``: allowed Origin values (``None`` in the list admits requests
    without one); ``None`` allows all. ``subprotocols``: supported, in order of
    preference. ``compression``: permessage-deflate settings, ``None`` to turn
    it off. ``max_body``: largest request body read (413 above it); 0 reads
    none, for a server that only upgrades. ``max_requests``: requests answered
    on one connection; 1 closes it after the first answer that isn't an
    upgrade. ``idle_timeout``: how long the I/O layer waits for the next
    request, told to clients in the Keep-Alive header (this object keeps no
    time). The attribute ``max_pending``, ``None`` by default, bounds the bytes
    kept while a request waits for its answer: above it the connection closes
    unanswered, for a server whose answer may take a while (an ASGI app's).
    """

    __slots__ = (
        "origins",
        "subprotocols",
        "select_subprotocol",
        "compression",
        "server_header",
        "request",
        "response",
        "subprotocol",
        "handshake_exc",
        "_head",
        "_pending_deflate",
        "max_body",
        "_parsed",
        "_body_size",
        "max_requests",
        "max_pending",
        "idle_timeout",
        "answered",
        "_closing",
        "_client_done",
    )

    def __init__(
        self,
        *,
        origins: Sequence[str | None] | None = None,
        subprotocols: Sequence[str] | None = None,
        select_subprotocol: Callable[[Sequence[str]], str | None] | None = None,
        compression: DeflateOptions | None = DEFAULT_OPTIONS,
        max_size: int | None = DEFAULT_MAX_SIZE,
        server_header: str | None = SERVER_HEADER,
        max_body: int = 0,
        max_requests: int = 1,
        idle_timeout: float | None = None,
    ) -> None:
        super().__init__(Side.SERVER, max_size=max_size, state=State.CONNECTING)
        _check_keepalive(max_requests, idle_timeout)
        self.max_body = max_body
        self.max_requests = max_requests
        self.idle_timeout = idle_timeout
        # Bytes kept while a request waits for its answer; None: no limit.
        self.max_pending: int | None = None
        self.answered = 0  # requests answered, upgrades included
        self._closing = False  # the last answer is sent: nothing more is read
        self._client_done = False  # the last request said Connection: close
        self._parsed: Request | None = None  # head read, body still coming
        self._body_size = 0
        self.origins = origins
        self.subprotocols = list(subprotocols or ())
        self.select_subprotocol = select_subprotocol
        self.compression = compression
        self.server_header = server_header
        self.request: Request | None = None
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.handshake_exc: InvalidHandshake | None = None
        self._head = bytearray()
        self._pending_deflate: Deflate | None = None

    def _receive_handshake(self, data: bytes) -> None:
        if self._closing:
            return  # the last answer is sent: the connection is closing
        self._head += data
        if self.request is None:
            self._read_request()
        elif self.max_pending is not None and len(self._head) > self.max_pending:
            # A client waits for the answer to its upgrade (RFC 6455 section
            # 4.1); one that sends this much instead is dropped unanswered.
            self.handshake_exc = InvalidMessage(
                f"the client sent over {self.max_pending} bytes before its request was answered"
            )
            self._head.clear()
            self._closing = True
        # Else the request is being answered: keep what comes next.

    def _read_request(self) -> None:
        """Emit the request at the start of what came, once it is whole, or
        answer it if it is malformed."""
        try:
            if self._parsed is None:
                if self._head[:1] in _EOL:
                    # RFC 9112 section 2.2: ignore empty lines before a request
                    # (some clients send one after a body).
                    while self._head[:1] in _EOL:
                        del self._head[:1]
                parsed = parse_request(self._head)
                if parsed is None:
                    return
                self._parsed, size = parsed
                del self._head[:size]
                # A kept connection must find where the body ends, read or not.
                if self.max_body > 0 or self.max_requests > 1:
                    self._body_size = self._body_length(self._parsed)
        except InvalidMessage as exc:
            self.handshake_exc = exc
            self.send_response(self.reject(exc.status, f"Bad request: {exc}.\n"))
            return
        if len(self._head) < self._body_size:
            return
        request = self._parsed
        if self._body_size:
            request.body = bytes(self._head[: self._body_size])
            del self._head[: self._body_size]
        self.request = request
        self._events.append(request)

    def _body_length(self, request: Request) -> int:
        size = request_body_length(request)
        if size > self.max_body:
            if self.max_body == 0:
                raise InvalidMessage("this server reads no request bodies", 413)
            raise InvalidMessage(f"request body is over {self.max_body} bytes", 413)
        return size

    def receive_eof(self) -> None:
        if (
            self.state is State.CONNECTING
            and self.handshake_exc is None
            and self._head
            and not self._closing
        ):
            # A connection that sent nothing (a port check) isn't an error,
            # nor one that closes after its last answer.
            self.handshake_exc = InvalidMessage("connection closed during the handshake")
        super().receive_eof()

    def close_expected(self) -> bool:
        if self.state is State.CONNECTING:
            return self._closing
        return super().close_expected()

    @property
    def linger(self) -> bool:
        """After the last answer: whether the client may still send, and the
        I/O layer should half-close, then drop what comes until the client
        closes too (RFC 9112 section 9.6), rather than close at once. Closing
        with bytes unread resets the connection, which can destroy the answer
        before the client reads it. Only a client that said Connection: close,
        and whose bytes were all read, sends no more."""
        return bool(self._head) or not self._client_done

    def accept(self, request: Request) -> Response:
        """Check the upgrade request; return a 101 response or a refusal."""
        try:
            headers = self._handshake(request)
        except InvalidHandshake as exc:
            self.handshake_exc = exc
            response = self.reject(exc.status, f"Failed to open a WebSocket connection: {exc}.\n")
            if isinstance(exc, InvalidHeader) and exc.name == "Sec-WebSocket-Version":
                response.headers["Sec-WebSocket-Version"] = "13"
            return response
        return Response(101, _REASONS[101], headers)

    def _handshake(self, request: Request) -> Headers:
        if request.method != "GET":
            raise InvalidMessage(
                f"method {request.method[:20]} not allowed; the upgrade is a GET", 405
            )
        h = request.headers.grouped()  # about eight lookups follow
        upgrade = h.get("upgrade") or []
        if upgrade != _WEBSOCKET:  # what every client sends skips the token rules
            if not upgrade:
                raise InvalidHeader("Upgrade", "missing; this is a WebSocket endpoint", 426)
            if len(upgrade) > 1:
                raise InvalidHeader("Upgrade", "more than one")
            if "websocket" not in (t.lower() for t in split_tokens(upgrade)):
                raise InvalidHeader("Upgrade", f"{upgrade[0][:40]!r} isn't websocket", 426)
        connection = h.get("connection") or []
        if connection != _UPGRADE:
            if len(connection) > 1:
                raise InvalidHeader("Connection", "more than one")
            if "upgrade" not in (t.lower() for t in split_tokens(connection)):
                raise InvalidHeader("Connection", "missing the Upgrade token", 426)
        # The version first: a client of another version gets 426 and the
        # version we speak (RFC 6455 section 4.2.2), whatever else it sent.
        version = single(h.get("sec-websocket-version") or [], "Sec-WebSocket-Version")
        if version != "13":
            raise InvalidHeader("Sec-WebSocket-Version", f"{version[:20]!r} isn't 13", 426)
        key = single(h.get("sec-websocket-key") or [], "Sec-WebSocket-Key")
        check_key(key)
        if "host" not in h:
            raise InvalidHeader("Host", "missing")
        if self.origins is not None:
            origin = h.get("origin") or []
            if len(origin) > 1:
                raise InvalidHeader("Origin", "more than one")
            value = origin[0] if origin else None
            if value not in self.origins:
                raise InvalidHeader("Origin", f"{value!r} not allowed", 403)
        out = Headers(
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(key)),
            ]
        )
        if self.compression is not None:
            offers = parse_extensions(h.get("sec-websocket-extensions") or [])
            accepted = server_accept(self.compression, offers)
            if accepted is not None:
                value, codec = accepted
                out.add("Sec-WebSocket-Extensions", value)
                self._pending_deflate = codec
        offered = split_tokens(h.get("sec-websocket-protocol") or _NONE)
        if offered:
            self.subprotocol = self._choose(offered)
            if self.subprotocol is not None:
                out.add("Sec-WebSocket-Protocol", self.subprotocol)
        if self.server_header:
            out.add("Server", self.server_header)
        return out

    def _choose(self, offered: list[str]) -> str | None:
        if self.select_subprotocol is not None:
            chosen = self.select_subprotocol(offered)
            if chosen is not None and chosen not in offered:
                raise NegotiationError(f"selected subprotocol {chosen!r} wasn't offered")
            return chosen
        for proto in self.subprotocols:
            if proto in offered:
                return proto
        return None

    def reject(self, status: int, text: str) -> Response:
        """A refusal with a plain-text body that says what was wrong."""
        body = text.encode()
        headers = Headers()
        headers.add("Content-Type", "text/plain; charset=utf-8")
        headers.add("Content-Length", str(len(body)))
        headers.add("Connection", "close")
        if status == 426:  # RFC 9110 section 15.5.22
            headers.add("Upgrade", "websocket")
        elif status == 405:  # RFC 9110 section 15.5.6
            headers.add("Allow", "GET")
        if self.server_header:
            headers.add("Server", self.server_header)
        return Response(status, _REASONS.get(status, "Error"), headers, body)

    def send_response(self, response: Response) -> None:
        """Send the answer to the request: a 101 opens the connection. After
        any other, either ``close_expected()`` turns true, or the connection is
        kept and the next request is read; it may be among the events already.

        The Connection header of the response says which (and Keep-Alive, how
        long and for how many more requests), and a Content-Length is added
        if the response has none: a kept connection needs the body delimited.
        """
        self.response = response
        self.answered += 1
        if response.status == 101:
            self._out.append(response.serialize())
            self.set_deflate(self._pending_deflate)
            self.state = State.OPEN
            if self._head:
                data = bytes(self._head)
                self._head.clear()
                super().receive_data(data)
            return
        self._pending_deflate = None
        keep = self._keep(response)
        self._out.append(response.serialize())
        if not keep:
            self._closing = True
            return
        self.request = None
        self._parsed = None
        self._body_size = 0
        if self._head:
            self._read_request()

    def _keep(self, response: Response) -> bool:
        """Whether the connection stays open after ``response``; say it in
        the response's headers."""
        request = self.request
        headers = response.headers
        said: list[str] = []  # the response's own Connection values
        delimited = announced = False
        for name, value in headers:  # one pass, for the fields that matter here
            lname = name.lower()
            if lname == "connection":
                said.append(value)
            elif lname == "content-length" or lname == "transfer-encoding":
                delimited = True
            elif lname == "keep-alive":
                announced = True
        self._client_done = request is not None and _says_close(
            request.headers.get_all("Connection")
        )
        keep = (
            request is not None
            and self.answered < self.max_requests
            and not _says_close(said)
            and not self._client_done
        )
        if not delimited and response.status not in (204, 304):
            if request is None or request.method != "HEAD":
                headers.add("Content-Length", str(len(response.body)))
        if not keep:
            if said != _CLOSE:
                _set(headers, "Connection", "close", bool(said))
            return False
        if said != _KEEP_ALIVE:
            _set(headers, "Connection", "keep-alive", bool(said))
        if self.idle_timeout is not None:
            left = self.max_requests - self.answered
            _set(headers, "Keep-Alive", f"timeout={int(self.idle_timeout)}, max={left}", announced)
        return True


def _set(headers: Headers, name: str, value: str, present: bool) -> None:
    """Set a field, replacing the values it had if ``present``."""
    if present:
        headers[name] = value
    else:
        headers.add(name, value)


def _check_keepalive(max_requests: int, idle_timeout: float | None) -> None:
    if max_requests < 1:
        raise ValueError(f"max_requests must be at least 1, not {max_requests}")
    if idle_timeout is not None and idle_timeout <= 0:
        raise ValueError(f"the idle timeout must be above 0, not {idle_timeout}")


def _says_close(values: list[str]) -> bool:
    """Whether Connection header values hold the ``close`` option."""
    if not values:
        return False
    if values == _CLOSE:
        return True
    return "close" in (t.lower() for t in split_tokens(values))


def server_protocol_factory(
    *,
    origins: Sequence[str | None] | None,
    subprotocols: Sequence[str] | None,
    select_subprotocol: Callable[[Sequence[str]], str | None] | None,
    compression: str | None,
    deflate_options: DeflateOptions | None,
    max_size: int | None,
    server_header: str | None,
    max_body: int,
    max_requests: int = 1,
    idle_timeout: float | None = None,
) -> Callable[[], ServerProtocol]:
    """What both I/O layers' ``serve()`` need: check the options once, then
    make a ``ServerProtocol`` per connection."""
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression: {compression!r}")
    options = (deflate_options or DeflateOptions()) if compression else None
    _check_keepalive(max_requests, idle_timeout)

    def factory() -> ServerProtocol:
        return ServerProtocol(
            origins=origins,
            subprotocols=subprotocols,
            select_subprotocol=select_subprotocol,
            compression=options,
            max_size=max_size,
            server_header=server_header,
            max_body=max_body,
            max_requests=max_requests,
            idle_timeout=idle_timeout,
        )

    return factory
