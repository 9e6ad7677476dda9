"""Instructions per echoed message, counted by valgrind: ``make instructions``.

Socket rates on a shared machine swing by 2x between identical runs; a count of
instructions doesn't, so it can tell a 5 % change in the code from noise.

tidewire's asyncio server runs in-process on fake transports: no sockets and no
system calls, so what is counted is the library and the event loop. Each of
``--conns`` connections is fed one masked 64 B text frame at a time and its
answer is checked before the next frame goes in. valgrind counts the whole
process twice, with two numbers of messages; the difference over the extra
messages is the cost of one, start-up excluded. ``connect`` counts whole
connections instead, 16 at a time: handshake, one echo, the closing handshake
started by the peer, and the end of the handler.

    python -m bench.instructions [--conns 64] [--loop uvloop] [--mode MODE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import tidewire
from tidewire.protocol.frames import Opcode, build_frame

MODES = {
    "async-for": "async for message in ws: await ws.send(message)",
    "on-message": "ws.on_message(ws.send_nowait)",
    "connect": "per connection: handshake, one echo with async for, close",
}
PAYLOAD = b"x" * 64
HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class FakeTransport:
    """Takes what a connection writes and tells the driver it was answered."""

    def __init__(self, conn: Any, answered: list[Any]) -> None:
        self.conn = conn
        self.answered = answered
        self.last = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.last = data
        self.answered.append(self.conn)

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True  # and the socket is gone at once, as after abort()
            asyncio.get_running_loop().call_soon(self.conn.connection_lost, None)

    abort = close

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def open_fake(server: Any, answered: list[Any]) -> FakeTransport:
    """A server connection on a fake transport, its upgrade request received."""
    conn = server._make_connection()
    transport = FakeTransport(conn, answered)
    conn.connection_made(transport)
    conn.data_received(HANDSHAKE)
    return transport


async def echo(ws: tidewire.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def echo_callback(ws: tidewire.ServerConnection) -> None:
    ws.on_message(ws.send_nowait)
    await ws.wait_closed()


async def drive(mode: str, conns: int, messages: int) -> None:
    handler = echo_callback if mode == "on-message" else echo
    answered: list[Any] = []
    # Not closed at the end: the fake peers would never answer the closing
    # handshake. asyncio.run() cancels the handlers instead.
    server = await tidewire.serve(handler, "127.0.0.1", 0, ping_interval=None,
                                  compression=None)
    transports = [open_fake(server, answered) for _ in range(conns)]
    await asyncio.sleep(0.01)  # the handshakes are answered, handlers started
    if any(not t.last.startswith(b"HTTP/1.1 101") for t in transports):
        raise SystemExit("the fake connections didn't open")
    answered.clear()
    frame = build_frame(Opcode.TEXT, PAYLOAD, mask=b"\x01\x02\x03\x04")
    for transport in transports:
        transport.conn.data_received(frame)
    done = 0
    while done < messages:
        await asyncio.sleep(0)
        ready = answered[:]
        answered.clear()
        done += len(ready)
        for conn in ready:
            conn.data_received(frame)
    expected = build_frame(Opcode.TEXT, PAYLOAD)
    if any(t.last != expected for t in transports):
        raise SystemExit("a connection answered something else than the echo")


async def drive_connect(conns: int, total: int) -> None:
    """Open ``conns`` connections at a time; each does the handshake, one echo
    and the closing handshake started by the peer, until ``total`` closed."""
    answered: list[Any] = []
    server = await tidewire.serve(echo, "127.0.0.1", 0, ping_interval=None, compression=None)
    frame = build_frame(Opcode.TEXT, PAYLOAD, mask=b"\x01\x02\x03\x04")
    close = build_frame(Opcode.CLOSE, b"\x03\xe8", mask=b"\x01\x02\x03\x04")
    expected = build_frame(Opcode.TEXT, PAYLOAD)
    done = 0
    while done < total:
        batch = [open_fake(server, answered) for _ in range(conns)]
        for step, data in ((b"HTTP/1.1 101", frame), (expected, close)):
            while len(answered) < conns:
                await asyncio.sleep(0)
            answered.clear()
            if any(not t.last.startswith(step) for t in batch):
                raise SystemExit(f"a connection didn't answer {step!r}")
            for t in batch:
                t.conn.data_received(data)
        await asyncio.gather(*(t.conn.handler_task for t in batch))
        if any(not t.closing or t.conn.close_code != 1000 for t in batch):
            raise SystemExit("a connection didn't close cleanly")
        for t in batch:
            # A real transport lets go of its protocol once closed: without
            # this cycle, refcounting frees each connection, as on sockets.
            t.conn = None
        answered.clear()
        done += conns


def count(mode: str, conns: int, loop: str, messages: int) -> int:
    """Instructions of a whole run of ``messages`` messages, start-up included."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, "-m", "bench.instructions", "--run", mode,
            "--conns", str(conns), "--loop", loop, "--messages", str(messages)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", action="append", choices=list(MODES))
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--run", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.run == "connect":
        asyncio.run(drive_connect(16, args.messages // 10))
        return 0
    if args.run:
        asyncio.run(drive(args.run, args.conns, args.messages))
        return 0
    if shutil.which("valgrind") is None:
        print("error: valgrind is missing; `apt-get install valgrind` (make instructions "
              "does it)", file=sys.stderr)
        return 1
    speedups = "off" if os.environ.get("TIDEWIRE_NO_SPEEDUPS") else "on"
    print(f"tidewire {tidewire.__version__}, {args.loop}, {args.conns} connections "
          f"(16 at a time for connect), speedups {speedups}; instructions per echoed "
          "64 B text message, or per connection:")
    small, large = args.messages, 3 * args.messages
    for mode in args.mode or list(MODES):
        # connect opens a tenth as many connections as the others echo messages.
        units = (large - small) // (10 if mode == "connect" else 1)
        each = (count(mode, args.conns, args.loop, large)
                - count(mode, args.conns, args.loop, small)) / units
        print(f"  {mode:<11} {each:>9,.0f}   ({MODES[mode]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
