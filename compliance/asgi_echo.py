"""An ASGI echo app, for the Autobahn suite through uvicorn.

    uvicorn asgi_echo:app --app-dir compliance --ws tidewire.asgi:UvicornProtocol

Every text or bytes message goes back as it came, until the client leaves.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    assert scope["type"] == "websocket", scope["type"]
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        message["type"] = "websocket.send"
        await send(message)
