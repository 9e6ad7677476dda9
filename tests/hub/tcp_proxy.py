"""A TCP proxy for tests, whose connections can go silent without closing,
be cut, or be held before they reach the target."""

from __future__ import annotations

import asyncio
import contextlib


class _Flow:
    def __init__(self, *writers: asyncio.StreamWriter) -> None:
        self.writers = writers
        self.silent = False


class Proxy:
    """Forwards connections to ``127.0.0.1:target``. ``silence()`` makes every
    connection open now drop what either side sends, and never close, as a
    firewall or NAT that lost its state does; later connections pass."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flows: list[_Flow] = []
        self._open = asyncio.Event()
        self._open.set()
        self._closing = False

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._closing = True
        self._open.set()
        self._server.close()
        for flow in self._flows:
            for writer in flow.writers:
                writer.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def silence(self) -> None:
        for flow in self._flows:
            flow.silent = True

    def cut(self) -> None:
        """Close every connection open now, both ways, as a network drop does."""
        for flow in self._flows:
            for writer in flow.writers:
                writer.transport.abort()
        self._flows.clear()

    def hold(self) -> None:
        """Accept new connections but pass nothing until ``release()``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._open.wait()
        if self._closing:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        flow = _Flow(writer, up_writer)
        self._flows.append(flow)
        await asyncio.gather(_copy(reader, up_writer, flow), _copy(up_reader, writer, flow))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flow: _Flow) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            if not flow.silent:
                writer.write(data)
                await writer.drain()
        if not flow.silent:
            writer.close()
