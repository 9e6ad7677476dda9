"""The knobs of a benchmark run, with the full and the quick defaults."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Settings:
    reps: int = 3  # repetitions of each (scenario, library) pair, alternating libraries
    warmup: float = 1.0  # seconds of load before the measured window
    duration: float = 3.0  # seconds of the measured window
    connect_slots: int = 16  # connections opened at a time in the connection-rate scenario
    idle_conns: int = 5000
    fanout_conns: int = 1000
    fanout_count: int = 100  # messages per measured fan-out round (a first round warms up)
    fanout_rounds: int = 2
    hub_subscribers: int = 1000  # WebSocket subscribers of one hub channel
    hub_size: int = 100  # bytes of each publication's data, as JSON
    hub_window: int = 16  # publications in flight (not answered or not delivered), throughput
    hub_rate: float = 25.0  # publications/s in the latency phase, well below saturation
    http_window: int = 16  # hub HTTP API: publications in flight (pipelined or connections)
    http_busy: int = 64  # connections at a time that keep the hub busy, one publication each
    loop: str = "uvloop"  # event loop of every Python server and client
    server_cpu: int = 0  # core the server under test is pinned to
    client_cpu: int = 1  # core the load generator or client is pinned to
    quick: bool = False

    @classmethod
    def quick_run(cls) -> Settings:
        """A smoke run: one repetition, short windows."""
        return cls(reps=1, warmup=0.3, duration=1.0, fanout_count=20, fanout_rounds=1, quick=True)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given fields changed; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
