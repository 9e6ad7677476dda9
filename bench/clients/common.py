"""What every benchmark client shares: arguments, pacing, and its JSON lines.

A client script is started as ``python -m bench.clients.NAME_client --uri URI
--size N --warmup S --duration S [--loop uvloop|asyncio]``. It opens one
connection without compression or keepalive pings, keeps one text message of
``--size`` bytes in flight, and prints ``{"event": "measuring"}``, then
``{"event": "measured"}`` around the measured window, then the result:
``{"messages": n, "seconds": s, "cpu": share of one core}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

MAX_SIZE = 16 * 2**20
MAX_ROUNDTRIPS = 100_000_000  # a bound on every loop, far above any real rate

Main = Callable[[argparse.Namespace], Coroutine[Any, Any, None]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    return parser.parse_args()


def run(main: Main) -> None:
    args = parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))


def text_message(size: int) -> str:
    return ("tidewire " * (size // 9 + 1))[:size]


def emit(**data: Any) -> None:
    print(json.dumps(data), flush=True)


class Pacer:
    """Counts replies over a warm-up, then a measured window; says when to stop.

    Clients that await each reply call ``await pacer.loop(roundtrip)``; callback
    clients call ``pacer.on_reply()`` after each reply and send the next message
    while it returns True, then await ``pacer.done``.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.warmup = args.warmup
        self.duration = args.duration
        self.measuring = False
        self.count = 0
        self.phase_end = time.perf_counter() + self.warmup
        self.start = 0.0
        self.cpu = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_reply(self) -> bool:
        now = time.perf_counter()
        if self.measuring:
            self.count += 1
        if now < self.phase_end and self.count < MAX_ROUNDTRIPS:
            return True
        if not self.measuring:
            self.measuring = True
            emit(event="measuring")
            self.start, self.cpu = now, time.process_time()
            self.phase_end = now + self.duration
            return True
        if not self.done.done():
            self.report(now)
            self.done.set_result(None)
        return False

    def report(self, now: float) -> None:
        seconds = now - self.start
        emit(event="measured")
        emit(
            messages=self.count,
            seconds=seconds,
            cpu=(time.process_time() - self.cpu) / seconds if seconds > 0 else 0.0,
        )

    async def loop(self, roundtrip: Callable[[], Awaitable[object]]) -> None:
        for _ in range(2 * MAX_ROUNDTRIPS):
            await roundtrip()
            if not self.on_reply():
                return
