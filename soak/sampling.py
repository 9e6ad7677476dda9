"""Sampling the processes under soak: RSS and file descriptors, every second.

``Sampler`` reads ``/proc/<pid>`` of each process once a second and keeps
every sample with the run's phase at that moment. ``fd_kinds()`` tells a hub
node's descriptors apart: client sockets, the listening socket, connections to
Redis, and the rest (the event loop's epoll, pipes, files).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .nodes import fds, rss_bytes

__all__ = ["Sample", "Sampler", "fd_kinds"]

TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket


@dataclass
class Sample:
    t: float  # seconds since the sampler started
    phase: str
    rss: dict[str, int]  # process name -> bytes
    fds: dict[str, int]  # process name -> open descriptors
    progress: dict[str, int]  # what the clients had done by then


@dataclass
class Sampler:
    """``pids`` (name -> pid) sampled every ``interval`` seconds while ``run()``
    runs; ``phase`` and ``mark()`` say what the clients are doing."""

    pids: dict[str, int]
    progress: Callable[[], dict[str, int]]
    interval: float = 1.0
    phase: str = "start"
    samples: list[Sample] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # event -> t

    def __post_init__(self) -> None:
        self.origin = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.origin

    def mark(self, event: str, phase: str | None = None) -> None:
        """``event`` happened now; the next samples belong to ``phase``."""
        self.marks[event] = self.now()
        if phase is not None:
            self.phase = phase

    def take(self) -> Sample:
        sample = Sample(
            round(self.now(), 3),
            self.phase,
            {name: rss_bytes(pid) for name, pid in self.pids.items()},
            {name: len(fds(pid)) for name, pid in self.pids.items()},
            self.progress(),
        )
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        """Sample on a steady beat until cancelled. A late tick doesn't shift
        the next ones, and ticks missed while this process was starved of CPU
        are skipped, not taken in a burst: ``longest_gap`` tells of them."""
        while True:
            self.take()
            elapsed = self.now()
            await asyncio.sleep((elapsed // self.interval + 1) * self.interval - elapsed)

    @property
    def longest_gap(self) -> float:
        """The longest time between two samples, in seconds."""
        times = [s.t for s in self.samples]
        return max((b - a for a, b in zip(times[:-1], times[1:], strict=True)), default=0.0)


def _tcp_sockets(pid: int) -> dict[str, tuple[int, int, str]]:
    """Socket inode -> (local port, remote port, state) of every TCP socket in
    the process's network namespace."""
    out: dict[str, tuple[int, int, str]] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            cols = line.split()
            local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
            out[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                          state)
    return out


def fd_kinds(pid: int, port: int, redis_port: int | None) -> dict[str, Any]:
    """A hub node's descriptors by kind: ``clients`` (connections to its
    ``port``), ``listening``, ``redis`` (connections to ``redis_port``),
    ``other`` (any other socket, pipes, files, the event loop's)."""
    kinds = {"clients": 0, "listening": 0, "redis": 0, "other": 0}
    tcp = _tcp_sockets(pid)
    for target in fds(pid):
        sock = tcp.get(target[8:-1]) if target.startswith("socket:[") else None
        if sock is None:
            kinds["other"] += 1
        elif sock[2] == TCP_LISTEN:
            kinds["listening"] += 1
        elif sock[0] == port:
            kinds["clients"] += 1
        elif redis_port is not None and sock[1] == redis_port:
            kinds["redis"] += 1
        else:
            kinds["other"] += 1
    return kinds
