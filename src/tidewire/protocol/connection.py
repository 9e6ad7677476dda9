"""The state machine of an open WebSocket connection, without I/O.

Calling contract, for the I/O layer:

1. Feed what the socket gave: ``receive_data(data)``, or ``receive_eof()`` at
   the end of the stream.
2. Collect ``events_received()`` and deliver them.
3. Write ``data_to_send()`` to the socket.
4. If ``close_expected()``, close the socket: a server right away; a client
   after the server closed it, or a timeout (RFC 6455 section 7.1.1), unless
   the connection failed.

An I/O layer that can hand messages to the application before failing sets
``defer_failures``: a violation then sets ``pending_failure`` and stops reading,
and the layer calls ``fail_pending()`` once the application has read the
messages that came before it, so that it may still answer them.

The ``send_*`` methods only queue bytes for ``data_to_send()``. The parser never
raises into the caller: a violation by the peer is turned into a close frame
with the right code, and the exception is kept in ``exc``.

States: CONNECTING -> OPEN -> CLOSING -> CLOSED. CONNECTING belongs to the
handshake subclasses in ``client`` and ``server``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    ProtocolError,
)
from .deflate import Deflate
from .frames import (
    SMALL_HEADERS,
    Close,
    CloseCode,
    Opcode,
    Ping,
    Pong,
    build_close,
    build_frame,
    build_frame_parts,
    check_close_code,
)
from .http import Request, Response
from .mask import SPEEDUPS
from .states import Side, State

if TYPE_CHECKING or not SPEEDUPS:
    from .reader import Reader
else:
    from ._reader_c import Reader

Event = str | bytes | Ping | Pong | Close | Request | Response

__all__ = ["State", "Side", "Connection", "Event", "DEFAULT_MAX_SIZE"]

DEFAULT_MAX_SIZE = 1 << 20
_SPLIT_FRAMES_ABOVE = 1 << 16
_MASKS_AHEAD = 64
_OK_CODES = (CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.NO_STATUS)


# Enum members as module globals for the paths run on every message: reading
# ``State.OPEN`` costs several times a global lookup on CPython 3.11.
_CONNECTING = State.CONNECTING
_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED
_CLIENT = Side.CLIENT
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY


class Connection:
    """One WebSocket connection, either side, once the handshake is done."""

    __slots__ = (
        "side",
        "state",
        "max_size",
        "deflate",
        "reader",
        "close_rcvd",
        "close_sent",
        "close_rcvd_then_sent",
        "exc",
        "defer_failures",
        "pending_failure",
        "_events",
        "_out",
        "_failed",
        "_sending_fragments",
        "_compress_fragments",
        "_masks",
        "_mask_at",
    )

    def __init__(
        self,
        side: Side,
        *,
        max_size: int | None = DEFAULT_MAX_SIZE,
        max_frame_size: int | None = None,
        state: State = State.OPEN,
    ) -> None:
        self.side = side
        self.state = state
        self.max_size = max_size
        self.deflate: Deflate | None = None
        self.reader = Reader(
            expect_mask=side is Side.SERVER,
            max_size=max_size,
            max_frame_size=max_frame_size,
        )
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.exc: BaseException | None = None
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._failed = False
        self.defer_failures = False
        self.pending_failure: ProtocolError | None = None
        self._sending_fragments = False
        self._compress_fragments = False
        self._masks = b""  # a client's masking keys, drawn ahead (see _new_mask)
        self._mask_at = 0

    # Receiving.

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the network. Then call ``events_received()``,
        ``data_to_send()`` and ``close_expected()``."""
        if self.state is _CONNECTING:
            self._receive_handshake(data)
            return
        if self._ignoring():
            return
        events = self._events
        start = len(events)
        try:
            controls = self.reader.feed(data, events)  # type: ignore[arg-type]
        except ProtocolError as exc:
            self._handle(start)
            if self.close_rcvd is not None:
                # The violation came after a close frame, which ends what is
                # read: ignored, as it is when it comes in a later chunk.
                return
            if self.defer_failures and self.state is State.OPEN:
                self.pending_failure = exc
            else:
                self.fail(exc.code, str(exc), exc)
            return
        if controls:
            self._handle(start)

    def receive_space(self) -> memoryview | None:
        """Where the next bytes from the network may be read straight into, or
        ``None``: the rest of a large message, while nothing else is being
        read. Having written bytes there, call ``received_into()`` instead of
        ``receive_data()``."""
        if self.state is _CONNECTING or self._ignoring():
            return None
        return self.reader.space()

    def received_into(self, n: int) -> bool:
        """``n`` bytes were read into ``receive_space()``; return whether more
        of the message is still to come. Then collect events as after
        ``receive_data()``."""
        return self.reader.filled(n, self._events)  # type: ignore[arg-type]

    def _ignoring(self) -> bool:
        """Whether frames that come now are dropped unread."""
        return (
            self._failed
            or self.close_rcvd is not None
            or self.pending_failure is not None
            or self.state is _CLOSED
        )

    def _receive_handshake(self, data: bytes) -> None:
        """Bytes that come before the connection is open: the HTTP upgrade,
        handled by the ``client`` and ``server`` subclasses."""
        raise NotImplementedError

    def _handle(self, start: int) -> None:
        """React to the control frames among the events from ``start`` on."""
        events = self._events
        for i in range(start, len(events)):
            event = events[i]
            cls = type(event)
            if cls is Ping:
                if self.state is State.OPEN:
                    self._write(Opcode.PONG, event.data)  # type: ignore[union-attr]
            elif cls is Close:
                assert isinstance(event, Close)
                self.close_rcvd = event
                if self.state is State.OPEN:
                    # Echo the code, as RFC 6455 section 5.5.1 asks.
                    echo = event if not event.reason else Close(event.code)
                    self._send_close(echo, rcvd_then_sent=True)
                self.state = State.CLOSING
                # Nothing may follow a close frame.
                del events[i + 1 :]
                return

    def receive_eof(self) -> None:
        """The peer closed its write side. Then collect events and data to send."""
        self.state = State.CLOSED

    def events_received(self) -> list[Event]:
        """Events parsed since the last call: ``str``/``bytes`` messages,
        ``Ping``, ``Pong``, ``Close``, and the ``Request`` or ``Response`` of
        the handshake."""
        events = self._events
        if not events:
            return events
        self._events = []
        return events

    def data_to_send(self) -> list[bytes]:
        """Bytes to write, in order."""
        out = self._out
        if not out:
            return out
        self._out = []
        return out

    def close_expected(self) -> bool:
        """Tell whether the socket should now be closed by us.

        True once the close handshake is done (or the connection failed): a
        server closes the TCP connection first (RFC 6455 section 7.1.1); a
        client gives the server a moment to do so before closing it itself.
        """
        return self.state is State.CLOSED or self._failed or self.close_rcvd is not None

    @property
    def failed(self) -> bool:
        """True once we failed the connection because of the peer or a timeout."""
        return self._failed

    # Sending.

    def send_text(self, data: bytes, fin: bool = True) -> None:
        """Send a text message (UTF-8 ``data``), or its first fragment."""
        self._send_data(_TEXT, data, fin)

    def send_binary(self, data: bytes, fin: bool = True) -> None:
        """Send a binary message, or its first fragment."""
        self._send_data(_BINARY, data, fin)

    def send_continuation(self, data: bytes, fin: bool) -> None:
        """Send the next fragment of a message started with ``fin=False``."""
        if not self._sending_fragments:
            raise ProtocolError("no fragmented message in progress")
        self._check_open()
        if self._compress_fragments:
            assert self.deflate is not None
            data = self.deflate.compress(data, fin)
        self._append_frame(Opcode.CONT, data, fin, False)
        self._sending_fragments = not fin

    def _send_data(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        if self.state is not _OPEN:
            raise self.close_exc()
        if self._sending_fragments:
            raise ProtocolError("a fragmented message is in progress")
        deflate = self.deflate
        rsv1 = False
        if deflate is not None and deflate.can_compress:
            data = deflate.compress(data, fin)
            rsv1 = True
        if fin and len(data) < 126 and self.side is not _CLIENT:
            # The common case, inlined: a small unmasked frame in one piece.
            headers = SMALL_HEADERS[(0xC0 if rsv1 else 0x80) | opcode]
            self._out.append(headers[len(data)] + data)
            return
        self._append_frame(opcode, data, fin, rsv1)
        self._sending_fragments = not fin
        self._compress_fragments = rsv1 and not fin

    def send_shared(self, opcode: Opcode, data: bytes, cache: dict[object, bytes]) -> None:
        """Send one message that goes to many connections (a broadcast).

        Frames that don't depend on the connection are built once and kept in
        ``cache``: plain frames, and compressed ones when compression starts
        afresh for each message (no context takeover). A client masks each
        frame anew and a connection with context takeover compresses on its
        own, as the RFCs require.
        """
        if self.state is not _OPEN:
            raise self.close_exc()
        if self._sending_fragments:
            raise ProtocolError("a fragmented message is in progress")
        deflate = self.deflate
        key: object = None
        if self.side is _CLIENT or (
            deflate is not None
            and deflate.can_compress
            and not deflate.local_no_context_takeover
        ):
            self._send_data(opcode, data, True)
            return
        if deflate is not None and deflate.can_compress:
            key = (deflate.local_max_window_bits, deflate.level, deflate.mem_level)
        frame = cache.get(key)
        if frame is None:
            if key is None:
                frame = build_frame(opcode, data)
            else:
                assert deflate is not None
                frame = build_frame(opcode, deflate.compress(data), rsv1=True)
            cache[key] = frame
        self._out.append(frame)

    def send_ping(self, data: bytes = b"") -> None:
        self._check_open()
        self._write(Opcode.PING, data)

    def send_pong(self, data: bytes = b"") -> None:
        self._check_open()
        self._write(Opcode.PONG, data)

    def send_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake. Use 1005 to send no code at all."""
        if code != CloseCode.NO_STATUS and not check_close_code(code):
            raise ValueError(f"invalid close code {code}")
        if code == CloseCode.NO_STATUS and reason:
            raise ValueError("a close reason needs a close code")
        if len(reason.encode()) > 123:
            raise ValueError("close reason longer than 123 bytes")
        self._check_open()
        self._send_close(Close(code, reason), rcvd_then_sent=False)
        self.state = State.CLOSING

    def fail(self, code: int, reason: str = "", exc: BaseException | None = None) -> None:
        """Fail the connection (RFC 6455 section 7.1.7): send a close frame with
        ``code`` if we still can, stop reading, and expect the socket closed."""
        if exc is not None and self.exc is None:
            self.exc = exc
        if self.state is State.OPEN:
            reason = _truncate(reason)
            self._send_close(Close(code, reason), rcvd_then_sent=False)
        if self.state is not State.CLOSED:
            self.state = State.CLOSING
        self._failed = True

    def fail_pending(self) -> None:
        """Fail the connection for the violation held in ``pending_failure``."""
        exc = self.pending_failure
        if exc is not None:
            self.pending_failure = None
            self.fail(exc.code, str(exc), exc)

    # Outcome.

    def closed_ok(self) -> bool:
        """True once a close frame went each way, each with 1000, 1001 or no
        code: the closure that ``close_exc()`` reports as ``ConnectionClosedOK``."""
        rcvd, sent = self.close_rcvd, self.close_sent
        return (
            rcvd is not None
            and sent is not None
            and rcvd.code in _OK_CODES
            and sent.code in _OK_CODES
        )

    def close_exc(self) -> ConnectionClosed:
        """The exception that tells the user how the connection closed."""
        cls = ConnectionClosedOK if self.closed_ok() else ConnectionClosedError
        exc = cls(self.close_rcvd, self.close_sent, self.close_rcvd_then_sent)
        exc.__cause__ = self.exc
        return exc

    # Internals.

    def _check_open(self) -> None:
        if self.state is not _OPEN:
            raise self.close_exc()

    def _send_close(self, close: Close, *, rcvd_then_sent: bool) -> None:
        self.close_sent = close
        if self.close_rcvd_then_sent is None:
            self.close_rcvd_then_sent = rcvd_then_sent
        self._write(Opcode.CLOSE, build_close(close))

    def _write(self, opcode: Opcode, payload: bytes) -> None:
        self._append_frame(opcode, payload, True, False)

    def _append_frame(self, opcode: int, payload: bytes, fin: bool, rsv1: bool) -> None:
        mask = self._new_mask() if self.side is _CLIENT else None
        if len(payload) < _SPLIT_FRAMES_ABOVE:
            self._out.append(build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))
        else:
            # Header and payload go out side by side: no copy of a large payload.
            self._out.extend(build_frame_parts(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))

    def _new_mask(self) -> bytes:
        """A fresh masking key from os.urandom(), which is drawn 64 keys at a
        time: a system call per frame cost a client 2-3% of its time."""
        at = self._mask_at
        if at == len(self._masks):
            self._masks = os.urandom(_MASKS_AHEAD * 4)
            at = 0
        self._mask_at = at + 4
        return self._masks[at : at + 4]

    def set_deflate(self, deflate: Deflate | None) -> None:
        """Install the permessage-deflate codec agreed in the handshake."""
        self.deflate = deflate
        self.reader.deflate = deflate


def _truncate(reason: str) -> str:
    data = reason.encode()
    if len(data) <= 123:
        return reason
    return data[:120].decode(errors="ignore") + "..."


# The build compiles this very file with Cython as ``_connection_c`` (see
# setup.py); this module then hands out the compiled class, and keeps the
# pure-Python twin as ``ConnectionPy``.
ConnectionPy = Connection
if SPEEDUPS and not TYPE_CHECKING and __name__ == f"{__package__}.connection":
    from ._connection_c import Connection  # type: ignore[assignment]  # noqa: F811
