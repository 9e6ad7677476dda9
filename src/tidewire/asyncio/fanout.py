"""Sending one message to many connections at once."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from .. import protocol as proto
from ..exceptions import ConnectionClosed, ProtocolError
from ..protocol.frames import CloseCode, Opcode
from .connection import Connection

__all__ = ["broadcast"]

logger = logging.getLogger("tidewire")


def broadcast(
    connections: Iterable[Connection],
    message: str | bytes,
    *,
    slow: Literal["skip", "close"] = "skip",
    slow_code: int = CloseCode.POLICY_VIOLATION,
) -> int:
    """Send ``message`` to every open connection in ``connections``, now.

    The message is encoded once and, where the connection allows it, framed
    and compressed once for all. It doesn't wait: a connection whose write
    buffer is over its limit is a slow consumer and either misses this message
    (``slow="skip"``) or is closed with ``slow_code`` and the reason "slow
    consumer" (``slow="close"``), so that it never slows the others down.
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
    for conn in connections:
        if conn.protocol.state is not proto.State.OPEN:
            continue
        if conn.write_paused:
            if slow == "close":
                logger.info("closing slow consumer %s", conn.id)
                conn.fail(slow_code, "slow consumer")
            continue
        try:
            conn.protocol.send_shared(opcode, data, cache)
        except (ConnectionClosed, ProtocolError):
            continue
        conn._flush()
        sent += 1
    return sent
