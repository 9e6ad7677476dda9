"""The scenarios: what is measured, against whom, and how one sample is taken.

A sample starts a fresh server process, loads it with the C load generator (or
one Python client, for the client scenario), and returns one number with the
CPU shares of both sides over the measured window. The hub scenario's samples
carry several numbers (``Sample.values``, described by ``Scenario.metrics``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench import load
from bench.procs import (
    ASGI_SERVERS,
    BenchError,
    Event,
    HubProcess,
    JsonLinesProcess,
    ProcessMeter,
    RedisProcess,
    ServerProcess,
    SocketioProcess,
    SoketiProcess,
)
from bench.settings import Settings

# tidewire's rows: the async API (``async for``); the callback one
# (``ws.on_message(ws.send_nowait)``), as picows' users write it; and the async API
# on the pure-Python twins (TIDEWIRE_NO_SPEEDUPS=1), which must still beat websockets.
# Compressed fan-out has one more, "tidewire-once": server_no_context_takeover, as the
# hub runs, so that broadcast() compresses each message once for all.
ROWS = ("tidewire", "tidewire-cb", "tidewire-py")
# The ASGI rows (bench/servers/asgi_server.py): one ASGI app, run by uvicorn with
# tidewire as its WebSocket engine, with its own two engines, by granian and hypercorn.
ASGI_OURS = "uvicorn-tidewire"
ASGI_DEFAULT = "uvicorn-sansio"  # uvicorn 0.54's engine when websockets is installed
OURS = (*ROWS, "tidewire-once", ASGI_OURS)  # never "the best other library"
SERVERS = (*ROWS, "picows", "websockets", "aiohttp", "rawtcp")
# Where no messages come in (fan-out, idle memory), one way of taking them in is enough.
OTHERS = ("tidewire", "tidewire-py", "picows", "websockets", "aiohttp", "rawtcp")
COMPRESSING = (*ROWS, "websockets", "aiohttp")
CLIENTS = (*ROWS, "picows", "websockets", "aiohttp", "rawtcp", "loadgen")
NO_SPEEDUPS_RIVAL = "websockets"  # what the pure-Python twins are held to
LIMIT = "rawtcp"  # measured with the others, the ceiling of any of them on this loop
REFERENCES = (LIMIT, "loadgen")  # rows that are not libraries: never "best"
CLIENT_SERVER = "picows"  # the fixed server of the client scenario
FANOUT_SIZE = 1024
# The hub on its memory broker; two hub nodes on one redis-server, subscribers on one
# and the backend on the other; the Node push servers users pick instead (Socket.IO,
# soketi); a bare broadcast() server as the reference.
HUBS = ("hub", "hub-redis", "socketio", "soketi", "broadcast")
# How the load generator speaks to each of them where it isn't the hub's protocol
# (``None`` values are filled in per sample: the app's key and secret).
SOKETI_APP = "bench"  # soketi's app id
SOKETI_CHANNEL = "ticker-bench"  # Pusher channel names have no ":"
HUB_PROTOCOLS: dict[str, dict[str, load.Option]] = {
    "socketio": {"proto": "socketio", "path": "/socket.io/?EIO=4&transport=websocket"},
    "soketi": {"proto": "pusher", "channel": SOKETI_CHANNEL, "app_id": SOKETI_APP},
}
HUB_WARM_SUBSCRIBERS = 16  # the warm-up run before the memory is read
# The processes of a contender besides the server its subscribers connect to, by role:
# the keys of their numbers in Sample.values ("node_a_cpu", ...), and their labels.
HUB_OTHERS = {"node_a": "node A", "redis": "redis-server"}
HUB_CHANNEL = "ticker:bench"  # the default config's ticker namespace: anonymous may subscribe
# The hub's HTTP API, a backend publishing through it: a new connection for each
# publication (the only way before keep-alive) or one kept connection; with
# ``http_window`` publications in flight (16 connections at a time, or 16 pipelined),
# with as many connections at a time as keep the hub busy (``http_busy``), or one at a
# time, as a backend's loop publishes with a persistent client.
HTTP_ROWS = ("http-keep", "http-close", "http-close-busy", "http-keep-1", "http-close-1")
LABELS = {
    "tidewire": "tidewire",
    "tidewire-cb": "tidewire, on_message()",
    "tidewire-py": "tidewire, no speedups",
    "tidewire-once": "tidewire, compressed once",
    "picows": "picows",
    "websockets": "websockets",
    "aiohttp": "aiohttp",
    "rawtcp": "raw TCP (limit)",
    "loadgen": "C loadgen (reference)",
    "uvicorn-tidewire": "uvicorn + tidewire",
    "uvicorn-sansio": "uvicorn + websockets-sansio (default)",
    "uvicorn-wsproto": "uvicorn + wsproto",
    "granian": "granian",
    "hypercorn": "hypercorn",
    "hub": "tidewire hub",
    "hub-redis": "hub, Redis, 2 nodes",
    "broadcast": "broadcast() server (reference)",
    "http-keep": "one kept connection, pipelined",
    "http-close": "a connection per publication",
    "http-close-busy": "a connection per publication, the hub kept busy",
    "http-keep-1": "one kept connection, one at a time",
    "http-close-1": "a connection per publication, one at a time",
    "socketio": "Socket.IO",
    "soketi": "soketi",
}


@dataclass
class Sample:
    value: float | None  # None: the sample failed, ``note`` says why
    server_cpu: float | None = None  # share of one core over the measured window
    load_cpu: float | None = None  # same, for the load generator or the client
    server_wait: float | None = None  # share of the window it waited for its core
    load_wait: float | None = None
    note: str = ""
    info: dict[str, Any] | None = None  # what the server said of itself
    values: dict[str, float] | None = None  # more numbers, named by Scenario.metrics


Measure = Callable[[str, Settings], Sample]
HubServer = ServerProcess | SoketiProcess  # what a hub contender's subscribers connect to


@dataclass(frozen=True)
class Metric:
    """One of the numbers of a sample: a key of ``Sample.values``, and its row label."""

    key: str
    label: str
    count: bool = False  # shown as a whole number


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    unit: str
    what: str  # one line for results.md
    contenders: tuple[str, ...]
    measure: Measure
    higher_is_better: bool = True
    metrics: tuple[Metric, ...] = ()  # when set, results.md has a row per metric
    ratios: tuple[tuple[str, str], ...] = ()  # (row, row): their ratio under the table


def check(result: dict[str, Any], conns: int, deflate: bool = False) -> str:
    """Raise if the run can't be trusted; return a note for minor trouble."""
    problems = []
    if result.get("timed_out"):
        problems.append("timed out")
    if result["opened"] < conns:
        problems.append(f"{result['opened']}/{conns} connections opened")
    if result["bad"]:
        problems.append(f"{result['bad']} malformed messages")
    if deflate and result["deflate"] < result["opened"]:
        problems.append(f"compression agreed on {result['deflate']}/{result['opened']}")
    if problems:
        raise BenchError("; ".join(problems) + f" ({result['last_error']})")
    if result["errors"]:
        return f"{result['errors']} errors ({result['last_error']})"
    return ""


class Meters:
    """CPU meters of the server and the load, started and stopped by the load's events
    (those of one ``phase``, when the load has several measured windows); ``others``
    are more processes to meter, by role."""

    def __init__(
        self,
        server: HubServer,
        driver: JsonLinesProcess,
        phase: str | None = None,
        others: dict[str, int] | None = None,
    ) -> None:
        self.server = ProcessMeter(server.pid)
        self.load = ProcessMeter(driver.pid)
        self.others = {role: ProcessMeter(pid) for role, pid in (others or {}).items()}
        self.phase = phase

    def on_event(self, event: Event) -> None:
        if event.get("phase") != self.phase:
            return
        for meter in (self.server, self.load, *self.others.values()):
            if event["event"] == "measuring":
                meter.start()
            elif event["event"] == "measured":
                meter.stop()

    def sample(self, value: float, note: str = "", info: dict[str, Any] | None = None) -> Sample:
        return Sample(
            value,
            self.server.cpu,
            self.load.cpu,
            self.server.wait,
            self.load.wait,
            note,
            info,
        )


def run_metered(
    server: ServerProcess, driver: JsonLinesProcess, timeout: float
) -> tuple[dict[str, Any], Meters]:
    """Run the load generator or client to its end, metering both sides."""
    meters = Meters(server, driver)
    result = driver.run(timeout, meters.on_event)
    server.check_alive()
    return result, meters


def timed_load(
    name: str, settings: Settings, mode: str, compression: bool, **options: load.Option
) -> tuple[dict[str, Any], Meters, dict[str, Any]]:
    """An echo server under the load generator's ``mode`` for the warm-up and the
    measured window: the load's result, the meters and what the server said."""
    with ServerProcess(name, "echo", compression, settings) as server:
        gen = load.loadgen(
            mode,
            server.port,
            settings,
            raw=name == LIMIT,
            deflate=compression,
            warmup=settings.warmup,
            duration=settings.duration,
            **options,
        )
        result, meters = run_metered(server, gen, settings.warmup + settings.duration + 60)
    return result, meters, server.info


def echo(size: int, conns: int, binary: bool, compression: bool = False) -> Measure:
    """Each connection keeps one message in flight; messages/s, or MB/s above 1 KiB."""

    def measure(name: str, settings: Settings) -> Sample:
        result, meters, info = timed_load(
            name, settings, "echo", compression, conns=conns, size=size, binary=binary
        )
        note = check(result, conns, compression)
        rate = result["messages"] / result["seconds"]
        value = rate * size / 1e6 if size > 1024 else rate
        if compression:
            info = dict(info, extensions=result["extensions"])
        return meters.sample(value, note, info)

    return measure


def connect(compression: bool = False) -> Measure:
    """Slots loop over: connect, upgrade, one 64 B echo, close handshake."""

    def measure(name: str, settings: Settings) -> Sample:
        result, meters, _ = timed_load(
            name, settings, "connect", compression, conns=settings.connect_slots, size=64
        )
        note = check(result, 1, compression)
        return meters.sample(result["cycles"] / result["seconds"], note)

    return measure


def idle_memory(name: str, settings: Settings, compression: bool) -> Sample:
    """Server RSS growth per open idle connection, in KiB."""
    conns = settings.idle_conns
    with ServerProcess(name, "echo", compression, settings) as server:
        # One short echo first, so that code paths and their imports are loaded.
        warm = load.loadgen(
            "echo",
            server.port,
            settings,
            raw=name == LIMIT,
            deflate=compression,
            warmup=0.1,
            duration=0.3,
        )
        check(warm.run(30), 1, compression)
        time.sleep(0.5)
        before = server.rss_bytes()
        after: list[int] = []
        gen = load.loadgen(
            "idle",
            server.port,
            settings,
            hold_stdin=True,
            conns=conns,
            raw=name == LIMIT,
            deflate=compression,
            hold=120,
        )

        def on_event(event: Event) -> None:
            if event["event"] == "ready":
                time.sleep(1.0)  # let the server finish handshakes it is still writing
                after.append(server.rss_bytes())
                gen.release()

        result = gen.run(300, on_event)  # the load generator gives up at hold + 120 s
        server.check_alive()
    note = check(result, conns, compression)
    if not after:
        raise BenchError("the load generator never got its connections ready")
    if result["dropped"]:
        raise BenchError(f"the server dropped {result['dropped']} idle connections")
    return Sample((after[0] - before) / result["opened"] / 1024, note=note)


def fanout(name: str, settings: Settings, compression: bool) -> Sample:
    """Deliveries/s of 1 KiB messages to every client, counted at the clients."""
    conns = settings.fanout_conns
    with ServerProcess(name, "fanout", compression, settings) as server:
        gen = load.loadgen(
            "fanout",
            server.port,
            settings,
            conns=conns,
            size=FANOUT_SIZE,
            binary=True,
            raw=name == LIMIT,
            deflate=compression,
            count=settings.fanout_count,
            rounds=settings.fanout_rounds,
            timeout=300,
        )
        result, meters = run_metered(server, gen, 330)
    note = check(result, conns, compression)
    if result["seconds"] <= 0:
        raise BenchError(f"no measured round ({result['last_error']})")
    delivered = result["deliveries"] / result["expected"] if result["expected"] else 0.0
    if delivered < 0.9995:
        note = f"{delivered:.1%} delivered" + (f"; {note}" if note else "")
    value = result["deliveries"] / result["seconds"]
    return meters.sample(value, note, server.info)


def start_hub(
    name: str, settings: Settings, api_key: str, stack: ExitStack
) -> tuple[HubServer, dict[str, ServerProcess | RedisProcess]]:
    """Start a hub contender's processes, stopped when ``stack`` closes: the server
    the subscribers connect to, and the others by role (``HUB_OTHERS``).

    hub-redis: a fresh redis-server, node A (the backend's) and node B (the
    subscribers'), both ``--broker redis://...``. Node B does the fan-out, as the
    lone hub does: it gets the server's core to itself. Node A and redis-server do
    per-publication work only, and share the load generator's core (2 cores).
    soketi's app has ``api_key`` for its key and its secret.
    """
    if name == "socketio":
        return stack.enter_context(SocketioProcess(settings)), {}
    if name == "soketi":
        return stack.enter_context(SoketiProcess(settings, SOKETI_APP, api_key, api_key)), {}
    if name == "broadcast":
        return stack.enter_context(ServerProcess("tidewire", "pubsub", False, settings)), {}
    if name == "hub":
        return stack.enter_context(HubProcess(settings, api_key)), {}
    redis = stack.enter_context(RedisProcess(settings.client_cpu))
    node_a = stack.enter_context(
        HubProcess(settings, api_key, "hub-redis-a", redis.url, settings.client_cpu)
    )
    node_b = stack.enter_context(HubProcess(settings, api_key, "hub-redis-b", redis.url))
    return node_b, {"node_a": node_a, "redis": redis}


def hub(name: str, settings: Settings) -> Sample:
    """The hub with its subscribers and one backend, both in the C load generator.

    Throughput: publications/s with ``hub_window`` publications in flight (each
    until it is answered and every subscriber has it), and the deliveries/s that
    come of them. Latency: at ``hub_rate`` publications/s, from the publisher's
    clock reading in the data to its arrival at each subscriber (same clock, same
    process), p50 and p99 of every delivery of the window. Every subscriber must
    get every publication, offsets consecutive. For hub-redis the backend
    publishes on node A and the subscribers are on node B: every publication
    crosses Redis.
    """
    conns = settings.hub_subscribers
    key = "bench-" + secrets.token_hex(8)
    with ExitStack() as stack:
        server, others = start_hub(name, settings, key, stack)
        options: dict[str, load.Option] = {
            "path": "/ws",
            "size": settings.hub_size,
            "channel": HUB_CHANNEL,
            "api_key": key,
            "window": settings.hub_window,
            "rate": settings.hub_rate,
            "backend_port": others["node_a"].port if "node_a" in others else False,
            **HUB_PROTOCOLS.get(name, {}),
        }
        if name == "soketi":
            options["path"] = f"/app/{key}?protocol=7&client=loadgen&version=1.0"
            options["app_secret"] = key
        # A short run first, so that every code path is loaded before the memory
        # is read; then the subscribers connect, and are held idle for a moment.
        warm = load.loadgen(
            "hub", server.port, settings, conns=HUB_WARM_SUBSCRIBERS, warmup=0.2, duration=0.3,
            **options,
        )
        check(warm.run(60), HUB_WARM_SUBSCRIBERS)
        time.sleep(0.5)
        before = server.rss_bytes()
        memory: list[float] = []
        gen = load.loadgen(
            "hub",
            server.port,
            settings,
            hold_stdin=True,
            conns=conns,
            warmup=settings.warmup,
            duration=settings.duration,
            hold_subscribed=True,
            **options,
        )
        pids = {role: proc.pid for role, proc in others.items()}
        busy = Meters(server, gen, "throughput", pids)
        paced = Meters(server, gen, "latency", pids)

        def on_event(event: Event) -> None:
            if event["event"] == "subscribed":
                time.sleep(1.0)  # let the server finish what it is still writing
                grown = server.rss_bytes() - before
                memory.append(grown / max(event["subscribed"], 1) / 1024)
                gen.release()
            busy.on_event(event)
            paced.on_event(event)

        timeout = 2 * (settings.warmup + settings.duration) + 120
        result = gen.run(timeout, on_event)
        server.check_alive()
        for proc in others.values():
            proc.check_alive()
    note = check(result, conns)
    if result["subscribed"] < conns or not result["lat_seconds"] or not result["seconds"]:
        raise BenchError(
            f"{result['subscribed']}/{conns} subscribed at the end, latency window"
            f" {result['lat_seconds']:.1f}s ({result['last_error']})"
        )
    trouble = [note] if note else []
    missing = result["lat_expected"] - result["lat_deliveries"]
    if result["lost"] or result["disorder"] or missing:
        trouble.append(
            f"{result['lost']} lost (offset gaps), {result['disorder']} out of order,"
            f" {missing} of {result['lat_expected']:,} latency-window deliveries missing"
        )
    if result["late"]:
        trouble.append(f"latency phase: {result['late']} times a publication waited for the window")
    rate = result["lat_published"] / result["lat_seconds"]
    if rate < 0.95 * settings.hub_rate:
        trouble.append(f"latency phase published {rate:.0f}/s, not {settings.hub_rate:g}/s")
    seconds = result["seconds"]
    values = {
        "publications": result["published"] / seconds,
        "deliveries": result["deliveries"] / seconds,
        "p50": result["p50_us"] / 1e3,
        "p99": result["p99_us"] / 1e3,
        "lost": float(result["lost"] + result["disorder"] + missing),
    }
    if memory:
        values["memory"] = memory[0]
    for prefix, meters in (("", busy), ("lat_", paced)):
        sides = {"server": meters.server, "load": meters.load, **meters.others}
        for side, meter in sides.items():
            if meter.cpu is not None and meter.wait is not None:
                values[f"{prefix}{side}_cpu"] = meter.cpu
                values[f"{prefix}{side}_wait"] = meter.wait
    # What a core of the server delivers when it has it: steadier than the rate when
    # other work on the machine takes the core away (see the "waited" rows).
    if values.get("server_cpu"):
        values["per_cpu"] = values["deliveries"] / values["server_cpu"]
    # Not the pubsub server's "fanout" line: results.md reads that key for fan-out.
    info = dict(server.info) if name != "broadcast" else {"library": server.info.get("library")}
    sample = busy.sample(values["publications"], "; ".join(trouble), info)
    sample.values = values
    return sample


def hub_http(name: str, settings: Settings) -> Sample:
    """Publications/s of a backend through the hub's HTTP API (``POST
    /api/publish``) to a channel without subscribers, answered 200 each."""
    keep = name.startswith("http-keep")
    if name.endswith("-1"):
        window = 1
    elif name.endswith("-busy"):
        window = settings.http_busy
    else:
        window = settings.http_window
    conns = 1 if keep else window
    key = "bench-" + secrets.token_hex(8)
    with HubProcess(settings, key) as server:
        gen = load.loadgen(
            "http",
            server.port,
            settings,
            path="/api/publish",
            conns=conns,
            window=window,
            keepalive=keep,
            size=settings.hub_size,
            channel=HUB_CHANNEL,
            api_key=key,
            warmup=settings.warmup,
            duration=settings.duration,
        )
        result, meters = run_metered(server, gen, settings.warmup + settings.duration + 60)
    note = check(result, conns)
    return meters.sample(result["messages"] / result["seconds"], note, server.info)


def client_echo(name: str, settings: Settings) -> Sample:
    """One library's client, 64 B text echo on 1 connection, against picows."""
    with ServerProcess(CLIENT_SERVER, "echo", False, settings) as server:
        if name == "loadgen":
            proc = load.loadgen(
                "echo", server.port, settings, warmup=settings.warmup, duration=settings.duration
            )
        else:
            proc = load.client(name, server.port, 64, settings)
        result, meters = run_metered(server, proc, settings.warmup + settings.duration + 60)
    if name == "loadgen":
        check(result, 1)
    return meters.sample(result["messages"] / result["seconds"])


@dataclass(frozen=True)
class EchoCase:
    key: str
    label: str  # the size, for people: "16 KiB"
    size: int
    conns: int

    @property
    def binary(self) -> bool:
        return self.size > 64

    @property
    def unit(self) -> str:
        return "MB/s" if self.size > 1024 else "messages/s"

    @property
    def title(self) -> str:
        kind = "binary" if self.binary else "text"
        plural = "s" if self.conns > 1 else ""
        return f"Echo, {self.label} {kind}, {self.conns} connection{plural}"

    def what(self) -> str:
        what = self.title.replace("Echo, ", "Echo of ").replace(",", " messages,", 1)
        what += ", one message in flight" + (" on each" if self.conns > 1 else "")
        return what + ("; MB/s of payload echoed" if self.unit == "MB/s" else "")


ECHO_CASES = (
    EchoCase("echo-64-1", "64 B", 64, 1),
    EchoCase("echo-64-64", "64 B", 64, 64),
    EchoCase("echo-16k-16", "16 KiB", 16 * 1024, 16),
    EchoCase("echo-1m-16", "1 MiB", 2**20, 16),
)


def all_scenarios(s: Settings) -> list[Scenario]:
    scenarios = [
        Scenario(c.key, c.title, c.unit, c.what() + ".", SERVERS, echo(c.size, c.conns, c.binary))
        for c in ECHO_CASES
    ]
    scenarios += connection_scenarios(s, compression=False)
    scenarios += [
        Scenario(
            f"{c.key}-deflate",
            f"{c.title}, compressed",
            c.unit,
            c.what() + "; permessage-deflate on.",
            COMPRESSING,
            echo(c.size, c.conns, c.binary, compression=True),
        )
        for c in ECHO_CASES
    ]
    scenarios += connection_scenarios(s, compression=True)
    scenarios += asgi_scenarios(s)
    scenarios.append(
        Scenario(
            "hub",
            f"Hub, {s.hub_subscribers:,} subscribers on one channel",
            "publications/s",
            f"`tidewire serve`: {s.hub_subscribers:,} WebSocket subscribers of `{HUB_CHANNEL}`"
            f" and one backend that publishes {s.hub_size} B of JSON data over WebSocket;"
            f" first as fast as the hub delivers ({s.hub_window} publications in flight, each"
            " until answered and received by every subscriber), then at"
            f" {s.hub_rate:g} publications/s for the publish-to-delivery"
            " latency of every delivery. Memory: the server's RSS growth over the"
            " subscribers, connected and subscribed but idle, divided by their number."
            " The Redis row runs two hub nodes on one"
            " redis-server: the subscribers are on node B, the backend publishes on node A,"
            " so every publication crosses Redis. Socket.IO and soketi, each one Node process"
            " on the same core, get the same load in their own protocols: a room joined by"
            " every subscriber and `io.to(room).emit()` on the backend's emit (Socket.IO);"
            " a public channel and the Pusher HTTP API, one signed request at a time"
            " (soketi). The reference row is a server that speaks"
            " just enough of the protocol and pushes with `tidewire.broadcast()`, without the"
            " hub.",
            HUBS,
            hub,
            metrics=(
                Metric("publications", f"publications/s ({s.hub_window} in flight)"),
                Metric("deliveries", "deliveries/s (to all subscribers)"),
                Metric("p50", f"latency p50 at {s.hub_rate:g}/s (ms, lower is better)"),
                Metric("p99", f"latency p99 at {s.hub_rate:g}/s (ms, lower is better)"),
                Metric("lost", "deliveries lost or out of order", count=True),
                Metric("memory", "memory per idle subscriber (KiB, lower is better)"),
                Metric("per_cpu", "deliveries per CPU-second of the server (Redis: node B)"),
            ),
        )
    )
    scenarios.append(
        Scenario(
            "http-api",
            "Hub HTTP API, publications to a channel without subscribers",
            "publications/s",
            "`tidewire serve` (as in the hub scenario) and one backend in the C load"
            f" generator that publishes {s.hub_size} B of JSON data with `POST"
            f" /api/publish` to `{HUB_CHANNEL}`, which has no subscribers: the HTTP path"
            " and the broker's history, no fan-out. Each answer is a 200 counted when it"
            " comes. Pipelined: one kept connection with"
            f" {s.http_window} requests in flight; a connection per publication:"
            f" {s.http_window} connections at a time, each for one request (`Connection:"
            " close`, closed by the hub after its answer), as every backend published"
            " before the hub kept connections. Those connections spend part of their time"
            " opening and closing, which leaves the hub idle between them: the"
            f' "hub kept busy" row opens {s.http_busy} at a time, the most the hub serves'
            " that way. The one-at-a-time rows wait for each answer before the next"
            " request, as a backend's loop does with a persistent client (httpx,"
            " requests.Session) or without one.",
            HTTP_ROWS,
            hub_http,
            ratios=(
                ("http-keep", "http-close"),
                ("http-keep", "http-close-busy"),
                ("http-keep-1", "http-close-1"),
            ),
        )
    )
    scenarios.append(
        Scenario(
            "client-echo-64-1",
            "Clients: echo, 64 B text, 1 connection",
            "messages/s",
            f"Each library's client against the {CLIENT_SERVER} echo server; the C loadgen row"
            " shows how fast that server answers.",
            CLIENTS,
            client_echo,
        )
    )
    return scenarios


def connection_scenarios(s: Settings, compression: bool) -> list[Scenario]:
    """New connections, idle memory and fan-out, with permessage-deflate or without."""
    suffix, title, what = (
        ("-deflate", ", compressed", " permessage-deflate on.") if compression else ("", "", "")
    )
    # Without compression every library takes part; with it, those that have it.
    servers = COMPRESSING if compression else SERVERS
    others = tuple(n for n in OTHERS if n in servers)
    fans = others
    if compression:  # the compressed-once row right after tidewire's own
        at = others.index("tidewire") + 1
        fans = (*others[:at], "tidewire-once", *others[at:])
    return [
        Scenario(
            f"connect{suffix}",
            f"New connections{title}",
            "connections/s",
            f"{s.connect_slots} at a time: connect, upgrade, one 64 B echo, close handshake"
            " (the server closes TCP first)." + what,
            servers,
            connect(compression),
        ),
        Scenario(
            f"idle-memory{suffix}",
            f"Memory per idle connection, {s.idle_conns:,} open{title}",
            "KiB/connection",
            f"Server RSS growth over {s.idle_conns:,} open idle connections, divided by their"
            " number, after one warm-up echo. Lower is better." + what,
            others,
            partial(idle_memory, compression=compression),
            higher_is_better=False,
        ),
        Scenario(
            f"fanout{suffix}",
            f"Fan-out, 1 KiB to {s.fanout_conns:,} clients{title}",
            "deliveries/s",
            f"A trigger makes the server send {s.fanout_count} binary messages of 1 KiB to each"
            f" of {s.fanout_conns:,} clients; messages received per second, at the clients." + what,
            fans,
            partial(fanout, compression=compression),
        ),
    ]


def asgi_scenarios(s: Settings) -> list[Scenario]:
    """The same ASGI app (bench/servers/asgi_apps.py) under every ASGI server."""
    what = (
        " One ASGI app (`servers/asgi_apps.py`) under each ASGI server, one worker;"
        " uvicorn's rows use httptools and uvloop."
    )
    against = ((ASGI_OURS, ASGI_DEFAULT), (ASGI_OURS, "granian"))
    scenarios = [
        Scenario(
            f"asgi-{c.key}",
            f"ASGI: {c.title[0].lower()}{c.title[1:]}",
            c.unit,
            c.what() + "." + what,
            ASGI_SERVERS,
            echo(c.size, c.conns, c.binary),
            ratios=against,
        )
        for c in ECHO_CASES
        if c.key in ("echo-64-64", "echo-16k-16")
    ]
    scenarios += [
        Scenario(
            "asgi-fanout",
            f"ASGI: fan-out, 1 KiB to {s.fanout_conns:,} clients",
            "deliveries/s",
            f"A trigger makes the app send {s.fanout_count} binary messages of 1 KiB to each"
            f" of {s.fanout_conns:,} clients, one awaited `websocket.send` per client and"
            " message; messages received per second, at the clients." + what,
            ASGI_SERVERS,
            partial(fanout, compression=False),
            ratios=against,
        ),
        Scenario(
            "asgi-connect",
            "ASGI: new connections",
            "connections/s",
            f"{s.connect_slots} at a time: connect, upgrade, one 64 B echo, close handshake."
            + what,
            ASGI_SERVERS,
            connect(),
            ratios=against,
        ),
        Scenario(
            "asgi-idle-memory",
            f"ASGI: memory per idle connection, {s.idle_conns:,} open",
            "KiB/connection",
            f"Server RSS growth over {s.idle_conns:,} open idle connections, each with the"
            " echo app's task waiting in `receive()`, divided by their number, after one"
            " warm-up echo. Lower is better." + what,
            ASGI_SERVERS,
            partial(idle_memory, compression=False),
            higher_is_better=False,
            ratios=against,
        ),
    ]
    return scenarios
