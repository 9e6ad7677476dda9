"""``on_message()`` and ``send_nowait()``: messages handed to a callback as they
are parsed, and answers written without waiting."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import pytest

import tidewire
from tests.asyncio.rawclient import RawClient, build_frame
from tests.conftest import timeout
from tidewire import ConnectionClosedOK, ServerConnection
from tidewire.exceptions import ConcurrencyError

T = TypeVar("T")


async def callback_echo(ws: ServerConnection) -> None:
    ws.on_message(ws.send_nowait)
    await ws.wait_closed()


def url(srv: tidewire.Server) -> str:
    return f"ws://127.0.0.1:{srv.port}/"


def within(aw: Awaitable[T], seconds: float = 5) -> Awaitable[T]:
    return asyncio.wait_for(aw, timeout(seconds))


async def test_callback_echo_keeps_types_and_order() -> None:
    async with tidewire.serve(callback_echo, "127.0.0.1", 0) as srv:
        async with tidewire.connect(url(srv)) as ws:
            await ws.send("héllo")
            assert await within(ws.recv()) == "héllo"
            await ws.send(b"\x00\x01")
            assert await within(ws.recv()) == b"\x00\x01"
            for i in range(200):
                await ws.send(str(i))
            assert [await within(ws.recv()) for _ in range(200)] == [str(i) for i in range(200)]


async def test_answers_to_one_read_go_out_in_one_write() -> None:
    """Frames that arrive together are answered together: one write, in order."""
    writes: list[int] = []

    class Counting:
        """The real transport, with its writes counted."""

        def __init__(self, transport: asyncio.Transport) -> None:
            self.transport = transport

        def write(self, data: bytes) -> None:
            writes.append(1)
            self.transport.write(data)

        def writelines(self, data: list[bytes]) -> None:
            writes.append(len(data))
            self.transport.writelines(data)

        def __getattr__(self, name: str) -> object:
            return getattr(self.transport, name)

    async def handler(ws: ServerConnection) -> None:
        assert ws.transport is not None
        ws.transport = Counting(ws.transport)  # type: ignore[assignment]
        ws.on_message(ws.send_nowait)
        await ws.wait_closed()

    async with tidewire.serve(handler, "127.0.0.1", 0, compression=None) as srv:
        raw = await RawClient.connect(srv.port)
        await raw.handshake()
        await raw.write(b"".join(build_frame(0x1, f"m{i}".encode()) for i in range(10)))
        echoed = [(await raw.read_frame()).payload for _ in range(10)]
        assert echoed == [f"m{i}".encode() for i in range(10)]
        assert writes[0] == 10  # one writev of the ten frames
        await raw.close()


async def test_queued_messages_are_handed_over_first() -> None:
    seen: list[str | bytes] = []
    ready = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ready.wait()  # three messages wait in the queue by now
        ws.on_message(seen.append)
        await ws.wait_closed()

    async with tidewire.serve(handler, "127.0.0.1", 0) as srv:
        async with tidewire.connect(url(srv)) as ws:
            for m in ("a", "b", "c"):
                await ws.send(m)
            await asyncio.sleep(0.1)
            ready.set()
            await asyncio.sleep(0.05)
            await ws.send("d")
            for _ in range(100):
                if len(seen) == 4:
                    break
                await asyncio.sleep(0.01)
    assert seen == ["a", "b", "c", "d"]


async def test_recv_refused_while_a_callback_is_set_and_back_after() -> None:
    got: list[object] = []

    async def handler(ws: ServerConnection) -> None:
        ws.on_message(got.append)
        with pytest.raises(ConcurrencyError):
            await ws.recv()
        with pytest.raises(ConcurrencyError):
            async for _ in ws:
                pass
        while not got:
            await asyncio.sleep(0.01)
        ws.on_message(None)
        message = await ws.recv()
        assert isinstance(message, str)
        await ws.send(f"then recv: {message}")

    async with tidewire.serve(handler, "127.0.0.1", 0) as srv:
        async with tidewire.connect(url(srv)) as ws:
            await ws.send("first")
            await asyncio.sleep(0.05)
            await ws.send("second")
            assert await within(ws.recv()) == "then recv: second"
    assert got == ["first"]


async def test_setting_a_callback_while_recv_waits_is_refused() -> None:
    async def handler(ws: ServerConnection) -> None:
        waiting = asyncio.create_task(ws.recv())
        await asyncio.sleep(0)
        with pytest.raises(ConcurrencyError):
            ws.on_message(print)
        await ws.send(await waiting)

    async with tidewire.serve(handler, "127.0.0.1", 0) as srv:
        async with tidewire.connect(url(srv)) as ws:
            await ws.send("x")
            assert await within(ws.recv()) == "x"


async def test_failing_callback_closes_with_1011_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(message: object) -> None:
        raise RuntimeError("bug in the callback")

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        ws.on_message(broken if ws.request.path == "/broken" else ws.send_nowait)
        await ws.wait_closed()

    async with tidewire.serve(handler, "127.0.0.1", 0) as srv:
        async with tidewire.connect(url(srv)) as other:
            with caplog.at_level(logging.ERROR, "tidewire"):
                async with tidewire.connect(url(srv) + "broken") as ws:
                    await ws.send("boom")
                    await within(ws.wait_closed())
                    assert ws.close_code == 1011
            # The server goes on serving everyone else.
            await other.send("still there?")
            assert await within(other.recv()) == "still there?"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(";")[0] for r in errors] == ["message callback failed"]
    assert errors[0].exc_info is not None


async def test_messages_before_a_violation_are_answered_then_1002() -> None:
    async with tidewire.serve(callback_echo, "127.0.0.1", 0, compression=None) as srv:
        raw = await RawClient.connect(srv.port)
        await raw.handshake()
        await raw.write(build_frame(0x1, b"before") + build_frame(0x3, b"reserved opcode"))
        assert (await raw.read_frame()).payload == b"before"
        code, _ = (await raw.read_frame()).close_code_reason()
        assert code == 1002
        await raw.expect_eof()
        await raw.close()


async def test_a_close_right_after_a_message_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """A message that comes with a close frame is handed over, but its answer can't
    be sent: the close was answered first. That is no error."""
    seen: list[str | bytes] = []

    async def handler(ws: ServerConnection) -> None:
        def answer(message: str | bytes) -> None:
            seen.append(message)
            ws.send_nowait(message)

        ws.on_message(answer)
        await ws.wait_closed()

    async with tidewire.serve(handler, "127.0.0.1", 0, compression=None) as srv:
        raw = await RawClient.connect(srv.port)
        try:
            await raw.handshake()
            with caplog.at_level(logging.INFO, "tidewire"):
                close = build_frame(0x8, (1000).to_bytes(2, "big"))
                await raw.write(build_frame(0x1, b"last") + close)
                code, _ = (await raw.read_frame()).close_code_reason()
                assert code == 1000
                await raw.expect_eof()
        finally:
            await raw.close()
    assert seen == ["last"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_peer_that_does_not_read_is_slowed_not_buffered() -> None:
    """With a callback, reading stops while the write buffer is full."""
    conns: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        conns.append(ws)
        await callback_echo(ws)

    limit = 2**16
    async with tidewire.serve(
        handler, "127.0.0.1", 0, compression=None, write_limit=limit
    ) as srv:
        raw = await RawClient.connect(srv.port)
        await raw.handshake()
        frame = build_frame(0x2, bytes(2**14))
        for _ in range(2000):  # 32 MiB that the client never reads back
            raw.writer.write(frame)
            try:
                await asyncio.wait_for(raw.writer.drain(), 0.05)
            except asyncio.TimeoutError:
                break  # the server stopped reading: TCP pushes back
        await asyncio.sleep(0.1)
        server_side = conns[0]
        assert server_side.transport is not None
        assert server_side.write_paused
        assert server_side.transport.get_write_buffer_size() <= limit + 2**15
        # Everyone else is still served.
        async with tidewire.connect(url(srv)) as ws:
            await ws.send("hi")
            assert await within(ws.recv()) == "hi"
        raw.writer.transport.abort()
        await within(server_side.wait_closed())


async def test_client_callback_and_send_nowait_outside_a_callback() -> None:
    async with tidewire.serve(callback_echo, "127.0.0.1", 0) as srv:
        async with tidewire.connect(url(srv)) as ws:
            got: asyncio.Queue[str | bytes] = asyncio.Queue()
            ws.on_message(got.put_nowait)
            ws.send_nowait("from a task")  # written at once: no callback is running
            ws.send_nowait(bytearray(b"bytes-like"))

            class Name(str):
                pass

            ws.send_nowait(Name("a str subclass is text"))
            assert await within(got.get()) == "from a task"
            assert await within(got.get()) == b"bytes-like"
            assert await within(got.get()) == "a str subclass is text"
            with pytest.raises(TypeError):
                ws.send_nowait(42)  # type: ignore[arg-type]
            await ws.close()
            with pytest.raises(ConnectionClosedOK):
                ws.send_nowait("too late")
