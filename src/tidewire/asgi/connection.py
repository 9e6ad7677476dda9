"""One WebSocket connection that speaks ASGI (HTTP & WebSocket spec 2.5) to an app.

``ASGIConnection`` is the asyncio layer's ``Connection`` (the transport's
protocol, compiled when the speedups are built) with ASGI's ``receive`` and
``send`` on top (the methods ``asgi_receive`` and ``asgi_send``): bytes still
go from the socket to the parser and into the message queue with no task per
frame, and ``receive()`` turns each message into its ASGI event as the
application asks for it.

What the application sees, by phase:

- handshake: ``receive()`` gives ``websocket.connect`` once; ``send()`` takes
  ``websocket.accept``, ``websocket.close`` (answered 403) or the
  ``websocket.http.response`` denial (start, then body);
- open: ``websocket.receive`` events and ``websocket.send`` /
  ``websocket.close``; reading pauses as soon as a message waits unread, so a
  slow application holds at most one read of the socket in memory;
- closed: ``receive()`` gives the same ``websocket.disconnect`` again, and
  ``send()`` raises ``ClientDisconnected`` (an ``OSError``).

A request that fails tidewire's own handshake checks is answered (400, 405 or
426) before the application is called. The server that uses this class gives
it the application and its options, and may override the hooks
``_app_started`` and ``_on_closed``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from .. import protocol as proto
from ..asyncio.connection import Connection
from ..exceptions import ClientDisconnected, ConnectionClosed
from ..protocol.handshake import split_tokens
from ..protocol.http import Headers, Request, Response

__all__ = ["ASGIConnection", "ASGIApp", "Message", "SPEC_VERSION"]

SPEC_VERSION = "2.5"

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[object],
]

# What the application may do next.
_HANDSHAKE = 0  # connect was (or will be) received: accept, close or deny
_DENYING = 1  # a denial response started: its body comes next
_OPEN = 2
_CLOSED = 3  # closed by the app, refused, denied, or lost

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
# Headers of the 101 that the handshake itself sets; the app can't change them.
_HANDSHAKE_HEADERS = frozenset(
    (b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions",
     b"sec-websocket-protocol", b"content-length", b"transfer-encoding")
)
_INTERNAL_ERROR = b"Internal Server Error"
_ANSWERS = frozenset(
    ("websocket.accept", "websocket.http.response.start", "websocket.http.response.body")
)
_FRAME_HEADER = 14  # the longest: 2 bytes, an 8-byte length, a 4-byte mask


class _Closed(Exception):
    """The message queue is closed and drained: time for the disconnect."""


def _closed() -> BaseException:
    return _Closed()


def _discard(message: object) -> None:
    """Where messages go once the app has closed: nowhere."""


def _drop(transport: Any) -> None:
    """Close ``transport`` without flushing, where it can."""
    abort = getattr(transport, "abort", None)
    if abort is not None:
        abort()
    else:
        transport.close()


class ASGIConnection(Connection):
    """The server side of one WebSocket connection, driven by an ASGI app.

    ``app(scope, receive, send)`` runs in a task once the upgrade request
    passed tidewire's checks. ``compression`` turns permessage-deflate on,
    with windows of 4 KiB (``2**12``) each way to keep idle connections small;
    a ``ping_interval`` of 0 or ``None`` turns keepalive pings off.
    """

    __slots__ = (
        "app",
        "scope",
        "root_path",
        "asgi_version",
        "app_state",
        "default_headers",
        "ping_sent_at",
        "_phase",
        "_connect_due",
        "_response",
        "_denial",
        "_disconnect",
        "_task",
    )

    protocol: proto.ServerProtocol

    def __init__(
        self,
        app: ASGIApp,
        *,
        root_path: str = "",
        asgi_version: str = "3.0",
        app_state: dict[str, Any] | None = None,
        default_headers: Iterable[tuple[bytes, bytes]] = (),
        max_size: int | None = proto.DEFAULT_MAX_SIZE,
        compression: bool = True,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        logger: logging.Logger | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(
            ping_interval=ping_interval or None,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            # Reading pauses as soon as one message waits for the app.
            max_queue=1,
            logger=logger,
            loop=loop,
        )
        self.protocol = proto.ServerProtocol(
            compression=proto.DeflateOptions(
                server_max_window_bits=12, client_max_window_bits=12, mem_level=5
            ) if compression else None,
            max_size=max_size,
            server_header=None,  # the server's default headers name it
        )
        # Answer the messages that came before a violation, then fail.
        self.protocol.defer_failures = True
        # A client that doesn't wait for the app's answer to its upgrade may
        # send one message's worth (and a frame header) meanwhile, no more.
        self.protocol.max_pending = (
            max_size if max_size is not None else proto.DEFAULT_MAX_SIZE
        ) + _FRAME_HEADER
        self.app = app
        self.scope: dict[str, Any] | None = None
        self.root_path = root_path
        self.asgi_version = asgi_version
        self.app_state = app_state if app_state is not None else {}
        self.default_headers = default_headers
        self.ping_sent_at = 0.0  # loop time of the last keepalive ping
        self._phase = _HANDSHAKE
        self._connect_due = False
        self._response: Response | None = None  # the 101, until accepted
        self._denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None
        self._disconnect: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None

    # The transport's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The transport's default write limits (64 KiB, 16 KiB) are ours too.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._close_timer = self._fail_timer = None  # cancelled by the above

    def pause_writing(self) -> None:
        self._write_paused = True  # send() waits; reading goes on

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def _on_handshake(self, event: proto.Request | proto.Response) -> None:
        assert isinstance(event, Request)
        response = self.protocol.accept(event)
        if response.status != 101:
            # Not a valid upgrade: the app is never called.
            self._phase = _CLOSED
            self._add_headers(response.headers, self._defaults())
            self.protocol.send_response(response)
            self.logger.info(
                "refused WebSocket handshake from %s: %s",
                _address(self.remote_address), self.protocol.handshake_exc,
            )
            return
        self._response = response
        self.scope = self._make_scope(event)
        self._connect_due = True
        self._task = self.loop.create_task(self._run())
        self._app_started(self._task)

    def _make_scope(self, request: Request) -> dict[str, Any]:
        target = request.path.encode("latin-1")
        raw_path, _, query = target.partition(b"?")
        root = self.root_path
        offered = split_tokens(request.headers.get_all("Sec-WebSocket-Protocol"))
        transport = self.transport
        ssl = transport is not None and transport.get_extra_info("sslcontext") is not None
        return {
            "type": "websocket",
            "asgi": {"version": self.asgi_version, "spec_version": SPEC_VERSION},
            "http_version": "1.1",
            "scheme": "wss" if ssl else "ws",
            "server": _address(self.local_address),
            "client": _address(self.remote_address),
            "root_path": root,
            "path": root + unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            "raw_path": root.encode("latin-1") + raw_path,
            "query_string": query,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers
            ],
            "subprotocols": offered,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }

    def _app_started(self, task: asyncio.Task[None]) -> None:
        """Hook for servers that track their tasks."""

    def _defaults(self) -> Iterable[tuple[bytes, bytes]]:
        """The server's headers for every response (date, server name)."""
        return self.default_headers

    # ASGI: receive.

    async def asgi_receive(self) -> Message:
        """The next ASGI event for the application."""
        # A new dict each time: the app may keep or change what it got.
        if self._disconnect is None and not self._connect_due:
            try:
                message = await self.messages.get(_closed)
            except _Closed:
                return dict(self._disconnected())
            if type(message) is str:
                return {"type": "websocket.receive", "text": message}
            return {"type": "websocket.receive", "bytes": message}
        if self._connect_due:
            self._connect_due = False
            return {"type": "websocket.connect"}
        return dict(self._disconnect)  # type: ignore[arg-type]

    def _disconnected(self) -> dict[str, Any]:
        """The disconnect event, made once: the app closed, the peer closed,
        we failed the connection, or the socket was lost."""
        disconnect = self._disconnect
        if disconnect is None:
            p = self.protocol
            close = p.close_sent if p.failed else p.close_rcvd
            if close is None or self._phase < _OPEN:
                disconnect = {"type": "websocket.disconnect", "code": 1006}
            else:
                disconnect = {
                    "type": "websocket.disconnect", "code": close.code, "reason": close.reason
                }
            self._set_disconnect(disconnect)
        return disconnect

    def _set_disconnect(self, disconnect: dict[str, Any]) -> None:
        """The app's next ``receive()`` gives ``disconnect``; messages that
        come from now on are dropped, and never pause reading."""
        if self._disconnect is None:
            self._disconnect = disconnect
        self._phase = _CLOSED
        self._on_message = _discard
        self.messages.take_all()
        self.messages.close()  # wakes a receive() that waits

    # ASGI: send.

    async def asgi_send(self, message: Message) -> None:
        """Carry out one ASGI event from the application."""
        if self._write_paused:
            await self._writable()
        mtype = message["type"]
        phase = self._phase
        if phase is _OPEN:
            if mtype == "websocket.send":
                # The common case inline: text, or bytes, and not the other key.
                data = message.get("text")
                if type(data) is not str or message.get("bytes") is not None:
                    data = message.get("bytes")
                    if type(data) is not bytes or message.get("text") is not None:
                        data = _payload(message)  # checks, and says what is wrong
                try:
                    self.send_nowait(data)
                except ConnectionClosed as exc:
                    raise ClientDisconnected("the WebSocket connection is closed") from exc
            elif mtype == "websocket.close":
                self._app_close(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.send' or 'websocket.close', "
                    f"but got {mtype!r}."
                )
        elif phase is _HANDSHAKE:
            if mtype == "websocket.accept":
                self._accept(message)
            elif mtype == "websocket.close":
                self._refuse()
            elif mtype == "websocket.http.response.start":
                self._start_denial(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                    f"'websocket.http.response.start' but got {mtype!r}."
                )
        elif phase is _DENYING:
            if mtype != "websocket.http.response.body":
                raise RuntimeError(
                    "Expected ASGI message 'websocket.http.response.body' but got "
                    f"'{mtype}'."
                )
            self._denial_body(message)
        elif mtype in ("websocket.send", "websocket.close") or (
            # An answer to an upgrade that was closed meanwhile (the client
            # left, a graceful shutdown) comes too late, but isn't misuse.
            mtype in _ANSWERS and not self.accepted
        ):
            raise ClientDisconnected("the WebSocket connection is closed")
        else:
            raise RuntimeError(f"Unexpected ASGI message {mtype!r}: the connection is closed.")

    async def _writable(self) -> None:
        """Wait until the write buffer is below its limit again."""
        try:
            await self._wait_drain()
        except ConnectionClosed as exc:
            raise ClientDisconnected("the WebSocket connection is closed") from exc

    def _accept(self, message: Message) -> None:
        response = self._response
        assert response is not None
        if self._sock_closed or self.protocol.close_expected():
            self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
            raise ClientDisconnected("the client left before the connection was accepted")
        headers = list(message.get("headers") or ())
        _check_headers(headers, "websocket.accept")
        for name, _ in headers:
            if name.lower() in _HANDSHAKE_HEADERS:
                raise RuntimeError(
                    f"websocket.accept can't set the {name.decode('latin-1')} header; "
                    "the handshake does (use the subprotocol key)"
                )
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            offered = self.scope["subprotocols"] if self.scope else []
            if subprotocol not in offered:
                raise RuntimeError(
                    f"subprotocol {subprotocol!r} wasn't offered by the client "
                    f"(offered: {', '.join(offered) or 'none'})"
                )
            response.headers.add("Sec-WebSocket-Protocol", subprotocol)
            self.protocol.subprotocol = subprotocol
        self._add_headers(response.headers, self._defaults())
        self._add_headers(response.headers, headers)
        self._response = None
        self._phase = _OPEN
        self.protocol.send_response(response)
        # Its bytes are written now; an idle connection needn't keep the 101
        # and its headers (a few hundred bytes each).
        self.protocol.response = None
        self.logger.info(
            '%s - "WebSocket %s" [accepted]', _address_text(self.scope), _target(self.scope)
        )
        self.start_keepalive()
        self._process()  # writes the 101, and reads what came after the request

    def _refuse(self) -> None:
        """``websocket.close`` before accept: 403, as the spec says."""
        response = self.protocol.reject(
            403, "Forbidden: the application refused the WebSocket connection.\n"
        )
        self._add_headers(response.headers, self._defaults())
        self.logger.info('%s - "WebSocket %s" 403', _address_text(self.scope), _target(self.scope))
        self._end_handshake(response)

    def _start_denial(self, message: Message) -> None:
        status = message.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        if status == 101:
            raise RuntimeError("a denial response can't be 101; send websocket.accept")
        headers = list(message.get("headers") or ())
        _check_headers(headers, "websocket.http.response.start")
        self._denial = (status, headers, [])
        self._phase = _DENYING

    def _denial_body(self, message: Message) -> None:
        assert self._denial is not None
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError(f"websocket.http.response.body needs bytes, not {type(body).__name__}")
        self._denial[2].append(bytes(body))
        if not message.get("more_body", False):
            self._send_denial(strict=True)

    def _send_denial(self, *, strict: bool) -> bool:
        """Send the denial response the app made; ``False`` if it is
        inconsistent (its Content-Length isn't its body's), which raises
        instead when ``strict``."""
        assert self._denial is not None
        status, app_headers, chunks = self._denial
        body = b"".join(chunks)
        lengths = [v for n, v in app_headers if n.lower() == b"content-length"]
        if lengths and lengths != [str(len(body)).encode()]:
            if strict:
                raise RuntimeError(
                    f"Content-Length {b', '.join(lengths).decode('latin-1')} doesn't match "
                    f"the body's {len(body)} bytes"
                )
            return False
        headers = Headers()
        self._add_headers(headers, self._defaults())
        self._add_headers(
            headers, [(n, v) for n, v in app_headers if n.lower() != b"transfer-encoding"]
        )
        if not lengths:
            headers.add("Content-Length", str(len(body)))
        if "Connection" not in headers:
            headers.add("Connection", "close")
        self.logger.info(
            '%s - "WebSocket %s" %d', _address_text(self.scope), _target(self.scope), status
        )
        self._end_handshake(Response(status, _phrase(status), headers, body))
        return True

    def _end_handshake(self, response: Response) -> None:
        """Answer the upgrade with ``response`` (not a 101) and close."""
        self._response = self._denial = None
        self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
        if not self._sock_closed and not self.protocol.close_expected():
            self.protocol.send_response(response)
            self._process()

    def _app_close(self, message: Message) -> None:
        code = message.get("code")
        reason = message.get("reason") or ""
        code = 1000 if code is None else code
        self.protocol.send_close(code, reason)  # ValueError for a bad code or reason
        self._set_disconnect({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._process()
        if self.close_timeout is not None:
            self._arm_close_timer(self.close_timeout)

    # Running the app.

    async def _run(self) -> None:
        assert self.scope is not None
        try:
            result = await self.app(self.scope, self.asgi_receive, self.asgi_send)
        except ClientDisconnected:
            result = None  # the app let it through: nothing to report
        except Exception:
            self.logger.exception("Exception in ASGI application\n")
            self._app_failed()
            return
        except BaseException:  # cancelled: the server stops
            self._app_failed()
            raise
        if self._phase is _HANDSHAKE:
            self.logger.error("ASGI callable returned without completing handshake.")
        elif result is not None:
            self.logger.error("ASGI callable should return None, but returned %r.", result)
        if self._phase < _OPEN:
            self._app_failed()
        else:
            self._app_returned()

    def _app_failed(self) -> None:
        """The app raised, or returned before answering the upgrade."""
        if self._phase is _DENYING and self._send_denial(strict=False):
            return  # its response was whole: send it as it is
        if self._phase < _OPEN:
            response = self.protocol.reject(500, "")
            response.body = _INTERNAL_ERROR
            response.headers["Content-Type"] = "text/plain; charset=utf-8"
            response.headers["Content-Length"] = str(len(_INTERNAL_ERROR))
            self._add_headers(response.headers, self._defaults())
            self._end_handshake(response)
        else:
            self._app_returned()

    def _app_returned(self) -> None:
        """The app is done: a socket it left open is closed at once (its
        peer sees 1006), as uvicorn's own engines do; one it closed waits for
        the peer's close frame, up to ``close_timeout``."""
        if self._close_timer is None and self.transport is not None and not self._sock_closed:
            self._set_disconnect({"type": "websocket.disconnect", "code": 1006})
            self.transport.close()

    # Closing.

    def _close_socket(self) -> None:
        transport = self.transport
        if transport is None or self._sock_closed or transport.is_closing():
            return
        transport.close()
        timer = self._close_timer
        if timer is not None:  # the peer answered our close: stop waiting
            timer.cancel()
            self._close_timer = None
        size = getattr(transport, "get_write_buffer_size", None)
        if size is not None and size() and self.close_timeout is not None:
            # A peer that doesn't read the rest can't hold the socket.
            self._close_timer = self.loop.call_later(self.close_timeout, _drop, transport)

    def _arm_close_timer(self, timeout: float) -> None:
        if self._close_timer is None and self.transport is not None and not self._sock_closed:
            self._close_timer = self.loop.call_later(timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self.transport is not None and not self._sock_closed:
            _drop(self.transport)

    def ping(self, data: str | bytes | None = None) -> asyncio.Future[float]:
        waiter = super().ping(data)
        self.ping_sent_at = self.loop.time()
        return waiter

    @property
    def accepted(self) -> bool:
        """True once the app accepted the connection (it may be closed since)."""
        return self.protocol.state is not proto.State.CONNECTING

    @property
    def close_timer(self) -> asyncio.TimerHandle | None:
        """The timer that stops waiting for the peer's close frame, while it runs."""
        return self._close_timer

    @property
    def ping_timer(self) -> asyncio.TimerHandle | None:
        """The next keepalive step, while keepalive runs."""
        return self._keepalive

    # Helpers.

    @staticmethod
    def _add_headers(headers: Headers, fields: Iterable[tuple[bytes, bytes]]) -> None:
        for name, value in fields:
            headers.add(name.decode("latin-1"), value.decode("latin-1"))


def _payload(message: Message) -> str | bytes:
    """The data of a ``websocket.send`` event: exactly one of text or bytes."""
    text = message.get("text")
    data = message.get("bytes")
    if text is not None:
        if data is not None:
            raise RuntimeError("websocket.send needs one of text or bytes, not both")
        if type(text) is not str:
            raise TypeError(f"websocket.send text must be str, not {type(text).__name__}")
        return text
    if data is None:
        raise RuntimeError("websocket.send needs text or bytes")
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"websocket.send bytes must be bytes, not {type(data).__name__}")
        data = bytes(data)
    return data


def _check_headers(headers: list[Any], event: str) -> None:
    """Refuse header fields that would break the response (CR, LF, bad names)."""
    for field in headers:
        try:
            name, value = field
        except (TypeError, ValueError):
            raise RuntimeError(f"{event} headers must be [name, value] pairs") from None
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise RuntimeError(f"{event} header names and values must be bytes")
        if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
            raise RuntimeError(f"{event} has an invalid header: {name[:40]!r}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _address(address: Any) -> Any:
    """``(host, port)`` of a TCP socket, ``[path, None]`` of a Unix one."""
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    if isinstance(address, str) and address:
        return (address, None)
    return None


def _address_text(scope: dict[str, Any] | None) -> str:
    client = scope.get("client") if scope else None
    if not client:
        return ""
    host, port = client
    return f"{host}:{port}" if port is not None else str(host)


def _target(scope: dict[str, Any] | None) -> str:
    if not scope:
        return ""
    query = scope.get("query_string") or b""
    path = str(scope["path"])
    return f"{path}?{query.decode('latin-1')}" if query else path
