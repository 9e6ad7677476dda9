"""The queue of incoming messages, and the read-side flow control around it.

Above ``high`` queued messages the queue asks the transport to stop reading;
once ``recv()`` brings it down to ``low`` it asks it to read again. So a slow
reader holds at most about ``high`` messages in memory, and TCP pushes back on
the sender for the rest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ..exceptions import ConcurrencyError

__all__ = ["MessageQueue"]


class MessageQueue:
    def __init__(
        self,
        high: int | None,
        low: int | None,
        pause: Callable[[], None],
        resume: Callable[[], None],
        drained: Callable[[], None] | None = None,
    ) -> None:
        if high is not None and low is None:
            low = high // 4
        self.high = high
        self.low = low
        self._pause = pause
        self._resume = resume
        self._drained = drained
        self._queue: deque[str | bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, message: str | bytes) -> None:
        self._queue.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if (
            self.high is not None
            and not self._paused
            and len(self._queue) >= self.high
        ):
            self._paused = True
            self._pause()

    def close(self) -> None:
        """No more messages will come; wake a waiting ``get``."""
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> str | bytes:
        """The next message; raise ``EOFError`` once closed and drained."""
        queue = self._queue
        if not queue:
            if self._waiter is not None:
                raise ConcurrencyError(
                    "another coroutine is already waiting for the next message"
                )
            if self._drained is not None and not self.closed:
                self._drained()  # may close the queue
            while not queue:
                if self.closed:
                    raise EOFError
                waiter = self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
        message = queue.popleft()
        if self._paused and self.low is not None and len(queue) <= self.low:
            self._paused = False
            self._resume()
        return message
