"""The queue of incoming messages, and the read-side flow control around it.

Above ``high`` queued messages the queue asks the transport to stop reading;
once ``recv()`` brings it down to ``low`` it asks it to read again. So a slow
reader holds at most about ``high`` messages in memory, and TCP pushes back on
the sender for the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..exceptions import ConcurrencyError
from ..protocol.mask import SPEEDUPS

__all__ = ["MessageQueue"]


class MessageQueue:
    __slots__ = (
        "high", "low", "closed", "drained", "_pause", "_resume", "_queue", "_head",
        "_waiter", "_handed", "_paused", "_loop",
    )

    def __init__(
        self,
        high: int | None,
        low: int | None,
        pause: Callable[[], None],
        resume: Callable[[], None],
        drained: Callable[[], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if high is not None and low is None:
            low = high // 4
        self.high = high
        self.low = low
        self._pause = pause
        self._resume = resume
        # Called when get() finds the queue empty; the connection sets it only
        # while a failure waits for the application to read what came before.
        self.drained = drained
        # A list read from _head on: far smaller than a deque on an idle
        # connection, and reset whenever it is drained.
        self._queue: list[str | bytes] = []
        self._head = 0
        # A get() waiting, and whether put() handed it a message it hasn't
        # returned yet; close() wakes it with None.
        self._waiter: asyncio.Future[str | bytes | None] | None = None
        self._handed = False
        self._paused = False
        self.closed = False
        # Looked up once: on Python 3.11 get_running_loop() makes a getpid()
        # system call, which a get() that waits would pay per message.
        self._loop = asyncio.get_running_loop() if loop is None else loop

    def __len__(self) -> int:
        return len(self._queue) - self._head + self._handed

    def put(self, message: str | bytes) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            # Handed straight to the waiting get(): it never enters the list.
            waiter.set_result(message)
            self._handed = True
            return
        self._queue.append(message)
        if (
            self.high is not None
            and not self._paused
            and len(self._queue) - self._head >= self.high
        ):
            self._paused = True
            self._pause()

    @property
    def paused(self) -> bool:
        """True while the queue holds reading off."""
        return self._paused

    @property
    def waiting(self) -> bool:
        """True while a coroutine waits in ``get()``."""
        return self._waiter is not None

    def take_all(self) -> list[str | bytes]:
        """Remove and return every queued message, and let reading resume."""
        messages = self._queue[self._head :]
        self._queue = []
        self._head = 0
        if self._paused:
            self._paused = False
            self._resume()
        return messages

    def close(self) -> None:
        """No more messages will come; wake a waiting ``get``."""
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def detach(self) -> None:
        """The transport is gone: drop the flow-control callbacks, which hold
        the connection, so that it is freed without waiting for the garbage
        collector."""
        self._pause = self._resume = _nothing

    async def get(self, end: Callable[[], BaseException]) -> str | bytes:
        """The next message; raise ``end()`` once closed and drained."""
        queue = self._queue
        if self._head == len(queue):
            if self._waiter is not None:
                raise ConcurrencyError(
                    "another coroutine is already waiting for the next message"
                )
            if self.drained is not None and not self.closed:
                self.drained()  # may close the queue
            while self._head == len(queue):
                if self.closed:
                    raise end()
                waiter: asyncio.Future[str | bytes | None]
                waiter = self._waiter = self._loop.create_future()
                try:
                    handed = await waiter
                except BaseException:
                    # Cancelled, perhaps after put() handed it a message:
                    # that one goes back in front, for the next get().
                    lost = waiter.result() if self._handed else None
                    if lost is not None:
                        self._requeue(lost)
                    raise
                finally:
                    self._waiter = None
                    self._handed = False
                if handed is not None:
                    return handed  # from put(), past the list
        head = self._head
        message = queue[head]
        head += 1
        if head == len(queue):
            queue.clear()
            head = 0
        elif head > 64 and 2 * head > len(queue):
            del queue[:head]
            head = 0
        self._head = head
        if self._paused and self.low is not None and len(queue) - head <= self.low:
            self._paused = False
            self._resume()
        return message

    def _requeue(self, message: str | bytes) -> None:
        if self._head:
            self._head -= 1
            self._queue[self._head] = message
        else:
            self._queue.insert(0, message)


def _nothing() -> None:
    pass


# The build compiles this very file with Cython as ``_messages_c`` (setup.py);
# this module then hands out the compiled class and keeps the twin as
# ``MessageQueuePy``.
MessageQueuePy = MessageQueue
if SPEEDUPS and not TYPE_CHECKING and __name__ == f"{__package__}.messages":
    from ._messages_c import MessageQueue  # type: ignore[assignment]  # noqa: F811
