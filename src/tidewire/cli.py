"""The ``tidewire`` command: ``echo`` and ``connect``.

It only parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from . import asyncio as tw
from .exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

__all__ = ["main"]

ECHO_MAX_SIZE = 16 * 1024 * 1024
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (``pip install tidewire[speed]``)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _echo_handler(ws: tw.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def run_echo(host: str, port: int) -> None:
    async with tw.serve(
        _echo_handler,
        host,
        port,
        max_size=ECHO_MAX_SIZE,
        compression="deflate",
    ) as server:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.close)
        print(f"tidewire echo server listening on ws://{host}:{server.port}/", flush=True)
        await server.serve_forever()


async def run_connect(uri: str) -> int:
    try:
        ws = await tw.connect(uri, max_size=ECHO_MAX_SIZE)
    except InvalidURI as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvalidStatus as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except InvalidHandshake as exc:
        print(f"error: handshake failed: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"error: can't connect to {uri}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()

    async def printer() -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    message = f"<{len(message)} bytes> {message[:64].hex()}"
                print(message, flush=True)
        except ConnectionClosed as exc:
            print(f"connection closed: {exc}", file=sys.stderr)

    reader = asyncio.create_task(printer())
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or reader.done():
                break
            try:
                await ws.send(line.rstrip("\n"))
            except ConnectionClosed:
                break
    finally:
        await ws.close()
        await reader
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tidewire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo", help="run an echo server (compression on, 16 MiB limit)")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, default=9001)
    conn = sub.add_parser("connect", help="interactive client: stdin lines out, messages in")
    conn.add_argument("uri")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.command == "echo":
            try:
                run(run_echo(args.host, args.port))
            except OSError as exc:
                print(f"error: can't listen on {args.host}:{args.port}: {exc.strerror}",
                      file=sys.stderr)
                return 1
            return 0
        return run(run_connect(args.uri))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
