"""A client and a server protocol object wired together in memory."""

from __future__ import annotations

from tidewire.protocol import (
    ClientProtocol,
    Connection,
    DeflateOptions,
    Event,
    ServerProtocol,
    parse_uri,
)
from tidewire.protocol.deflate import DEFAULT_OPTIONS


def transfer(src: Connection, dst: Connection) -> None:
    """Move every pending byte from ``src`` to ``dst``."""
    for data in src.data_to_send():
        dst.receive_data(data)


def wire(src: Connection) -> bytes:
    return b"".join(src.data_to_send())


class Pair:
    """An open client-server pair after a real handshake."""

    def __init__(
        self,
        *,
        client_deflate: DeflateOptions | None = DEFAULT_OPTIONS,
        server_deflate: DeflateOptions | None = DEFAULT_OPTIONS,
        max_size: int | None = 1 << 20,
    ) -> None:
        self.client = ClientProtocol(
            parse_uri("ws://example.com/chat"), compression=client_deflate, max_size=max_size
        )
        self.server = ServerProtocol(compression=server_deflate, max_size=max_size)
        self.client.send_request(self.client.connect())
        transfer(self.client, self.server)
        (request,) = self.server.events_received()
        self.server.send_response(self.server.accept(request))
        transfer(self.server, self.client)
        self.client.events_received()  # the Response

    def c2s(self) -> list[Event]:
        transfer(self.client, self.server)
        return self.server.events_received()

    def s2c(self) -> list[Event]:
        transfer(self.server, self.client)
        return self.client.events_received()
