"""results.md: the machine, the settings, and one table per scenario."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

from bench import stats
from bench.procs import node_package_version, node_version, redis_server_version
from bench.scenarios import (
    CLIENT_SERVER,
    HUB_CHANNEL,
    HUB_OTHERS,
    HUB_WARM_SUBSCRIBERS,
    LABELS,
    NO_SPEEDUPS_RIVAL,
    OURS,
    SOKETI_CHANNEL,
    Sample,
    Scenario,
)
from bench.settings import Settings
from bench.stats import Summary

LIBRARIES = (
    "tidewire",
    "picows",
    "websockets",
    "aiohttp",
    "uvloop",
    "aiofastnet",
    "matplotlib",
    "redis",
)


# The Node packages of the hub's rivals (bench/node); uWebSockets.js is soketi's.
NODE_PACKAGES = ("socket.io", "@soketi/soketi", "uWebSockets.js")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gcc_version() -> str:
    try:
        out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "gcc": _gcc_version(),
        "versions": {
            **{name: _version(name) for name in LIBRARIES},
            "redis-server": redis_server_version(),
            "node": node_version(),
            **{name: node_package_version(name) for name in NODE_PACKAGES},
        },
        "load_start": os.getloadavg(),
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def fmt_share(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def fmt_pair(server: float | None, load: float | None) -> str:
    if server is None and load is None:
        return "—"
    return f"{fmt_share(server)} / {fmt_share(load)}"


def _spread(
    summary: Summary, key: str, show: Callable[[float | None], str] = fmt
) -> tuple[str, str]:
    """(median, "min – max") of one of a summary's values."""
    if key not in summary.values:
        return "—", ""
    median, low, high = summary.values[key]
    return show(median), f"{show(low)} – {show(high)}"


def _value_pair(summary: Summary, server: str, load: str) -> str:
    """ "server / load" shares, medians."""
    values = summary.values
    return fmt_pair(values.get(server, (None,))[0], values.get(load, (None,))[0])


def metrics_table(scenario: Scenario, summaries: dict[str, Summary]) -> str:
    """A row per metric, a pair of columns per contender: for the hub scenario,
    where each sample measures several things and there is no peer to rank."""
    names = scenario.contenders
    first, *others = names
    head = "| |" + "".join(f" {LABELS[n]} | min – max |" for n in names)
    head += "".join(f" {first} / {n} |" for n in others)
    lines = [
        f"### {scenario.title}",
        "",
        scenario.what,
        "",
        head,
        "|---|" + "---:|---:|" * len(names) + "---:|" * len(others),
    ]
    for metric in scenario.metrics:
        row = f"| {metric.label} |"
        show = fmt_count if metric.count else fmt
        for name in names:
            median, spread = _spread(summaries[name], metric.key, show)
            row += f" {median} | {spread} |"
        top = summaries[first].values.get(metric.key, (None,))[0]
        for name in others:
            ratio = stats.ratio(top, summaries[name].values.get(metric.key, (None,))[0])
            row += f" {'' if metric.count else fmt_ratio(ratio)} |"
        lines.append(row)
    # Rows for the other processes of a contender (hub-redis: node A, redis-server).
    pairs = [("server", "load")]
    node_a, redis = HUB_OTHERS
    if any(f"{role}_cpu" in summaries[n].values for role in HUB_OTHERS for n in names):
        pairs.append((node_a, redis))
    for label, prefix in (("throughput", ""), ("latency", "lat_")):
        for one, two in pairs:
            for kind in ("cpu", "wait"):
                what = "CPU" if kind == "cpu" else "waited"
                sides = f"{_side_label(one, len(pairs) > 1)} / {_side_label(two)}"
                row = f"| {what} {sides}, {label} |"
                for name in names:
                    keys = f"{prefix}{one}_{kind}", f"{prefix}{two}_{kind}"
                    row += f" {_value_pair(summaries[name], *keys)} | |"
                lines.append(row + " |" * len(others))
    lines.append(
        "| runs |" + "".join(_runs(summaries[n]) + " | |" for n in names) + " |" * len(others)
    )
    lines.append("")
    notes = [f"{LABELS[n]}: {'; '.join(summaries[n].notes)}" for n in names if summaries[n].notes]
    if notes:
        lines += ["Notes: " + ". ".join(notes) + ".", ""]
    if any(
        s.values.get(k, (0.0,))[0] > 0.1
        for s in summaries.values()
        for k in ("server_wait", "lat_server_wait")
    ):
        lines += [
            "⚠ a server's event loop waited for its core over 10% of the time: other work"
            " on the machine slowed it.",
            "",
        ]
    if any(s.values.get("load_cpu", (0.0,))[0] > 0.8 for s in summaries.values()):
        lines += ["⚠ load CPU above 80%: the load generator may share the limit.", ""]
    shared = [f"{prefix}{side}_wait" for prefix in ("", "lat_") for side in ("load", *HUB_OTHERS)]
    if any(s.values.get(k, (0.0,))[0] > 0.1 for s in summaries.values() for k in shared):
        lines += [
            "⚠ the load generator (or, in the Redis row, node A or redis-server: they share"
            " its core) waited for its core over 10% of the time.",
            "",
        ]
    return "\n".join(lines)


def _side_label(side: str, nodes: bool = False) -> str:
    """A process's role for a row's label; ``nodes``: say which hub node the server is."""
    if side == "server" and nodes:
        return "server (Redis: node B)"
    return HUB_OTHERS.get(side, side)


def _runs(s: Summary) -> str:
    return f" {s.runs}" + (f" ({s.failed} failed)" if s.failed else "")


def sample_details(scenario: Scenario, sample: Sample) -> str:
    """More of a sample for the progress line: its other metrics."""
    if not scenario.metrics or not sample.values:
        return ""
    shown = [
        f"{m.key} {(fmt_count if m.count else fmt)(sample.values[m.key])}"
        for m in scenario.metrics[1:]
        if m.key in sample.values
    ]
    return " (" + ", ".join(shown) + ")"


def scenario_table(scenario: Scenario, summaries: dict[str, Summary]) -> str:
    if scenario.metrics:
        return metrics_table(scenario, summaries)
    better = "higher" if scenario.higher_is_better else "lower"
    top = stats.best(summaries, scenario.higher_is_better)
    limit = stats.limit(summaries)
    lines = [
        f"### {scenario.title} ({scenario.unit}, {better} is better)",
        "",
        scenario.what,
        "",
        "| | median | min – max | vs best | vs raw TCP | CPU server / load"
        " | waited server / load | runs | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in scenario.contenders:
        s = summaries[name]
        runs = f"{s.runs}" + (f" ({s.failed} failed)" if s.failed else "")
        lines.append(
            f"| {LABELS[name]} | {fmt(s.median)} | {fmt(s.low)} – {fmt(s.high)}"
            f" | {fmt_ratio(stats.ratio(s.median, top.median if top else None))}"
            f" | {fmt_ratio(stats.ratio(s.median, limit.median if limit else None))}"
            f" | {fmt_pair(s.server_cpu, s.load_cpu)} | {fmt_pair(s.server_wait, s.load_wait)}"
            f" | {runs}"
            f" | {'; '.join(s.notes)} |"
        )
    lines.append("")
    for name, other in scenario.ratios:
        r = stats.ratio(summaries[name].median, summaries[other].median)
        line = f"{LABELS[name]} / {LABELS[other]}: **{fmt_ratio(r)}**"
        costs = [_cpu_per_unit(summaries[n]) for n in (name, other)]
        if None not in costs:
            line += (
                f"; server CPU per {scenario.unit.split('/')[0].rstrip('s')}:"
                f" {fmt(costs[0])} µs against {fmt(costs[1])} µs"
                f" ({fmt_ratio(stats.ratio(costs[1], costs[0]))})"
            )
        lines += [line, ""]
    peer = stats.best_peer(summaries, OURS, scenario.higher_is_better)
    for name in OURS:
        ours = summaries.get(name)
        # The pure-Python twins answer to websockets, the others to the best library.
        rival = summaries.get(NO_SPEEDUPS_RIVAL) if name == "tidewire-py" else peer
        if ours and ours.median is not None and rival and rival.median is not None:
            r = stats.ratio(ours.median, rival.median)
            against = rival.name if rival is not peer else f"best other library ({peer.name})"
            line = f"{LABELS[name]} / {against}: **{fmt_ratio(r)}**"
            lines += [line + ("" if scenario.higher_is_better else ", lower is better"), ""]
    if any(s.load_cpu is not None and s.load_cpu > 0.8 for s in summaries.values()):
        lines += [
            "⚠ load CPU above 80% in a row: the load side may share the limit there"
            " (expected of raw TCP, see Settings).",
            "",
        ]
    if any(s.server_wait is not None and s.server_wait > 0.1 for s in summaries.values()):
        lines += [
            "⚠ a server's event loop waited for its core over 10% of the time: other work"
            " on the machine (or the server's own threads) slowed that row.",
            "",
        ]
    return "\n".join(lines)


def _cpu_per_unit(s: Summary) -> float | None:
    """Microseconds of the server's CPU per unit of a rate: median share / median rate."""
    if s.server_cpu is None or not s.median:
        return None
    return s.server_cpu / s.median * 1e6


def settings_section(settings: Settings, infos: dict[str, dict[str, Any]]) -> str:
    s = settings
    fanout = "; ".join(
        f"{name}: {info['fanout']}" for name, info in infos.items() if "fanout" in info
    )
    agreed = "; ".join(
        f"{name}: `{info['extensions']}`" for name, info in infos.items() if "extensions" in info
    )
    lines = [
        "## Settings",
        "",
        f"- Run: {'quick smoke run' if s.quick else 'full run'}; {s.reps} repetition(s),"
        f" libraries alternating (A B C A B C ...); {s.warmup:g} s of warm-up, then"
        f" {s.duration:g} s measured. Each sample starts a fresh server process.",
        f"- Pinning (`taskset`): server on core {s.server_cpu}; load generator or client on"
        f" core {s.client_cpu} (for the hub on Redis, see Hub).",
        f"- Event loop: {s.loop} for every Python server and client. picows runs as its users"
        " run it: on uvloop, with the aiofastnet transports it depends on.",
        "- Load: `bench/loadgen/loadgen`, C (epoll, one thread, gcc -O2), one message in"
        " flight per connection. Payloads are text-like (words from a small vocabulary)."
        " Over loopback each side pays the system calls of every message, so the load"
        " generator costs about as much per message as the raw TCP server: that row can be"
        " bound by both sides (load CPU near 100%), and the true ceiling may be a little"
        " higher. Every WebSocket server costs more per message than the load generator.",
        "- How tidewire takes messages in: the \"tidewire\" row with `async for message in"
        " ws: await ws.send(message)`; the \"tidewire, on_message()\" row with"
        " `ws.on_message(ws.send_nowait)`, a callback called as each message is parsed (as"
        " picows calls `on_ws_frame`); its client sends the next message from the callback."
        " Fan-out and idle memory don't take messages in: no callback row there. The"
        ' "tidewire, no speedups" row is the `async for` server (or client) with'
        " `TIDEWIRE_NO_SPEEDUPS=1`: the pure-Python twins, compared with websockets.",
        "- Keepalive pings off everywhere. Max message size 16 MiB and listen backlog 1024"
        " everywhere.",
        '- Compression: off, except in the "compressed" scenarios (tidewire, websockets,'
        " aiohttp; picows has none). There, zlib level 1 (aiohttp's fixed level; tidewire and"
        " websockets are set to it), memLevel 8, 15-bit windows, context takeover both ways;"
        " websockets is configured so (its own default: 12-bit windows, memLevel 5). The load"
        " generator sends messages compressed ahead of time (level 6, a rotating set wider"
        " than the window), so it only inflates. In compressed fan-out the \"tidewire,"
        ' compressed once" row sets `server_no_context_takeover` (as `tidewire serve` does),'
        " so that `broadcast()` compresses each message once for all clients; every other"
        " row compresses it for each client." + (f" Agreed: {agreed}." if agreed else ""),
        "- Raw TCP (limit): an `asyncio.Protocol` on the same loop that writes back what it"
        " reads (the load generator waits for as many bytes as it sent); no WebSocket at"
        " all. In fan-out it writes prebuilt frames; in the client scenario it is a client"
        " that writes a premasked frame and counts the reply's bytes. For new connections,"
        " its client closes TCP first, with no close handshake.",
        f"- New connections: {s.connect_slots} at a time. Idle memory: {s.idle_conns:,}"
        f" connections. Fan-out: {s.fanout_conns:,} clients; a warm-up round, then"
        f" {s.fanout_rounds} round(s) of {s.fanout_count} messages; servers yield to their"
        ' loop after each message, then send "end" to each client.'
        + (f" Fan-out calls: {fanout}." if fanout else ""),
        f"- Clients: every client against the {CLIENT_SERVER} echo server; each gets its"
        " text messages as `str`.",
        f"- Hub: `tidewire serve --no-demo` with its default config (memory broker;"
        f" `{HUB_CHANNEL}` is in the `ticker` namespace: anonymous subscribers, history of"
        f" 20 for 60 s) on {infos.get('hub', {}).get('loop', 'uvloop')} (it picks uvloop when"
        " installed; `--loop` doesn't apply). The load generator holds"
        f" {s.hub_subscribers:,} subscribers (connect, then subscribe) and one backend"
        " connection (connect with the API key) that publishes"
        f' `{{"t": <CLOCK_MONOTONIC ns>, "pad": "..."}}`, {s.hub_size} B of JSON data'
        f" (pushes are about 170 B). Throughput: {s.hub_window} publications kept in flight,"
        " each until it is answered and every subscriber has it (with Redis a publish reply"
        " comes before node B has delivered: counting replies only, the backend would"
        f" outrun the fan-out); {s.warmup:g} s of warm-up, {s.duration:g} s measured;"
        " then it waits until every subscriber has every publication. Latency:"
        f" {s.hub_rate:g} publications/s, {s.warmup:g} s of warm-up, {s.duration:g} s"
        " measured; p50 and p99 over every delivery of a publication sent in the window,"
        " timed from the publisher's clock reading to the subscriber's recv(). Compression"
        " off (the hub offers permessage-deflate, the load generator doesn't ask for it); the"
        " hub's keepalive pings stay on (20 s) and are answered. Reference: the tidewire"
        " server in `--mode pubsub`, the same protocol subset with `tidewire.broadcast()` and"
        " no hub. While throughput is measured the load generator lets reads pile up for"
        " 200 µs when few sockets are ready, as in fan-out; never while latency is measured."
        f" Memory per idle subscriber: after a warm-up run of {HUB_WARM_SUBSCRIBERS}"
        " subscribers (every code path loaded) the server's RSS is read, then again 1 s"
        f" after all {s.hub_subscribers:,} subscribers are connected and subscribed, before"
        " the backend connects; the growth divided by their number (for the Redis row, node"
        " B's).",
        "- Hub's rivals, each one Node process pinned to the server's core like every"
        " server (Node's own threads included), with the same load in its own protocol,"
        " spoken by the same load generator, which counts deliveries, losses, reordering and"
        ' latency the same way (the data is `{"seq": N, "t": ..., "pad": "..."}`, N the'
        " publisher's count, checked as the hub's offsets are). Socket.IO"
        " (`bench/node/socketio_server.js`, the `socket.io` package with its defaults, the"
        " `ws` engine): subscribers speak Engine.IO v4 straight over WebSocket and emit"
        ' "subscribe", which joins them to the room and is acked; the backend is one more'
        ' Socket.IO client whose "publish" emit makes the server call'
        ' `io.to(room).emit("pub", data)`, then ack: the cheapest path from a backend to a'
        f" room. soketi (`soketi start`, configured by `SOKETI_*` variables: one app, its"
        " cluster discovery kept on 127.0.0.1): subscribers speak Pusher's protocol on the"
        f" public channel `{SOKETI_CHANNEL}`; the backend publishes through the Pusher HTTP"
        " API, `POST /apps/<id>/events` signed with HMAC-SHA256. soketi closes the connection"
        " after each answer, so each publication has its own connection, one at a time (so"
        " that their order is soketi's); as on Redis, an answer comes before the"
        " deliveries, and up to"
        f" {s.hub_window} publications stay in flight until every subscriber has them."
        " soketi is installed with uWebSockets.js 20.30 from npm"
        " (`@trufflesuite/uws-js-unofficial`, the same library with binaries for Node 20):"
        " the version soketi names, v20.10.0, comes from GitHub and has none.",
        f"- Hub on Redis (hub, Redis, 2 nodes): each sample starts a fresh `redis-server`"
        f' ({redis_server_version()}; `--save "" --appendonly no`, a temporary directory, a'
        " free port on 127.0.0.1) and two hub nodes, `tidewire serve --no-demo --broker"
        " redis://127.0.0.1:PORT/0`, otherwise as above. The subscribers connect to node B;"
        " the backend connects and publishes to node A, so each publication goes node A →"
        " Redis (a Lua script gives it its offset and history entry, then PUBLISH) → node B"
        " → subscribers, and the publish reply comes from node A. The machine has"
        f" {os.cpu_count()} cores, so the processes share them: node B, which does the"
        f" fan-out as the lone hub does, is alone on core {s.server_cpu}; node A and"
        f" redis-server are pinned to core {s.client_cpu} with the load generator (they do"
        " per-publication work, the load generator per-delivery work). Their CPU and"
        ' waited shares have rows of their own; "server" is node B. So this row is not'
        " a measure of a deployment with a machine per node: it is the cost of the Redis"
        " path on the same cores, beside the memory broker.",
        '- Columns: median and min – max over the runs; "vs best": median / the best'
        ' library\'s median; "vs raw TCP": median / the raw TCP median; "CPU server /'
        ' load": share of one core used over the measured window by the server and by the'
        ' load generator (or the client, in the client scenario); "waited": share of that'
        " window their main thread was ready to run but waited for its core (/proc"
        " schedstat): other work on the machine, or the process's own threads (aiohttp"
        " compresses large messages in threads), took it.",
        "",
    ]
    return "\n".join(lines)


def machine_section(machine: dict[str, Any], elapsed: float) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    start = " ".join(f"{x:.2f}" for x in machine["load_start"])
    end = " ".join(f"{x:.2f}" for x in machine.get("load_end", ()))
    return (
        "## Machine\n\n"
        f"- {machine['date']}; {machine['cpu']}, {machine['cores']} cores;"
        f" Linux {machine['kernel']}\n"
        f"- Python {machine['python']}; {machine['gcc']}\n"
        f"- {versions}\n"
        f"- Load average at start: {start}; at end: {end}. Other work on the machine makes"
        " numbers noisy: compare ratios within one run rather than numbers across runs.\n"
        f"- The whole run took {elapsed / 60:.1f} minutes.\n"
    )


def markdown(
    scenarios: list[Scenario],
    summaries: dict[str, dict[str, Summary]],
    settings: Settings,
    machine: dict[str, Any],
    infos: dict[str, dict[str, Any]],
    elapsed: float,
    targets: str = "",
) -> str:
    """The whole of results.md; ``targets`` is a section put before the tables."""
    tables = "\n".join(scenario_table(sc, summaries[sc.key]) for sc in scenarios)
    preface = f"{targets}\n" if targets else ""
    return (
        "# tidewire benchmarks\n\n"
        "Made by `make bench` (bench/README.md says how). Servers: tidewire, picows,"
        " websockets, aiohttp, and a raw TCP echo on the same event loop as their upper"
        " limit; the hub against Socket.IO and soketi.\n\n"
        f"{preface}"
        "## Results\n\n"
        f"{tables}\n"
        f"{settings_section(settings, infos)}\n"
        f"{machine_section(machine, elapsed)}"
    )
