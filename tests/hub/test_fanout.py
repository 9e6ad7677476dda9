"""A publication to N subscribers is serialized once, framed once, compressed once."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from tidewire.hub import Hub
from tidewire.hub import session as session_module
from tidewire.protocol.connection import Connection
from tidewire.protocol.deflate import Deflate

from .helpers import Client

SUBSCRIBERS = 20


def counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    calls = [0]
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
async def test_one_publication_is_encoded_once_for_every_subscriber(
    make_hub: Any, monkeypatch: pytest.MonkeyPatch, compression: bool
) -> None:
    hub: Hub = await make_hub(compression=compression)
    clients = [await Client.open(hub) for _ in range(SUBSCRIBERS)]
    for c in clients:
        await c.request("subscribe", channel="news:fan")
        negotiated = c.ws.response is not None and "Sec-WebSocket-Extensions" in (
            c.ws.response.headers
        )
        assert negotiated is compression

    serialized = counting(monkeypatch, session_module, "publication_push")
    # Frames are built in the module of the Connection in use: the compiled
    # twin's, unless speedups are off.
    framed = counting(monkeypatch, sys.modules[Connection.__module__], "build_frame")
    compressed = counting(monkeypatch, Deflate, "compress")
    await hub.publish("news:fan", '{"text": "to everyone"}')
    for c in clients:  # a shared broker delivers after publish() returns
        push = await c.push("pub")
        assert push["data"] == {"text": "to everyone"}
    assert (serialized[0], framed[0]) == (1, 1)
    assert compressed[0] == (1 if compression else 0)
    for c in clients:
        await c.close()
