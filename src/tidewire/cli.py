"""The ``tidewire`` command: ``serve``, ``echo`` and ``connect``.

It only parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from . import asyncio as tw
from .exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from .protocol.deflate import DeflateOptions

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


async def run_echo(host: str, port: int, level: int = 6) -> None:
    async with tw.serve(
        _echo_handler,
        host,
        port,
        max_size=ECHO_MAX_SIZE,
        compression="deflate",
        deflate_options=DeflateOptions(level=level),
    ) as server:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.close)
        print(f"tidewire echo server listening on ws://{host}:{server.port}/", flush=True)
        await server.serve_forever()


async def run_connect(uri: str, linger: float = 1.0) -> int:
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
            if reader.done():
                break
            if not line:
                # Replies to the last lines may still be on their way: closing now
                # would make the server drop them. Keep printing for a while.
                await asyncio.wait([reader], timeout=linger)
                break
            try:
                await ws.send(line.rstrip("\n"))
            except ConnectionClosed:
                break
    finally:
        await ws.close()
        await reader
    return 0


SERVE_OPTIONS = ("host", "port", "config", "broker", "api_key", "token_secret", "demo")


def _env(name: str) -> str | None:
    return os.environ.get(f"TIDEWIRE_{name.upper()}") or None


def serve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Each option from the command line, else from TIDEWIRE_<NAME>, else unset."""
    out: dict[str, Any] = {}
    for name in SERVE_OPTIONS:
        value = getattr(args, name)
        if value is None:
            value = _env(name)
            if value is not None and name == "port":
                if not value.isdigit():
                    raise ValueError(f"TIDEWIRE_PORT must be a port number, not {value!r}")
                value = int(value)
            elif value is not None and name == "demo":
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(f"TIDEWIRE_DEMO must be true or false, not {value!r}")
                value = value.lower() in ("1", "true", "yes", "on")
        out[name] = value
    return out


async def run_serve(settings: dict[str, Any]) -> int:
    from .hub import ConfigError, Hub, load_config

    path = settings.pop("config")
    try:
        config = load_config(path, **settings)
        generated = config.api_key is None
        if generated:
            from dataclasses import replace

            config = replace(config, api_key=secrets.token_urlsafe(18))
        hub = Hub(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        await hub.start()
    except OSError as exc:
        print(f"error: can't listen on {config.host}:{config.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    base = f"http://{config.host}:{hub.port}"
    note = " (generated for this run; set --api-key or TIDEWIRE_API_KEY)" if generated else ""
    print(
        f"tidewire hub listening on {base}/ (WebSocket: ws://{config.host}:{hub.port}/ws)\n"
        f"broker: {hub.broker.name}; demo publisher: {'on' if config.demo else 'off'}\n"
        f"API key: {config.api_key}{note}\n"
        f"publish: curl -H 'Authorization: Bearer {config.api_key}' "
        f"-H 'Content-Type: application/json' "
        f"-d '{{\"channel\": \"chat:lobby\", \"data\": {{\"text\": \"hello\"}}}}' "
        f"{base}/api/publish",
        flush=True,
    )
    await stop.wait()
    print("shutting down: closing clients", flush=True)
    await hub.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tidewire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    hub = sub.add_parser(
        "serve",
        help="run the real-time hub (channels, presence, history, HTTP API, demo page)",
        description="Each option can also come from an environment variable "
        "TIDEWIRE_<OPTION> (TIDEWIRE_API_KEY, ...), then from the --config file.",
    )
    hub.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    hub.add_argument("--port", type=int, help="port to listen on (default 8000)")
    hub.add_argument("--config", metavar="FILE", help="TOML config file (see docs/hub.md)")
    hub.add_argument("--broker", metavar="URL",
                     help="memory (the default), or redis://host:port/db (or, with "
                     "Sentinel, redis+sentinel://host:port,host:port/<service>/<db>) to "
                     "share channels between nodes (needs tidewire[redis])")
    hub.add_argument("--api-key", help="key of the HTTP API (generated when not set)")
    hub.add_argument("--token-secret", help="HS256 secret of connection tokens (JWT)")
    hub.add_argument("--demo", action=argparse.BooleanOptionalAction, default=None,
                     help="run the demo ticker publisher (default on)")
    echo = sub.add_parser("echo", help="run an echo server (compression on, 16 MiB limit)")
    echo.add_argument("--host", default="127.0.0.1")
    echo.add_argument("--port", type=int, default=9001)
    echo.add_argument("--level", type=int, choices=range(10), default=6, metavar="0-9",
                      help="zlib level of what it compresses: 1 fastest, 9 smallest "
                      "(default 6)")
    conn = sub.add_parser("connect", help="interactive client: stdin lines out, messages in")
    conn.add_argument("uri")
    conn.add_argument("--linger", type=float, default=1.0, metavar="SECONDS",
                      help="after stdin ends, keep printing messages this long "
                      "before closing (default 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        if args.command == "serve":
            logging.getLogger("tidewire").setLevel(logging.INFO)
            try:
                settings = serve_settings(args)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            return run(run_serve(settings))
        if args.command == "echo":
            try:
                run(run_echo(args.host, args.port, args.level))
            except OSError as exc:
                print(f"error: can't listen on {args.host}:{args.port}: {exc.strerror}",
                      file=sys.stderr)
                return 1
            return 0
        if args.linger < 0:
            parser.error("--linger must be 0 or more seconds")
        return run(run_connect(args.uri, args.linger))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
