"""The client side: a ``Connection`` that begins by asking for the upgrade.

The I/O layer sends ``connect()``'s request with ``send_request``, then feeds
bytes as usual. When the response is complete a ``Response`` event comes out:
the connection is OPEN if it was a valid 101, otherwise ``handshake_exc`` says
why and ``close_expected()`` is true.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import __version__
from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    NegotiationError,
)
from .connection import DEFAULT_MAX_SIZE, Connection, Side, State
from .deflate import DEFAULT_OPTIONS, DeflateOptions, client_accept, client_offer, parse_extensions
from .handshake import accept_key, generate_key, single, split_tokens
from .http import Headers, Request, Response, body_length, parse_response
from .uri import WebSocketURI

__all__ = ["ClientProtocol", "USER_AGENT"]


USER_AGENT: str = f"tidewire/{__version__}"
MAX_ERROR_BODY = 1 << 16


class ClientProtocol(Connection):
    """Client side of a connection to ``uri``."""

    __slots__ = (
        "uri",
        "origin",
        "subprotocols",
        "compression",
        "extra_headers",
        "user_agent",
        "key",
        "response",
        "subprotocol",
        "handshake_exc",
        "_head",
        "_refusal",
        "_body_left",
    )

    def __init__(
        self,
        uri: WebSocketURI,
        *,
        origin: str | None = None,
        subprotocols: Sequence[str] | None = None,
        compression: DeflateOptions | None = DEFAULT_OPTIONS,
        extra_headers: Headers | None = None,
        user_agent: str | None = USER_AGENT,
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> None:
        super().__init__(Side.CLIENT, max_size=max_size, state=State.CONNECTING)
        self.uri = uri
        self.origin = origin
        self.subprotocols = list(subprotocols or ())
        self.compression = compression
        self.extra_headers = extra_headers
        self.user_agent = user_agent
        self.key = generate_key()
        self.response: Response | None = None
        self.subprotocol: str | None = None
        self.handshake_exc: InvalidHandshake | None = None
        self._head = bytearray()
        self._refusal: Response | None = None
        self._body_left: int | None = 0

    def connect(self) -> Request:
        """The upgrade request; pass it, changed or not, to ``send_request``."""
        h = Headers()
        h.add("Host", self.uri.host_header)
        h.add("Upgrade", "websocket")
        h.add("Connection", "Upgrade")
        h.add("Sec-WebSocket-Key", self.key)
        h.add("Sec-WebSocket-Version", "13")
        if self.origin is not None:
            h.add("Origin", self.origin)
        if self.compression is not None:
            h.add("Sec-WebSocket-Extensions", client_offer(self.compression))
        if self.subprotocols:
            h.add("Sec-WebSocket-Protocol", ", ".join(self.subprotocols))
        if self.user_agent:
            h.add("User-Agent", self.user_agent)
        for name, value in self.extra_headers or ():
            h[name] = value
        return Request(self.uri.path, h)

    def send_request(self, request: Request) -> None:
        self._out.append(request.serialize())

    def _receive_handshake(self, data: bytes) -> None:
        if self.handshake_exc is not None and self._refusal is None:
            return
        self._head += data
        if self._refusal is not None:
            self._read_refusal_body()
            return
        try:
            parsed = parse_response(self._head)
        except InvalidMessage as exc:
            self._fail_handshake(exc)
            return
        if parsed is None:
            return
        response, size = parsed
        del self._head[:size]
        if response.status != 101:
            try:
                self._body_left = body_length(response)
            except InvalidMessage as exc:
                self._fail_handshake(exc)
                return
            self._refusal = response
            self._read_refusal_body()
            return
        try:
            self._check_response(response)
        except InvalidHandshake as exc:
            self._fail_handshake(exc)
            return
        self.response = response
        self.state = State.OPEN
        self._events.append(response)
        if self._head:
            rest = bytes(self._head)
            self._head.clear()
            self.receive_data(rest)

    def _read_refusal_body(self) -> None:
        assert self._refusal is not None
        left = self._body_left
        if left is not None and len(self._head) >= left:
            self._finish_refusal(bytes(self._head[:left]))
        elif len(self._head) > MAX_ERROR_BODY:
            self._finish_refusal(bytes(self._head[:MAX_ERROR_BODY]))

    def _finish_refusal(self, body: bytes) -> None:
        assert self._refusal is not None
        self._refusal.body = body
        self.response = self._refusal
        self._refusal = None
        self._head.clear()
        self._fail_handshake(InvalidStatus(self.response))

    def _fail_handshake(self, exc: InvalidHandshake) -> None:
        self.handshake_exc = exc
        if self.response is None:
            self.response = Response(0)
        self._events.append(self.response)

    def receive_eof(self) -> None:
        if self.state is State.CONNECTING:
            if self._refusal is not None:
                self._finish_refusal(bytes(self._head))
            elif self.handshake_exc is None:
                self._fail_handshake(
                    InvalidMessage("connection closed before the handshake response")
                )
        super().receive_eof()

    def close_expected(self) -> bool:
        if self.state is State.CONNECTING:
            return self.handshake_exc is not None
        return super().close_expected()

    def _check_response(self, response: Response) -> None:
        h = response.headers
        upgrade = split_tokens(h.get_all("Upgrade"))
        if [t.lower() for t in upgrade] != ["websocket"]:
            raise InvalidHeader("Upgrade", f"expected websocket, got {upgrade!r}")
        if "upgrade" not in (t.lower() for t in split_tokens(h.get_all("Connection"))):
            raise InvalidHeader("Connection", "missing the Upgrade token")
        accept = single(h.get_all("Sec-WebSocket-Accept"), "Sec-WebSocket-Accept")
        if accept != accept_key(self.key):
            raise InvalidHeader("Sec-WebSocket-Accept", "doesn't match our key")
        extensions = parse_extensions(h.get_all("Sec-WebSocket-Extensions"))
        if extensions:
            if self.compression is None:
                raise NegotiationError("server chose an extension we didn't offer")
            if len(extensions) > 1 or extensions[0][0] != "permessage-deflate":
                names = ", ".join(name for name, _ in extensions)
                raise NegotiationError(f"server chose extensions we didn't offer: {names}")
            self.set_deflate(client_accept(self.compression, extensions[0][1]))
        protocols = split_tokens(h.get_all("Sec-WebSocket-Protocol"))
        if protocols:
            if len(protocols) > 1 or protocols[0] not in self.subprotocols:
                raise NegotiationError(
                    f"server chose a subprotocol we didn't offer: {protocols[0]!r}"
                )
            self.subprotocol = protocols[0]
