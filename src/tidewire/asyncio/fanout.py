"""Sending one message to many connections at once.

``broadcast()`` queues frames in each connection's protocol object and writes
them at the end of the event loop's turn: every message broadcast to a
connection in one turn goes out in one system call, which is most of the cost
of fan-out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Literal

from .. import protocol as proto
from ..exceptions import ConnectionClosed, ProtocolError
from ..protocol.frames import CloseCode, Opcode
from .connection import Connection

__all__ = ["broadcast"]

_OPEN = proto.State.OPEN  # read once per connection: cheaper than the enum on 3.11

logger = logging.getLogger("tidewire")


def broadcast(
    connections: Iterable[Connection],
    message: str | bytes,
    *,
    slow: Literal["skip", "close"] = "skip",
    slow_code: int = CloseCode.POLICY_VIOLATION,
) -> int:
    """Send ``message`` to every open connection in ``connections``, without
    waiting.

    The message is encoded once and, where the connection allows it, framed
    and compressed once for all. Frames reach the sockets at the end of this
    turn of the event loop, together with everything else broadcast in it:
    many messages to one connection cost one system call. A ``send()`` to a
    connection writes what was broadcast to it first, so order is kept.

    A connection whose write buffer is over its limit is a slow consumer and
    either misses this message (``slow="skip"``) or is closed with
    ``slow_code`` and the reason "slow consumer" (``slow="close"``), so that
    it never slows the others down.
    Connections that are closing or sending a fragmented message are skipped.

    Return the number of connections the message was written to.
    """
    if isinstance(message, str):
        opcode, data = Opcode.TEXT, message.encode()
    elif isinstance(message, (bytes, bytearray, memoryview)):
        opcode, data = Opcode.BINARY, bytes(message)
    else:
        raise TypeError(f"can't broadcast {type(message).__name__}; use str or bytes")
    if slow not in ("skip", "close"):
        raise ValueError("slow must be 'skip' or 'close'")
    cache: dict[object, bytes] = {}
    sent = 0
    loop = batch = None  # the batch of the connections' loop, looked up once
    for conn in connections:
        if conn.protocol.state is not _OPEN:
            continue
        if conn._write_paused:
            if slow == "close":
                logger.info("closing slow consumer %s", conn.id)
                conn.fail(slow_code, "slow consumer")
            continue
        try:
            conn.protocol.send_shared(opcode, data, cache)
        except (ConnectionClosed, ProtocolError):
            continue
        if not conn._flush_due:
            conn._flush_due = True
            if conn.loop is not loop:
                loop = conn.loop
                batch = _batch(loop)
            batch.append(conn)  # type: ignore[union-attr]
        sent += 1
    return sent


# Per event loop, the connections with broadcast frames not yet written.
_batches: dict[asyncio.AbstractEventLoop, list[Connection]] = {}


def _batch(loop: asyncio.AbstractEventLoop) -> list[Connection]:
    """The connections of ``loop`` to write at the end of this turn."""
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = []
        loop.call_soon(_flush_batch, loop)
    return batch


def _flush_batch(loop: asyncio.AbstractEventLoop) -> None:
    for conn in _batches.pop(loop, ()):
        conn._flush_due = False
        out = conn.protocol.data_to_send()  # conn._flush(), one call less per client
        if out:
            conn._write(out)
