"""An open WebSocket connection on threads: the part both sides share.

Each connection has a reader thread: it receives from the socket, feeds the
sans-I/O protocol, hands messages to the queue that ``recv()`` reads and
answers pings. Any thread may send. Two locks keep this straight:

- ``_lock`` guards the protocol object. It is held only to call the protocol,
  never during I/O, so a thread stuck writing never stops the reader.
- ``_write_lock`` serializes writes, so bytes leave in the order the protocol
  produced them. The reader thread never waits for it: when another thread is
  writing, that thread writes the reader's bytes too (see ``_flush``).

Timers are threads too: a keepalive thread when ``ping_interval`` is set, and
a watchdog once closing starts, which drops the socket after ``close_timeout``
if the peer doesn't finish the closing handshake.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from .. import protocol as proto
from ..exceptions import ConnectionClosed, ConnectionClosedOK
from ..protocol.frames import CloseCode
from .messages import MessageQueue

__all__ = ["Connection", "Data"]

Data = str | bytes
RECV_SIZE = 1 << 16
_BYTES_LIKE = (bytes, bytearray, memoryview)
C = TypeVar("C", bound="Connection")


class Connection:
    """One WebSocket connection; subclassed by ``ServerConnection`` and
    ``ClientConnection``, which add the opening handshake."""

    protocol: proto.ServerProtocol | proto.ClientProtocol

    def __init__(
        self,
        sock: socket.socket,
        *,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_queue: int | None = 16,
        logger: logging.Logger | None = None,
    ) -> None:
        self.sock = sock
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.id = uuid.uuid4()
        self.logger = logger or logging.getLogger("tidewire")
        self.messages = MessageQueue(max_queue)
        self._local_address = _address(sock.getsockname)
        self._remote_address = _address(sock.getpeername)
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._send_lock = threading.Lock()  # one message at a time, fragments included
        self._outbox: list[bytes] = []  # taken from the protocol, not written yet
        self._pings: dict[bytes, tuple[threading.Event, bool]] = {}
        self._last_recv = time.monotonic()
        self._closing = False
        self._done_reading = False
        self._write_closed = False
        self._watchdog: threading.Timer | None = None
        self._closed = threading.Event()  # set once the socket is closed

    # Properties.

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
        return self._remote_address

    @property
    def local_address(self) -> Any:
        return self._local_address

    # Receiving.

    def recv(self, timeout: float | None = None) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raise ``TimeoutError`` if none comes within ``timeout`` seconds, and
        ``ConnectionClosedOK`` or ``ConnectionClosedError`` once the connection
        is closed and every message before the close was read.
        """
        try:
            return self.messages.get(timeout)
        except EOFError:
            raise self.protocol.close_exc() from self.protocol.exc

    def __iter__(self) -> Iterator[Data]:
        """Iterate over messages until a normal closure; re-raise any other."""
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # Sending.

    def send(self, message: Data | Iterable[Data]) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable of ``str`` or of bytes-like is sent as one fragmented
        message, a frame per item. Return once the bytes are handed to the
        socket: this blocks while the peer doesn't read.
        """
        if isinstance(message, str):
            with self._send_lock, self._lock:
                self.protocol.send_text(message.encode())
        elif isinstance(message, _BYTES_LIKE):
            with self._send_lock, self._lock:
                self.protocol.send_binary(bytes(message))
        elif isinstance(message, Iterable):
            self._send_fragments(list(message))
            return
        else:
            raise TypeError(f"can't send {type(message).__name__}; use str or bytes")
        self._flush()

    def _send_fragments(self, items: list[Data]) -> None:
        if not items:
            return
        text = isinstance(items[0], str)
        for item in items:
            if isinstance(item, str) is not text or not isinstance(item, (str, *_BYTES_LIKE)):
                raise TypeError("fragments must all be str or all be bytes-like")
        p = self.protocol
        with self._send_lock:
            for i, item in enumerate(items):
                data = item.encode() if isinstance(item, str) else bytes(item)
                fin = i == len(items) - 1
                with self._lock:
                    if i:
                        p.send_continuation(data, fin)
                    elif text:
                        p.send_text(data, fin)
                    else:
                        p.send_binary(data, fin)
                self._flush()

    def ping(self, data: Data | None = None) -> threading.Event:
        """Send a ping; the returned event is set when the matching pong arrives.

        A pong acknowledges every ping sent before it, as RFC 6455 allows
        the peer to answer only the latest.
        """
        waiter = self._ping(data, wake_on_close=False)
        self._flush()
        return waiter

    def _ping(self, data: Data | None, *, wake_on_close: bool) -> threading.Event:
        with self._lock:
            if data is None:
                payload = os.urandom(4)
                while payload in self._pings:
                    payload = os.urandom(4)
            else:
                payload = data.encode() if isinstance(data, str) else bytes(data)
                if payload in self._pings:
                    raise ValueError("a ping with this payload is already waiting")
            self.protocol.send_ping(payload)
            waiter = threading.Event()
            self._pings[payload] = (waiter, wake_on_close)
        return waiter

    def _on_pong(self, data: bytes) -> None:
        """Acknowledge the pings up to the one that ``data`` answers; hold ``_lock``."""
        if data not in self._pings:
            return  # unsolicited pongs are heartbeats: ignore them
        while self._pings:
            payload, (waiter, _) = next(iter(self._pings.items()))
            del self._pings[payload]
            waiter.set()
            if payload == data:
                break

    def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong, a one-way heartbeat."""
        with self._lock:
            self.protocol.send_pong(data.encode() if isinstance(data, str) else bytes(data))
        self._flush()

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Run the closing handshake and wait until the socket is closed.

        Give up waiting for the peer after ``close_timeout`` and drop the socket.
        """
        self._send_close(code, reason)
        self._closed.wait()

    def _send_close(self, code: int, reason: str, *, wait: bool = True) -> None:
        with self._lock:
            try:
                self.protocol.send_close(code, reason)
            except ConnectionClosed:
                pass  # closing already
        self.messages.release()  # the reader must go on to the peer's close frame
        self._start_watchdog()
        self._flush_quietly(wait)

    def fail(self, code: int, reason: str) -> None:
        """Close at once with ``code``, without waiting for the peer."""
        with self._lock:
            self.protocol.fail(code, reason)
        self._start_watchdog()
        self._flush_quietly()
        self._abort()

    # Context manager.

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Writing.

    def _flush(self, wait: bool = True) -> None:
        """Write what the protocol has for the socket, in order.

        If another thread holds ``_write_lock`` and ``wait`` is false, return
        at once: that thread checks for more bytes after releasing the lock,
        and writes ours too unless someone else took the lock by then.
        Raise ``ConnectionClosed`` if the socket fails while we write.
        """
        acquired = self._write_lock.acquire(blocking=wait)
        while acquired:
            try:
                error = self._write_out()
            finally:
                self._write_lock.release()
            if error is not None:
                raise self.protocol.close_exc() from error
            acquired = self._output_waiting() and self._write_lock.acquire(blocking=False)

    def _flush_quietly(self, wait: bool = True) -> None:
        try:
            self._flush(wait)
        except ConnectionClosed:
            pass  # the reader thread finds out and finishes the connection

    def _output_waiting(self) -> bool:
        with self._lock:
            self._outbox += self.protocol.data_to_send()
            return bool(self._outbox)

    def _write_out(self) -> OSError | None:
        """Write until the protocol has nothing more; hold ``_write_lock``."""
        while True:
            with self._lock:
                out = self._outbox + self.protocol.data_to_send()
                self._outbox = []
            if not out or self._write_closed:
                return None
            try:
                self.sock.sendall(out[0] if len(out) == 1 else b"".join(out))
            except OSError as exc:
                # The peer is gone; the reader thread will see it too.
                self._write_closed = True
                if self.protocol.exc is None:
                    self.protocol.exc = exc
                self._abort()
                return exc

    # The reader thread.

    def _start(self) -> None:
        """Start the threads of an open connection."""
        name = f"tidewire-{self.id.hex[:8]}"
        threading.Thread(target=self._read_loop, name=f"{name}-reader", daemon=True).start()
        if self.ping_interval is not None:
            threading.Thread(
                target=self._keepalive_loop, name=f"{name}-keepalive", daemon=True
            ).start()

    def _read_loop(self) -> None:
        try:
            self._react()  # to what arrived with the end of the handshake
            while not self._done_reading:
                try:
                    data = self.sock.recv(RECV_SIZE)
                except OSError as exc:
                    if self.protocol.exc is None:
                        self.protocol.exc = exc
                    data = b""
                self._receive(data)
                if not data:
                    break
                self.messages.throttle()
        except Exception:
            self.logger.error("reader thread of %s failed", self.id, exc_info=True)
        finally:
            self._close_socket()

    def _receive(self, data: bytes) -> None:
        p = self.protocol
        with self._lock:
            if data:
                self._last_recv = time.monotonic()
                p.receive_data(data)
            else:
                p.receive_eof()
            self._deliver(p.events_received())
        self._react()

    def _deliver(self, events: list[proto.Event]) -> None:
        """Queue messages and acknowledge pings; hold ``_lock``."""
        put = self.messages.put
        for event in events:
            cls = type(event)
            if cls is str or cls is bytes:
                put(event)  # type: ignore[arg-type]
            elif cls is proto.Pong:
                self._on_pong(event.data)  # type: ignore[union-attr]

    def _react(self) -> None:
        """Fail for a pending violation, write what is due, start closing."""
        p = self.protocol
        if p.pending_failure is not None:
            # Let the application read (and answer) what came before the
            # violation, but not forever.
            self.messages.wait_drained(self.close_timeout or 10)
            with self._lock:
                p.fail_pending()
        self._flush_quietly(wait=False)
        if not self._closing and p.close_expected():
            self._closing = True
            self._start_watchdog()
            if p.side is proto.Side.SERVER or p.failed or p.state is proto.State.CLOSED:
                self._shutdown_write()
                # Nothing may follow a clean closing handshake: close now. After
                # a failure, read on until the peer closes: closing a socket
                # with unread data resets the connection, which may destroy
                # the close frame before the peer reads it.
                self._done_reading = not p.failed
            # A client lets the server close first (RFC 6455 section 7.1.1).

    def _shutdown_write(self) -> None:
        """Write the close frame, then end our side of the TCP connection."""
        with self._write_lock:
            self._write_out()
            self._write_closed = True
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _start_watchdog(self) -> None:
        with self._lock:
            if self._watchdog is not None or self._closed.is_set():
                return
            timeout = self.close_timeout if self.close_timeout is not None else 10
            self._watchdog = threading.Timer(timeout, self._abort)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _abort(self) -> None:
        """Drop the connection: this wakes threads blocked on the socket."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _close_socket(self) -> None:
        self._write_closed = True
        self._abort()  # wakes a writer blocked on a peer that stopped reading
        with self._write_lock:
            self.sock.close()
        with self._lock:
            if self.protocol.state is not proto.State.CLOSED:
                self.protocol.receive_eof()
            watchdog, self._watchdog = self._watchdog, None
            for waiter, wake_on_close in self._pings.values():
                if wake_on_close:
                    waiter.set()
            self._pings.clear()
            self._closed.set()
        if watchdog is not None:
            watchdog.cancel()
        self.messages.close()
        self._on_closed()

    def _on_closed(self) -> None:
        """Hook for subclasses: the socket is closed."""

    # Keepalive.

    def _keepalive_loop(self) -> None:
        """Ping when nothing came in for ``ping_interval``: incoming bytes
        already prove the peer alive, and a busy connection isn't disturbed."""
        interval = self.ping_interval
        assert interval is not None
        try:
            while True:
                idle = time.monotonic() - self._last_recv
                if idle < interval:
                    if self._closed.wait(interval - idle):
                        return
                    continue
                if self.protocol.state is not proto.State.OPEN:
                    return
                waiter = self._ping(None, wake_on_close=True)
                self._flush(wait=False)
                if self.ping_timeout is None:
                    if self._closed.wait(interval):
                        return
                    continue
                if not waiter.wait(self.ping_timeout):
                    self.logger.info("keepalive ping timed out; closing %s", self.id)
                    self.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    return
                if self._closed.is_set():
                    return
        except ConnectionClosed:
            return
        except Exception:
            self.logger.error("keepalive thread of %s failed", self.id, exc_info=True)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.protocol.state.name}>"


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value)."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def set_nodelay(sock: socket.socket) -> None:
    """Send small frames at once rather than wait to fill a packet (Nagle)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _address(get: Any) -> Any:
    try:
        return get()
    except OSError:
        return None
