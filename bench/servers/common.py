"""What every benchmark server shares: its arguments, settings, event loop and ready line.

A server script is started as ``python -m bench.servers.NAME --mode echo|fanout
[--compression] [--loop uvloop|asyncio]`` (tidewire also has ``--mode pubsub``).
It listens on 127.0.0.1, on a free port, and prints one line
``LISTENING <port> <json>`` once it accepts connections (the JSON says how it
was set up); SIGTERM stops it.

Modes:

- ``echo``: every message comes back as it came, text as text, binary as binary.
- ``fanout``: every connection joins one group. A text message ``"M"`` from any
  client is a trigger: the server sends M binary messages of ``FANOUT_SIZE``
  bytes to every client of the group, yielding to the event loop after each
  one, then the text ``"end"`` to each of them with an awaited send.
- ``pubsub`` (tidewire only): the reference of the hub scenario. Just enough of
  the hub's protocol for the load generator's hub mode, on one channel and
  without the hub: every request gets a reply, ``subscribe`` joins the group,
  and ``publish`` sends one push to the group with ``broadcast()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Callable, Coroutine
from typing import Any

# The same settings for every library; the harness states them in results.md.
HOST = "127.0.0.1"
MAX_SIZE = 16 * 2**20  # max message size: above the 1 MiB messages of the benchmark
BACKLOG = 1024  # listen backlog: the idle and fan-out scenarios open many at once
FANOUT_SIZE = 1024
END = "end"
# permessage-deflate, matched: aiohttp compresses at zlib level 1 and can't be told
# otherwise, so the others are set to level 1 too; 15-bit windows, memLevel 8, and
# context takeover both ways, which are zlib's and these libraries' defaults.
ZLIB_LEVEL = 1
ZLIB_MEM_LEVEL = 8

Main = Callable[[argparse.Namespace], Coroutine[Any, Any, None]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("echo", "fanout", "pubsub"), default="echo")
    parser.add_argument("--compression", action="store_true", help="permessage-deflate on")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--callback", action="store_true", help="tidewire: take messages in with on_message()"
    )
    parser.add_argument(
        "--server-no-context-takeover",
        action="store_true",
        help="tidewire: compress each message on its own, so broadcast() compresses it once",
    )
    parser.add_argument(
        "--asgi",
        choices=("uvicorn-tidewire", "uvicorn-sansio", "uvicorn-wsproto", "granian", "hypercorn"),
        help="asgi_server: the ASGI server that runs the app",
    )
    return parser.parse_args(argv)


def run(main: Main) -> None:
    """Parse the arguments and run ``main(args)`` on the chosen event loop."""
    args = parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))


def announce(port: int, **info: Any) -> None:
    """Tell the harness that the server accepts connections, and how it is set up."""
    print(f"LISTENING {port} {json.dumps(info)}", flush=True)


async def until_terminated() -> None:
    """Wait for SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def fanout_payload() -> bytes:
    return bytes(i % 251 for i in range(FANOUT_SIZE))


def trigger_count(text: str) -> int:
    """The number of messages a fan-out trigger asks for (bounded)."""
    count = int(text)
    if not 0 < count <= 1_000_000:
        raise ValueError(f"bad fan-out trigger: {text!r}")
    return count
