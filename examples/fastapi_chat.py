"""A chat room in FastAPI, with tidewire as uvicorn's WebSocket engine.

Every message a client sends is broadcast, as text, to every connected client
(the sender included), and the room says when someone joins or leaves. The
page at ``/`` is the browser side: plain HTML and the browser's WebSocket API.

Run it from the repository's root with one extra flag to uvicorn::

    pip install 'tidewire[asgi]' fastapi
    uvicorn examples.fastapi_chat:app --ws tidewire.asgi:UvicornProtocol

or from Python::

    import uvicorn
    uvicorn.run("examples.fastapi_chat:app", ws="tidewire.asgi:UvicornProtocol")

then open http://127.0.0.1:8000/ in two tabs. Nothing in the app names
tidewire: without the flag it runs on uvicorn's default engine.

The WebSocket endpoint is ``/ws?name=Ada``; a name must have 1 to 20
characters, else FastAPI refuses the connection before accepting it (the
client sees a 403). What the room sends:

- ``Ada: hello`` for a message;
- ``* Ada joined`` and ``* Ada left``.

The room takes text: a binary message closes that client's connection with
1003 (unsupported data).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

__all__ = ["app", "Room"]

app = FastAPI(title="tidewire chat")


class Room:
    """The connected clients, each with its name."""

    def __init__(self) -> None:
        self.members: dict[WebSocket, str] = {}

    async def join(self, websocket: WebSocket, name: str) -> None:
        self.members[websocket] = name
        await self.broadcast(f"* {name} joined")

    async def leave(self, websocket: WebSocket) -> None:
        name = self.members.pop(websocket, None)
        if name is not None:
            await self.broadcast(f"* {name} left")

    async def broadcast(self, text: str) -> None:
        """Send ``text`` to everyone at once. With tidewire a send waits only
        when that client's write buffer is full, so a slow reader delays the
        sender of this message, not the other members."""
        members = list(self.members)
        await asyncio.gather(*(self._deliver(member, text) for member in members))

    async def _deliver(self, websocket: WebSocket, text: str) -> None:
        try:
            await websocket.send_text(text)
        except WebSocketDisconnect:
            # That client left while we were sending: its own handler gets the
            # disconnect from receive() and leaves the room. Nothing to do here.
            pass


room = Room()


@app.websocket("/ws")
async def chat(
    websocket: WebSocket, name: Annotated[str, Query(min_length=1, max_length=20)]
) -> None:
    await websocket.accept()
    await room.join(websocket, name)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break  # the client left: a normal end
            text = message.get("text")
            if text is None:
                await websocket.close(1003, "this room takes text messages only")
                break
            await room.broadcast(f"{name}: {text}")
    except WebSocketDisconnect:
        pass  # the client left while we were closing
    finally:
        await room.leave(websocket)


@app.get("/")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tidewire chat (FastAPI)</title>
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
  #log { list-style: none; padding: 0; min-height: 10em; border: 1px solid #ccc; }
  #log li { padding: 0.2em 0.5em; }
  #log li.notice { color: #777; font-style: italic; }
  form { display: flex; gap: 0.5em; }
  #text { flex: 1; }
</style>
</head>
<body>
<h1>Chat</h1>
<p>Status: <span id="state" data-testid="state" data-state="connecting">connecting</span></p>
<ul id="log" data-testid="log"></ul>
<form id="form">
  <input id="text" data-testid="text" autocomplete="off" placeholder="Say something"
         disabled>
  <button data-testid="send" disabled>Send</button>
</form>
<script>
  const params = new URLSearchParams(location.search);
  const name = params.get("name") || "guest-" + Math.floor(Math.random() * 1000);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/ws?name=${encodeURIComponent(name)}`;
  const ws = new WebSocket(url);
  const log = document.getElementById("log");
  const text = document.getElementById("text");
  const button = document.querySelector("button");
  const state = document.getElementById("state");

  function setState(value) {
    state.textContent = value;
    state.dataset.state = value;
  }

  ws.onopen = () => {
    setState("connected");
    text.disabled = button.disabled = false;
    text.focus();
  };
  ws.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    item.dataset.testid = "message";
    if (event.data.startsWith("* ")) item.className = "notice";
    log.append(item);
  };
  ws.onclose = () => {
    setState("closed");
    text.disabled = button.disabled = true;
  };
  document.getElementById("form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (text.value) ws.send(text.value);
    text.value = "";
  });
</script>
</body>
</html>
"""
