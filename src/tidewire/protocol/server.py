"""The server side: a ``Connection`` that begins by answering the HTTP upgrade.

In state CONNECTING the server parses the request (and its body, up to
``max_body`` bytes, for requests that the I/O layer's hook answers itself) and
emits a ``Request`` event, or answers a malformed one by itself. The I/O layer then calls
``accept(request)``, optionally replaces its result (``process_request``), and
hands the chosen response to ``send_response``; a 101 opens the connection.
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


class ServerProtocol(Connection):
    """Server side of a connection, from the first byte of the request.

    ``origins``: allowed Origin values (``None`` in the list admits requests
    without one); ``None`` allows all. ``subprotocols``: supported, in order of
    preference. ``compression``: permessage-deflate settings, ``None`` to turn
    it off. ``max_body``: largest request body read (413 above it); 0 reads
    none, for a server that only upgrades.
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
    ) -> None:
        super().__init__(Side.SERVER, max_size=max_size, state=State.CONNECTING)
        self.max_body = max_body
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
        if self.response is not None:
            return  # refused: the connection is closing
        self._head += data
        if self.request is not None:
            return  # the request is being processed; keep what comes next
        try:
            if self._parsed is None:
                parsed = parse_request(self._head)
                if parsed is None:
                    return
                self._parsed, size = parsed
                del self._head[:size]
                if self.max_body > 0:
                    self._body_size = request_body_length(self._parsed)
                    if self._body_size > self.max_body:
                        raise InvalidMessage(
                            f"request body is over {self.max_body} bytes", 413
                        )
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

    def receive_eof(self) -> None:
        if self.state is State.CONNECTING and self.handshake_exc is None and self._head:
            # A connection that sent nothing (a port check) isn't an error.
            self.handshake_exc = InvalidMessage("connection closed during the handshake")
        super().receive_eof()

    def close_expected(self) -> bool:
        if self.state is State.CONNECTING:
            return self.response is not None and self.response.status != 101
        return super().close_expected()

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
        """Send the answer to the request; a 101 opens the connection."""
        self.response = response
        self._out.append(response.serialize())
        if response.status == 101:
            self.set_deflate(self._pending_deflate)
            self.state = State.OPEN
            if self._head:
                data = bytes(self._head)
                self._head.clear()
                super().receive_data(data)
        else:
            self._pending_deflate = None


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
) -> Callable[[], ServerProtocol]:
    """What both I/O layers' ``serve()`` need: check the options once, then
    make a ``ServerProtocol`` per connection."""
    if compression not in ("deflate", None):
        raise ValueError(f"unsupported compression: {compression!r}")
    options = (deflate_options or DeflateOptions()) if compression else None

    def factory() -> ServerProtocol:
        return ServerProtocol(
            origins=origins,
            subprotocols=subprotocols,
            select_subprotocol=select_subprotocol,
            compression=options,
            max_size=max_size,
            server_header=server_header,
            max_body=max_body,
        )

    return factory
