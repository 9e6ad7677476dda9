"""One soak run on one broker: the nodes, the clients, the samples, the verdict.

On ``memory`` one hub node serves everyone. On ``redis`` a ``redis-server``
and two hub nodes share it: the subscribers are on node B, the publisher on
node A, so every publication crosses Redis. The phases, each marked in the
samples:

1. ``start``: the nodes are up, no client yet; the start count of each
   node's file descriptors is taken.
2. ``subscribing``: every subscriber connects and subscribes.
3. ``publishing``: the publisher publishes at its steady rate. The warm-up
   ends when the first ``warmup`` share of the publications is answered
   (``warm``), and the phase when every subscriber has its last publication
   (``delivered``).
4. ``leaving``: every subscriber leaves, then the nodes' descriptors are
   polled until they are back to their start, and their state (``/metrics``,
   ``/api/channels``) until it holds no connection, subscription or
   presence (``settled``), each within a deadline.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .nodes import CHANNEL_NAMESPACE, HubNode, Process, RedisNode
from .sampling import Sampler, fd_kinds
from .swarm import Crowd, Publisher, Subscriber, channel_names, open_subscribers

__all__ = ["Plan", "soak", "BROKERS", "REDIS_CONNECTIONS"]

BROKERS = ("memory", "redis")
# The most connections a node keeps to Redis: its command pool (RedisBroker's
# max_connections) and its pub/sub connection. The pool opens connections as
# concurrent commands need them and keeps them, so a node may end with more
# than it started with, never with more than this.
REDIS_CONNECTIONS = 64 + 1
SETTLE_POLL = 0.1  # seconds between looks at the descriptors while they settle
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)


@dataclass(frozen=True)
class Plan:
    """What one run does; every broker's run follows the same plan."""

    subscribers: int = 1000
    publications: int = 10_000
    rate: float = 100.0  # publications per second
    channels: int = 4  # every subscriber subscribes to all; publications go round robin
    size: int = 100  # bytes of each publication's JSON data
    compression: bool = True  # permessage-deflate, as browsers ask for it
    # The publisher keeps at most this many publications ahead of what the
    # subscribers have had, on average. Starved of CPU, the soak's own process
    # publishes later rather than in a burst that would pile up in the hub.
    window: int = 50
    warmup: float = 0.1  # share of the publications before RSS is judged
    deliver_timeout: float = 60.0  # seconds for the last deliveries after the last reply
    settle_timeout: float = 30.0  # seconds for the descriptors to come back


async def soak(plan: Plan, broker: str, directory: Path) -> dict[str, Any]:
    """Run ``plan`` on ``broker`` (``memory`` or ``redis``) with the nodes'
    files in ``directory``; return the result, samples included, for
    ``report.judge()``."""
    key = secrets.token_urlsafe(18)
    with ExitStack() as stack:
        procs: dict[str, Process] = {}
        redis: RedisNode | None = None
        if broker == "redis":
            redis = RedisNode(directory)
            stack.callback(redis.stop)
            procs["redis-server"] = redis
            for name in ("node A", "node B"):
                node = HubNode(name.replace(" ", "-").lower(), directory, redis.url, key)
                stack.callback(node.stop)
                procs[name] = node
            publish_to, subscribe_to = procs["node A"], procs["node B"]
        else:
            node = HubNode("node", directory, "memory", key)
            stack.callback(node.stop)
            procs["node"] = publish_to = subscribe_to = node
        nodes = {name: p for name, p in procs.items() if isinstance(p, HubNode)}
        result = await _drive(plan, procs, nodes, publish_to, subscribe_to, redis, key)
        stack.close()  # stop every process before reading their logs
    for name, proc in procs.items():
        entry = result["processes"][name]
        entry["exit"] = proc.proc.returncode if proc.proc is not None else None
        text = proc.log_path.read_text(errors="replace")
        entry["tracebacks"] = len(TRACEBACK.findall(text))
        if entry["tracebacks"]:
            entry["log"] = text[-4000:]
    result["broker"] = broker
    return result


async def _drive(plan: Plan, procs: dict[str, Process], nodes: dict[str, HubNode],
                 publish_to: Process, subscribe_to: Process, redis: RedisNode | None,
                 key: str) -> dict[str, Any]:
    channels = channel_names(plan.channels, CHANNEL_NAMESPACE)
    counts = {c: len(range(i, plan.publications, plan.channels)) for i, c in enumerate(channels)}
    crowd = Crowd(plan.subscribers)
    tally = crowd.tally
    subs = [Subscriber(i, channels, crowd) for i in range(plan.subscribers)]
    warm_at = max(1, math.ceil(plan.warmup * plan.publications))

    async def before(n: int) -> None:
        await crowd.caught_up((n - plan.window) * plan.subscribers)

    def on_published(replies: int) -> None:
        if replies == warm_at:
            sampler.mark("warm")

    publisher = Publisher(_ws_url(publish_to), key, channels, plan.publications,
                          plan.rate, plan.size, before, on_published)
    sampler = Sampler(
        {name: p.pid for name, p in procs.items()},
        lambda: {"published": publisher.replies, "delivered": tally.delivered,
                 "done": crowd.done},
    )
    redis_port = redis.port if redis is not None else None

    def kinds() -> dict[str, dict[str, int]]:
        return {name: fd_kinds(n.pid, n.port, redis_port) for name, n in nodes.items()}

    fd_start = kinds()
    sampler.take()
    sampling = asyncio.get_running_loop().create_task(sampler.run())
    failures: list[str] = []
    try:
        sampler.mark("subscribing", "subscribing")
        await open_subscribers(subs, _ws_url(subscribe_to), counts, plan.compression)
        sampler.mark("subscribed", "publishing")
        await _alive(procs, sampling)
        await publisher.run()
        sampler.mark("published")
        try:
            await asyncio.wait_for(crowd.all_done.wait(), plan.deliver_timeout)
        except asyncio.TimeoutError:
            failures.append(f"{plan.subscribers - crowd.done} subscribers still lacked "
                            f"publications {plan.deliver_timeout:.0f} s after the last reply")
        sampler.mark("delivered", "leaving")
        for sub in subs:
            sub.settle()
        await _alive(procs, sampling)
        await asyncio.gather(*(sub.leave() for sub in subs))
        sampler.mark("left")
        await _settle(kinds, fd_start, plan.settle_timeout)  # the clients' sockets close
        state = await _emptied(nodes, plan.settle_timeout)
        # Then once more, for the sockets of the GETs that read the state.
        fd_end, settled = await _settle(kinds, fd_start, plan.settle_timeout)
        sampler.mark("settled" if settled else "unsettled", "settled")
        sampler.take()
        await _alive(procs, sampling)
    finally:
        sampling.cancel()
        try:
            await sampling
        except asyncio.CancelledError:
            pass
    marks = sampler.marks
    times = {
        "subscribe": marks["subscribed"] - marks["subscribing"],
        "publish": publisher.finished - publisher.started,
        "last_delivery": marks["delivered"] - marks["published"],
        "settle": marks.get("settled", marks.get("unsettled", 0.0)) - marks["left"],
        "total": sampler.now(),
        "longest_gap": sampler.longest_gap,
    }
    return {
        "plan": asdict(plan),
        "tally": asdict(tally),
        "expected": plan.subscribers * plan.publications,
        "publisher": {"replies": publisher.replies, "failures": publisher.failures,
                      "examples": publisher.examples, "held": publisher.held,
                      "rate": publisher.replies / max(times["publish"], 1e-9)},
        "times": times,
        "failures": failures,
        "settled": settled,
        "processes": {
            name: {"fd_kinds": {"start": fd_start[name], "end": fd_end[name]},
                   "state": state[name]}
            if name in nodes else {} for name in procs
        },
        "marks": marks,
        "samples": [asdict(s) for s in sampler.samples],
    }


def _ws_url(node: Process) -> str:
    return f"ws://127.0.0.1:{node.port}/ws"


async def _alive(procs: dict[str, Process], sampling: asyncio.Task[None]) -> None:
    """Raise if a process died or the sampler failed (it reads their /proc)."""
    for proc in procs.values():
        proc.check_alive()
    if sampling.done():
        await sampling  # raises what stopped it


async def _settle(kinds: Any, start: dict[str, dict[str, int]], timeout: float
                  ) -> tuple[dict[str, dict[str, int]], bool]:
    """Poll the nodes' descriptors until they are back to ``start`` (Redis
    connections within ``REDIS_CONNECTIONS``), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = kinds()
        if all(not fd_problems(start[name], now[name]) for name in start):
            return now, True
        if time.monotonic() > deadline:
            return now, False
        await asyncio.sleep(SETTLE_POLL)


async def _emptied(nodes: dict[str, HubNode], timeout: float) -> dict[str, dict[str, int]]:
    """Poll each node's state until it holds nothing for clients, at most
    ``timeout`` seconds; return the last state seen."""
    deadline = time.monotonic() + timeout
    while True:
        state = {name: node.state() for name, node in nodes.items()}
        if not any(v for s in state.values() for v in s.values()) or (
            time.monotonic() > deadline
        ):
            return state
        await asyncio.sleep(SETTLE_POLL)


def fd_problems(start: dict[str, int], end: dict[str, int]) -> list[str]:
    """How a node's descriptors at the end differ from its start, beyond
    what a Redis connection pool may keep."""
    problems = []
    if end["clients"]:
        problems.append(f"{end['clients']} client sockets still open")
    for kind in ("listening", "other"):
        if end[kind] != start[kind]:
            problems.append(f"{kind}: {start[kind]} at the start, {end[kind]} at the end")
    if end["redis"] > REDIS_CONNECTIONS:
        problems.append(f"{end['redis']} connections to Redis, more than the "
                        f"{REDIS_CONNECTIONS} its pool and pub/sub may hold")
    return problems
