"""The ASGI servers under test, each running the same apps (``asgi_apps.py``).

``--asgi NAME`` picks the server, one worker on the core the harness pins it to:

- ``uvicorn-tidewire``, ``uvicorn-sansio``, ``uvicorn-wsproto``: uvicorn in this
  process, with its httptools HTTP protocol and the WebSocket engine
  ``tidewire.asgi:UvicornProtocol``, ``websockets-sansio`` (its default when
  websockets is installed) or ``wsproto``;
- ``hypercorn``: hypercorn's asyncio worker in this process (its WebSockets are
  wsproto);
- ``granian``: granian's ASGI interface, 1 worker process, 1 runtime thread,
  single-threaded runtime mode (its HTTP and WebSockets are Rust, the app runs
  on a Python event loop). Its worker is a child process: the ready line gives
  its pid, which the harness meters and reads the memory of.

Every Python event loop is ``--loop`` (uvloop by default), keepalive pings are
off, the largest message is ``common.MAX_SIZE``, and no access log is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.servers import asgi_apps, common

ENGINES = {
    "uvicorn-tidewire": "tidewire.asgi:UvicornProtocol",
    "uvicorn-sansio": "websockets-sansio",
    "uvicorn-wsproto": "wsproto",
}
APPS = {"echo": asgi_apps.echo, "fanout": asgi_apps.fanout}


def _library(name: str) -> str:
    if name in ENGINES:
        engine = ENGINES[name].split(":")[0].split(".")[0].split("-")[0]
        return f"uvicorn {version('uvicorn')} + {engine} {version(engine)}, httptools"
    return f"{name} {version(name)}"


async def run_uvicorn(args: argparse.Namespace) -> None:
    import uvicorn

    config = uvicorn.Config(
        APPS[args.mode],
        host=common.HOST,
        port=args.port,
        http="httptools",
        ws=ENGINES[args.asgi],
        ws_max_size=common.MAX_SIZE,
        ws_ping_interval=None,
        ws_per_message_deflate=args.compression,
        lifespan="off",
        access_log=False,
        log_level="warning",
        backlog=common.BACKLOG,
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())  # stops on SIGTERM
    while not server.started:
        if serving.done():
            return await serving
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    common.announce(port, library=_library(args.asgi), fanout=FANOUT)
    await serving


async def run_hypercorn(args: argparse.Namespace) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = listening_socket(args.port)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.backlog = common.BACKLOG
    config.websocket_max_message_size = common.MAX_SIZE
    config.websocket_ping_interval = None
    config.accesslog = None
    config.loglevel = "WARNING"
    # The socket listens already: connections wait in its backlog until serve() runs.
    common.announce(sock.getsockname()[1], library=_library("hypercorn"), fanout=FANOUT)
    await serve(APPS[args.mode], config, shutdown_trigger=common.until_terminated)


def run_granian(args: argparse.Namespace) -> None:
    from granian.constants import Interfaces, Loops, RuntimeModes
    from granian.server import Server

    port = args.port or free_port()
    # granian may log on stdout: the ready line keeps it for itself.
    ready = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    server = Server(
        f"bench.servers.asgi_apps:{args.mode}",
        address=common.HOST,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        runtime_threads=1,
        runtime_mode=RuntimeModes.st,
        loop=Loops(args.loop),
        websockets=True,
        backlog=common.BACKLOG,
        log_access=False,
    )
    info = {"library": _library("granian"), "fanout": FANOUT}
    threading.Thread(target=announce_worker, args=(port, info, ready), daemon=True).start()
    server.serve()  # until SIGTERM


def announce_worker(port: int, info: dict[str, Any], out: Any) -> None:
    """Once granian's worker accepts connections, announce it with its pid."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = worker_pids()
        if children:
            try:
                socket.create_connection((common.HOST, port), timeout=1).close()
            except OSError:
                pass
            else:
                out.write(f"LISTENING {port} {json.dumps(dict(info, pid=children[0]))}\n")
                out.flush()
                return
        time.sleep(0.05)
    print("granian's worker never listened", file=sys.stderr)


def worker_pids() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def listening_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((common.HOST, port))
    sock.listen(common.BACKLOG)
    return sock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((common.HOST, 0))
        return int(sock.getsockname()[1])


FANOUT = "a loop of awaited websocket.send events (asgi_apps.py)"


async def main(args: argparse.Namespace) -> None:
    if args.mode not in APPS:
        raise SystemExit(f"--mode {args.mode} has no ASGI app")
    if args.asgi in ENGINES:
        await run_uvicorn(args)
    elif args.asgi == "hypercorn":
        await run_hypercorn(args)
    else:
        raise SystemExit(f"unknown --asgi {args.asgi!r}")


if __name__ == "__main__":
    options = common.parse_args()
    if options.asgi == "granian":
        run_granian(options)  # its own processes and event loop
    else:
        common.run(main)
