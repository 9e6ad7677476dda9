"""The ASGI apps of the ASGI rows, written once and run by every ASGI server.

Plain ASGI 3 callables, no framework, so that the rows differ by their server
alone. ``echo`` accepts and sends every message back as it came (text as text,
bytes as bytes). ``fanout`` keeps the ``send`` of every accepted connection; a
text message ``"M"`` is a trigger (see ``common``): M binary messages of
``FANOUT_SIZE`` bytes to every connection, each message a ``websocket.send``
awaited per connection (as a FastAPI room broadcasts), a yield to the event
loop after each message, then the text ``"end"`` to each.

Both answer the lifespan protocol, for the servers that run it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bench.servers import common

__all__ = ["echo", "fanout"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ACCEPT = {"type": "websocket.accept"}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return await _lifespan(receive, send)
    await receive()  # websocket.connect
    await send(dict(_ACCEPT))
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


_clients: set[Send] = set()
_payload = common.fanout_payload()


async def _fan_out(count: int) -> None:
    for _ in range(count):
        message = {"type": "websocket.send", "bytes": _payload}
        for send in list(_clients):
            try:
                await send(message)
            except OSError:  # gone since: the spec's error for a send after the close
                _clients.discard(send)
        await asyncio.sleep(0)
    for send in list(_clients):
        await send({"type": "websocket.send", "text": common.END})


async def fanout(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return await _lifespan(receive, send)
    await receive()  # websocket.connect
    await send(dict(_ACCEPT))
    _clients.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            text = message.get("text")
            if text is not None:
                await _fan_out(common.trigger_count(text))
    finally:
        _clients.discard(send)
