"""The queue of incoming messages, and the read-side flow control around it.

The reader thread ``put``s messages, then calls ``throttle()``: once ``high``
messages wait, it blocks there, without reading the socket, until ``recv()``
brings them down to ``low``. So a slow application holds at most about
``high`` messages in memory, and TCP pushes back on the sender for the rest.
"""

from __future__ import annotations

import threading
from collections import deque

from ..exceptions import ConcurrencyError

__all__ = ["MessageQueue"]


class MessageQueue:
    def __init__(self, high: int | None, low: int | None = None) -> None:
        if high is not None and low is None:
            low = high // 4
        self.high = high
        self.low = low
        self._queue: deque[str | bytes] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._getting = False  # a thread is inside get()
        self._asked = False  # get() found nothing left to read since the last put()
        self._paused = False  # above the high watermark: the reader must wait
        self._released = False  # the reader no longer waits for the application
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, message: str | bytes) -> None:
        with self._cond:
            self._queue.append(message)
            self._asked = False
            if self.high is not None and len(self._queue) >= self.high:
                self._paused = True
            self._cond.notify_all()

    def throttle(self) -> None:
        """Block the reader thread while the queue is above its high watermark."""
        with self._cond:
            self._cond.wait_for(lambda: not self._paused or self._released or self.closed)

    def wait_drained(self, timeout: float | None) -> None:
        """Block the reader thread until the application asked for a message
        after reading all the others (so it answered them), or ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self._asked or self._released or self.closed, timeout)

    def release(self) -> None:
        """Stop making the reader wait for the application: it is closing."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def close(self) -> None:
        """No more messages will come; wake a waiting ``get``."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> str | bytes:
        """The next message; raise ``EOFError`` once closed and drained, and
        ``TimeoutError`` after ``timeout`` seconds."""
        with self._cond:
            if self._getting:
                raise ConcurrencyError("another thread is already waiting for the next message")
            queue = self._queue
            if not queue:
                self._asked = True
                self._cond.notify_all()
                self._getting = True
                try:
                    if not self._cond.wait_for(lambda: queue or self.closed, timeout):
                        raise TimeoutError(f"no message within {timeout}s")
                finally:
                    self._getting = False
                if not queue:
                    raise EOFError
            message = queue.popleft()
            if self._paused and self.low is not None and len(queue) <= self.low:
                self._paused = False
                self._cond.notify_all()
            return message
