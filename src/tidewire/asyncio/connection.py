"""An open WebSocket connection on asyncio: the part both sides share.

``Connection`` is the transport's protocol (it has ``asyncio.Protocol``'s
methods): the transport hands it bytes, it feeds them to the sans-I/O protocol
object and writes what that returns. While the rest of a large message comes
in, a buffered protocol stands in for it and has the transport read straight
into the message. The user-facing coroutines (``recv``,
``send``, ``ping``, ``close``) live here too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from .. import protocol as proto
from ..exceptions import ConcurrencyError, ConnectionClosed
from ..protocol.frames import CloseCode, Pong
from ..protocol.mask import SPEEDUPS
from .messages import MessageQueue

__all__ = ["Connection", "Data", "MessageCallback"]

Data = str | bytes
MessageCallback = Callable[[Data], object]
_BYTES_LIKE = (bytes, bytearray, memoryview)
_DATA_TYPES = (str, *_BYTES_LIKE)  # what send() takes as one message
_OPEN = proto.State.OPEN  # read on every message: cheaper than the enum on 3.11
# The rest of a message at least this long is read straight into it.
_READ_INTO_MIN = 1 << 16


class Connection:
    """One WebSocket connection; subclassed by ``ServerConnection`` and
    ``ClientConnection``, which add the opening handshake.

    It doesn't derive from ``asyncio.Protocol``: its compiled twin is a C type,
    whose attributes are read from its struct, and those can't derive from a
    Python class. Event loops only call the methods."""

    __slots__ = (
        "protocol",
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "write_limit",
        "_id",
        "logger",
        "loop",
        "transport",
        "messages",
        "closed",
        "_pings",
        "_drain",
        "_write_paused",
        "_keepalive",
        "_close_timer",
        "_fail_timer",
        "_reading_paused",
        "_sock_closed",
        "_received",
        "_flush_due",
        "_on_message",
        "_delivering",
    )

    protocol: proto.ServerProtocol | proto.ClientProtocol

    def __init__(
        self,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_queue: int | None = 16,
        write_limit: int = 2**16,
        logger: logging.Logger | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.write_limit = write_limit
        self._id: uuid.UUID | None = None
        self.logger = logger or logging.getLogger("tidewire")
        # The running loop; a server passes its own, which spares a getpid()
        # system call per connection (get_running_loop() makes one on 3.11).
        self.loop = loop = asyncio.get_running_loop() if loop is None else loop
        self.transport: asyncio.Transport | None = None
        self.messages = MessageQueue(
            max_queue, None, self._pause_reading, self._resume_reading, loop=loop
        )
        self.closed = self.loop.create_future()  # result None once the socket closed
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._keepalive: asyncio.TimerHandle | None = None  # the next keepalive step
        self._close_timer: asyncio.TimerHandle | None = None
        self._fail_timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._sock_closed = False
        self._received = False  # for keepalive: did anything come in since it armed?
        self._flush_due = False  # broadcast() frames wait for the end of the turn
        self._on_message: MessageCallback | None = None
        self._delivering = False  # in _process: send_nowait() leaves the write to it

    # asyncio.Protocol's methods

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports don't subclass asyncio.Transport but behave alike.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(self.write_limit, self.write_limit // 4)

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._process()
        return None  # let asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._sock_closed = True
        if self.protocol.state is not proto.State.CLOSED:
            self.protocol.receive_eof()
        if exc is not None and self.protocol.exc is None:
            self.protocol.exc = exc
        self.messages.close()
        # No message can come any more. Callbacks often hold the connection
        # (on_message(ws.send_nowait)): dropping them lets refcounting free it.
        self.messages.detach()
        self._on_message = None
        for timer in (self._close_timer, self._fail_timer):
            if timer is not None:
                timer.cancel()
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self._pings:
            closed = self.protocol.close_exc()
            for waiter, _ in self._pings.values():
                if not waiter.done():
                    waiter.set_exception(closed)
                    waiter.exception()  # nobody may be awaiting it
            self._pings.clear()
        self._wake_writers()
        if not self.closed.done():
            self.closed.set_result(None)
        self._on_closed()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._on_message is not None:
            # A callback can't wait for the buffer: stop reading what it answers.
            self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._on_message is not None and not self.messages.paused:
            self._resume_reading()
        self._wake_writers()

    # Event handling.

    def _process(self, data: bytes | None = None) -> None:
        """Take ``data`` in if any, deliver events, write what is due, close
        the socket when expected."""
        p = self.protocol
        if data is not None:
            self._received = True  # cheaper than counting: no int to allocate
            p.receive_data(data)
        events = p.events_received()
        if not events:
            if data is not None:
                space = p.receive_space()
                if space is not None and len(space) >= _READ_INTO_MIN:
                    self._read_into()
        else:
            callback = self._on_message
            self._delivering = True
            try:
                for event in events:
                    cls = type(event)
                    if cls is str or cls is bytes:
                        if callback is None:
                            self.messages.put(event)  # type: ignore[arg-type]
                        else:
                            callback(event)  # type: ignore[arg-type]
                            callback = self._on_message  # the callback may change it
                    elif cls is Pong:
                        self._on_pong(event.data)  # type: ignore[union-attr]
                    elif cls is proto.Request or cls is proto.Response:
                        self._on_handshake(event)  # type: ignore[arg-type]
            except ConnectionClosed:
                if callback is None:
                    raise  # pragma: no cover - the queue never raises it
                # The callback answered a message that came before a close.
            except Exception:
                if callback is None:
                    raise
                self.logger.error("message callback failed; closing %s", self.id, exc_info=True)
                self._on_message = None
                p.fail(CloseCode.INTERNAL_ERROR, "message callback failed")
            finally:
                self._delivering = False
        if p.pending_failure is not None:
            if not self.messages:
                p.fail_pending()
            elif self._fail_timer is None:
                # Let the application read (and answer) what came before the
                # violation, but not forever.
                self.messages.drained = self._on_drained
                self._fail_timer = self.loop.call_later(
                    self.close_timeout or 10, self._on_drained
                )
        out = p.data_to_send()
        if out:
            transport = self.transport  # _write(), inlined: this runs per message
            if transport is not None and not self._sock_closed:
                if len(out) == 1:
                    transport.write(out[0])
                else:
                    transport.writelines(out)
        state = p.state
        if state is _OPEN:
            return  # the common case: nothing is closing
        if state is not proto.State.CONNECTING and (
            p.close_rcvd is not None or p.failed or state is proto.State.CLOSED
        ):
            self.messages.close()
        if p.close_expected():
            self._close_socket()

    # The transport calls the same method for bytes as the rest of the class
    # does after a change: one Python call less on every chunk read.
    data_received = _process

    def _read_into(self) -> None:
        """Have the transport read the rest of a large message into the message
        itself, sparing a copy: a buffered protocol stands in for this one
        until the message is complete."""
        transport = self.transport
        if transport is not None and not self._sock_closed and not transport.is_closing():
            transport.set_protocol(_MessageReader(self))

    def _on_drained(self) -> None:
        """The application read every message: fail now if a violation waits."""
        if self.protocol.pending_failure is not None:
            self.protocol.fail_pending()
            self._process()

    def _on_handshake(self, event: proto.Request | proto.Response) -> None:
        raise NotImplementedError

    def _on_closed(self) -> None:
        """Hook for subclasses: the socket is closed."""

    def _flush(self) -> None:
        out = self.protocol.data_to_send()
        if out:
            self._write(out)

    def _write(self, out: list[bytes]) -> None:
        if self.transport is not None and not self._sock_closed:
            if len(out) == 1:
                self.transport.write(out[0])
            else:
                self.transport.writelines(out)  # one writev() on uvloop

    def _close_socket(self) -> None:
        transport = self.transport
        if transport is None or self._sock_closed or transport.is_closing():
            return
        p = self.protocol
        if p.side is proto.Side.SERVER or p.failed or p.state is proto.State.CLOSED:
            # close() flushes the write buffer first; a peer that doesn't read
            # would keep the socket forever, so abort after close_timeout.
            transport.close()
        # A client lets the server close first (RFC 6455 section 7.1.1). Once
        # the handshake is over, even close_timeout=None doesn't wait for ever.
        self._arm_close_timer(self.close_timeout if self.close_timeout is not None else 10)

    def _arm_close_timer(self, timeout: float) -> None:
        """Drop the socket after ``timeout`` unless it is gone by then."""
        transport = self.transport
        if self._close_timer is None and transport is not None and not self._sock_closed:
            if (
                transport.is_closing()
                and not transport.get_write_buffer_size()
                and transport.get_extra_info("sslcontext") is None
            ):
                return  # closed with nothing to flush and no TLS shutdown: gone now
            self._close_timer = self.loop.call_later(timeout, transport.abort)

    def _pause_reading(self) -> None:
        # Once our close frame is out, keep reading: the peer's close must come
        # in, whatever the application left unread (close_timeout bounds it).
        if (
            self.transport is not None
            and not self._sock_closed
            and self.protocol.close_sent is None
        ):
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.transport is not None and self._reading_paused and not self._sock_closed:
            self._reading_paused = False
            self.transport.resume_reading()

    def _wake_writers(self) -> None:
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    # Public API.

    @property
    def id(self) -> uuid.UUID:
        """A unique identifier, for logs."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def write_paused(self) -> bool:
        """True while the socket's write buffer is above ``write_limit``."""
        return self._write_paused

    @property
    def state(self) -> proto.State:
        return self.protocol.state

    @property
    def request(self) -> proto.Request | None:
        return getattr(self.protocol, "request", None)

    @property
    def response(self) -> proto.Response | None:
        return self.protocol.response

    @property
    def subprotocol(self) -> str | None:
        return self.protocol.subprotocol

    @property
    def close_code(self) -> int | None:
        """The code the peer sent, once closed; 1006 if it sent none."""
        if self.protocol.state is not proto.State.CLOSED:
            return None
        return self.protocol.close_exc().code

    @property
    def close_reason(self) -> str | None:
        if self.protocol.state is not proto.State.CLOSED:
            return None
        return self.protocol.close_exc().reason

    @property
    def remote_address(self) -> Any:
        return None if self.transport is None else self.transport.get_extra_info("peername")

    @property
    def local_address(self) -> Any:
        return None if self.transport is None else self.transport.get_extra_info("sockname")

    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raise ``ConnectionClosedOK`` or ``ConnectionClosedError`` once the
        connection is closed and every message before the close was read.
        """
        if self._on_message is not None:
            raise ConcurrencyError("messages go to the on_message() callback")
        return await self.messages.get(self.protocol.close_exc)

    def __aiter__(self) -> AsyncIterator[Data]:
        """Iterate over messages until a normal closure; re-raise any other."""
        if self._on_message is not None:
            raise ConcurrencyError("messages go to the on_message() callback")
        return _Messages(self.messages.get, self._end_of_iteration)

    def _end_of_iteration(self) -> BaseException:
        p = self.protocol
        return StopAsyncIteration() if p.closed_ok() else p.close_exc()

    def on_message(self, callback: MessageCallback | None) -> None:
        """Hand every message to ``callback(message)`` as soon as it is parsed,
        instead of queueing it for ``recv()``; ``None`` goes back to queueing.

        This is the fastest way to receive: no task wakes up per message. The
        callback runs in the event loop's I/O callback, so it must not block;
        to answer, use ``send_nowait()``. Messages already queued are handed
        over first, in order. While a callback is set, ``recv()`` raises
        ``ConcurrencyError``, and reading stops while the write buffer is above
        ``write_limit``, so a peer that sends without reading the answers is
        slowed down by TCP. If the callback raises, the error is logged and the
        connection closes with 1011. A server handler that sets a callback
        should then ``await ws.wait_closed()``: the connection closes when the
        handler returns. The callback is dropped once the connection is lost.
        """
        if callback is not None and self.messages.waiting:
            raise ConcurrencyError("a coroutine is waiting in recv(); can't set a callback")
        self._on_message = callback
        if callback is None:
            if self._reading_paused and not self.messages.paused:
                self._resume_reading()
            return
        for message in self.messages.take_all():
            callback(message)
        if self._write_paused:
            self._pause_reading()
        self._process()  # a pending violation may now fail; flush what was sent

    def send_nowait(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one message now, without waiting for the write buffer: from a
        message callback, or from code that paces itself with ``write_paused``
        and ``drain()``. ``str`` is sent as text, bytes-like as binary.

        Raise ``ConnectionClosed`` once the connection is closing.
        """
        p = self.protocol
        if isinstance(message, str):
            p.send_text(message.encode())
        elif isinstance(message, _BYTES_LIKE):
            p.send_binary(bytes(message))
        else:
            raise TypeError(f"can't send {type(message).__name__}; use str or bytes")
        if not self._delivering:  # else the callback's caller writes it all at once
            out = p.data_to_send()  # what _flush() does, without its call
            if out:
                self._write(out)

    async def send(
        self, message: Data | Iterable[Data] | AsyncIterable[Data]
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable or async iterable of ``str`` or of bytes-like is sent as
        one fragmented message, a frame per item. Wait while the socket's write
        buffer is above ``write_limit``.
        """
        if isinstance(message, _DATA_TYPES):
            self.send_nowait(message)
        elif isinstance(message, Iterable):
            await self._send_fragments(iter(message))
            return
        elif isinstance(message, AsyncIterable):
            await self._send_async_fragments(message)
            return
        else:
            raise TypeError(f"can't send {type(message).__name__}; use str or bytes")
        if self._write_paused:
            await self._wait_drain()

    async def _send_fragments(self, fragments: Iterable[Data]) -> None:
        items = list(fragments)
        if not items:
            return
        text = isinstance(items[0], str)
        for item in items:
            if isinstance(item, str) is not text or not isinstance(item, _DATA_TYPES):
                raise TypeError("fragments must all be str or all be bytes-like")
        for i, item in enumerate(items):
            data = item.encode() if isinstance(item, str) else bytes(item)
            self._send_fragment(i == 0, text, data, i == len(items) - 1)
            self._flush()
            if self._write_paused:
                await self._wait_drain()

    async def _send_async_fragments(self, fragments: AsyncIterable[Data]) -> None:
        iterator = aiter(fragments)
        try:
            current = await anext(iterator)
        except StopAsyncIteration:
            return
        text = isinstance(current, str)
        first = True
        while True:
            try:
                nxt: Data | None = await anext(iterator)
            except StopAsyncIteration:
                nxt = None
            if not isinstance(current, _DATA_TYPES) or isinstance(current, str) is not text:
                # The message can't be finished cleanly: fail the connection.
                self.protocol.fail(CloseCode.INTERNAL_ERROR, "bad fragment type")
                self._process()
                raise TypeError("fragments must all be str or all be bytes-like")
            data = current.encode() if isinstance(current, str) else bytes(current)
            self._send_fragment(first, text, data, nxt is None)
            first = False
            self._flush()
            if self._write_paused:
                await self._wait_drain()
            if nxt is None:
                return
            current = nxt

    def _send_fragment(self, first: bool, text: bool, data: bytes, fin: bool) -> None:
        p = self.protocol
        if not first:
            p.send_continuation(data, fin)
        elif text:
            p.send_text(data, fin)
        else:
            p.send_binary(data, fin)

    async def drain(self) -> None:
        """Wait until the write buffer is below ``write_limit`` again, for code
        that writes without waiting (``broadcast()``) and wants to pace itself.

        Raise ``ConnectionClosed`` if the connection closes meanwhile.
        """
        if self._write_paused or self._sock_closed:
            await self._wait_drain()

    async def _wait_drain(self) -> None:
        if self._sock_closed:
            raise self.protocol.close_exc()
        if self._drain is None:
            self._drain = self.loop.create_future()
        await asyncio.shield(self._drain)
        if self._sock_closed:
            raise self.protocol.close_exc()

    def ping(self, data: Data | None = None) -> asyncio.Future[float]:
        """Send a ping; the returned future completes with the round-trip time
        in seconds when the matching pong arrives.

        A pong acknowledges every ping sent before it, as RFC 6455 allows
        the peer to answer only the latest.
        """
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise ValueError("a ping with this payload is already waiting")
        self.protocol.send_ping(payload)
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._pings[payload] = (waiter, self.loop.time())
        self._flush()
        return waiter

    def _on_pong(self, data: bytes) -> None:
        if data not in self._pings:
            return  # unsolicited pongs are heartbeats: ignore them
        now = self.loop.time()
        while self._pings:
            payload, (waiter, sent) = next(iter(self._pings.items()))
            del self._pings[payload]
            if not waiter.done():
                waiter.set_result(now - sent)
            if payload == data:
                break

    async def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong, a one-way heartbeat."""
        self.protocol.send_pong(data.encode() if isinstance(data, str) else bytes(data))
        self._flush()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Run the closing handshake and wait until the socket is closed.

        Give up waiting for the peer after ``close_timeout`` and drop the socket.
        """
        self._start_close(code, reason)
        if not self.closed.done():
            await asyncio.shield(self.closed)

    def _start_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Send a close frame unless one was sent, and make sure the socket
        is dropped after ``close_timeout`` if the peer doesn't finish."""
        if self.protocol.state is proto.State.OPEN:
            self.protocol.send_close(code, reason)
            self._process()
        self._resume_reading()
        # A timer, not wait_for(): that costs a task, a future and a timer per
        # connection, and a server closes at the end of every handler.
        if self.close_timeout is not None:
            self._arm_close_timer(self.close_timeout)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed, however that happens."""
        await asyncio.shield(self.closed)

    def fail(self, code: int, reason: str) -> None:
        """Close at once with ``code``, without waiting for the peer."""
        self.protocol.fail(code, reason)
        self._process()

    # Keepalive.

    def start_keepalive(self) -> None:
        if self.ping_interval is not None and self._keepalive is None and not self._sock_closed:
            self._arm_keepalive()

    # Ping when nothing came in for ping_interval: incoming bytes already prove
    # the peer alive, and a busy connection isn't disturbed. Timers, not a task:
    # a task and its frame would cost every idle connection about 1 KiB.

    def _arm_keepalive(self) -> None:
        assert self.ping_interval is not None
        self._received = False
        self._keepalive = self.loop.call_later(self.ping_interval, self._keepalive_due)

    def _keepalive_due(self) -> None:
        self._keepalive = None
        if self._sock_closed or self.protocol.state is not proto.State.OPEN:
            return
        if self._received:
            self._arm_keepalive()  # bytes came in: the peer is alive
            return
        waiter = self.ping()
        if self.ping_timeout is None:
            self._arm_keepalive()
            return
        self._keepalive = self.loop.call_later(self.ping_timeout, self._keepalive_timed_out)
        waiter.add_done_callback(self._keepalive_answered)

    def _keepalive_answered(self, waiter: asyncio.Future[float]) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if not waiter.cancelled() and waiter.exception() is None and not self._sock_closed:
            self._arm_keepalive()

    def _keepalive_timed_out(self) -> None:
        self._keepalive = None
        if self.protocol.state is proto.State.OPEN:
            self.logger.info("keepalive ping timed out; closing %s", self.id)
            self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._process()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.protocol.state.name}>"


class _Messages:
    """``async for`` over a connection. A step is one ``MessageQueue.get()``
    awaited as it is: no generator frame between it and the loop."""

    __slots__ = ("_get", "_end")

    def __init__(
        self,
        get: Callable[[Callable[[], BaseException]], Awaitable[Data]],
        end: Callable[[], BaseException],
    ) -> None:
        self._get = get
        self._end = end

    def __aiter__(self) -> _Messages:
        return self

    def __anext__(self) -> Awaitable[Data]:
        return self._get(self._end)


class _MessageReader(asyncio.BufferedProtocol):
    """The transport's protocol while the rest of a large message is read into
    it in place (see ``Connection._read_into``); it hands the transport back to
    the connection once the message is complete, or when it fails meanwhile."""

    __slots__ = ("conn", "_spare")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._spare: bytearray | None = None

    def get_buffer(self, sizehint: int) -> memoryview | bytearray:
        space = self.conn.protocol.receive_space()
        if space is not None:
            return space
        # The connection failed or closed since (its socket normally stops
        # reading then): it would drop these bytes unread, and so do we.
        self._spare = bytearray(4096)
        return self._spare

    def buffer_updated(self, nbytes: int) -> None:
        conn = self.conn
        p = conn.protocol
        if self._spare is not None:
            self._spare = None
            self._hand_back()
            return
        conn._received = True
        if not p.received_into(nbytes):
            self._hand_back()
        conn._process()

    def _hand_back(self) -> None:
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.set_protocol(self.conn)  # type: ignore[arg-type]

    def eof_received(self) -> bool | None:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()


# The build compiles this very file with Cython as ``_connection_c`` (setup.py):
# this module then hands out the compiled class, which ``ServerConnection`` and
# ``ClientConnection`` derive from, and keeps the twin as ``ConnectionPy``.
ConnectionPy = Connection
if SPEEDUPS and not TYPE_CHECKING and __name__ == f"{__package__}.connection":
    from ._connection_c import Connection  # type: ignore[assignment]  # noqa: F811

