"""The speed targets tidewire set itself, checked against one run's medians.

Each target is a ratio of medians of the same run: tidewire's row over a rival's
row in one scenario (for the hub, of one of its metrics). results.md shows them
first, met or not, so that a reader doesn't have to work the ratios out of the
tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import stats
from bench.report import fmt_ratio
from bench.scenarios import (
    ASGI_DEFAULT,
    ASGI_OURS,
    LABELS,
    LIMIT,
    NO_SPEEDUPS_RIVAL,
    Scenario,
)
from bench.stats import Summary

# The rows held to the targets: the async API, and the callback one.
HELD = ("tidewire", "tidewire-cb")


@dataclass(frozen=True)
class Target:
    scenario: str  # a scenario key
    rival: str  # the row tidewire's row is divided by
    bound: float  # the ratio to reach
    what: str
    lower_is_better: bool = False  # the ratio must stay at or under the bound
    ours: str = ""  # the one row held to it; "": the rows of HELD
    metric: str = ""  # a key of Summary.values, for scenarios with several metrics
    strict: bool = False  # lower_is_better: strictly under the bound

    @property
    def needed(self) -> str:
        sign = ("<" if self.strict else "≤") if self.lower_is_better else "≥"
        return f"{sign} {fmt_ratio(self.bound)}"

    def met(self, ratio: float) -> bool:
        if self.lower_is_better:
            return ratio < self.bound if self.strict else ratio <= self.bound
        return ratio >= self.bound


TARGETS = (
    Target("echo-64-64", "picows", 1.2, "echo 64 B × 64 against picows"),
    Target("echo-64-64", "websockets", 3.0, "echo 64 B × 64 against websockets"),
    Target("echo-64-64", "rawtcp", 0.85, "echo 64 B × 64 against raw TCP"),
    Target("echo-1m-16", "picows", 1.0, "echo 1 MiB × 16 against picows"),
    Target("connect", "websockets", 2.0, "new connections against websockets"),
    Target(
        "idle-memory",
        "websockets",
        0.5,
        "memory per idle connection against websockets",
        lower_is_better=True,
    ),
    Target("fanout", "websockets", 3.0, "fan-out against websockets' broadcast()"),
    Target(
        "http-api",
        "http-close",
        3.0,
        "hub HTTP API, 16 publications in flight: one kept connection against one each",
        ours="http-keep",
    ),
    # tidewire as uvicorn's WebSocket engine (issue 21), the same ASGI app for all.
    Target("asgi-echo-64-64", ASGI_DEFAULT, 2.0, "ASGI echo 64 B × 64 against uvicorn's"
           " default engine", ours=ASGI_OURS),
    Target("asgi-echo-64-64", "granian", 1.0, "ASGI echo 64 B × 64 against granian",
           ours=ASGI_OURS),
    Target("asgi-echo-16k-16", "granian", 1.0, "ASGI echo 16 KiB × 16 against granian",
           ours=ASGI_OURS),
    Target("asgi-fanout", "granian", 1.0, "ASGI fan-out against granian", ours=ASGI_OURS),
    Target("asgi-idle-memory", ASGI_DEFAULT, 0.5, "ASGI memory per idle connection against"
           " uvicorn's default engine", lower_is_better=True, ours=ASGI_OURS),
)

# The hub against the Node push servers users pick instead, and on Redis against
# itself on the memory broker (issue 22).
HUB_TARGETS = (
    Target("hub", "socketio", 3.0, "deliveries/s against Socket.IO", ours="hub",
           metric="deliveries"),
    Target("hub", "soketi", 3.0, "deliveries/s against soketi", ours="hub",
           metric="deliveries"),
    Target("hub", "socketio", 1.0, "latency p99 against Socket.IO", lower_is_better=True,
           ours="hub", metric="p99", strict=True),
    Target("hub", "soketi", 1.0, "latency p99 against soketi", lower_is_better=True,
           ours="hub", metric="p99", strict=True),
    Target("hub", "hub", 0.9, "publications/s against the memory hub",
           ours="hub-redis", metric="publications"),
)


def _ratio(ours: Summary | None, rival: Summary | None, metric: str = "") -> float | None:
    def value(s: Summary | None) -> float | None:
        if s is None:
            return None
        return s.values.get(metric, (None,))[0] if metric else s.median

    return stats.ratio(value(ours), value(rival))


def _cell(target: Target, ours: Summary | None, rival: Summary | None) -> str:
    r = _ratio(ours, rival, target.metric)
    if r is None:
        return "—"
    met = target.met(r)
    shown = fmt_ratio(r)
    if shown == fmt_ratio(target.bound) and not met:
        shown = f"{r:.3f}×"  # "1.00× ✗" would puzzle: show how close it came
    return f"{shown} {'✓' if met else '✗'}"


def section(scenarios: list[Scenario], summaries: dict[str, dict[str, Summary]]) -> str:
    """The targets of the scenarios in this run, met (✓) or missed (✗)."""
    ran = {sc.key for sc in scenarios}
    held, own = [], []
    for t in TARGETS:
        if t.scenario in ran and t.ours:
            rows = summaries[t.scenario]
            cell = _cell(t, rows.get(t.ours), rows.get(t.rival))
            own.append(f"| {t.what} | {t.needed} | {cell} |")
        elif t.scenario in ran:
            rows = summaries[t.scenario]
            cells = " | ".join(_cell(t, rows.get(n), rows.get(t.rival)) for n in HELD)
            limit = None if t.rival == LIMIT else _ratio(rows.get(LIMIT), rows.get(t.rival))
            held.append(f"| {t.what} | {t.needed} | {cells} | {fmt_ratio(limit)} |")
    twins = []
    for sc in scenarios:
        rows = summaries[sc.key]
        if "tidewire-py" in rows and NO_SPEEDUPS_RIVAL in rows:
            ahead = Target(sc.key, NO_SPEEDUPS_RIVAL, 1.0, "", not sc.higher_is_better)
            cell = _cell(ahead, rows["tidewire-py"], rows[NO_SPEEDUPS_RIVAL])
            twins.append(f"| {sc.title} | {cell} |")
    hub = []
    for t in HUB_TARGETS:
        if t.scenario in ran:
            rows = summaries[t.scenario]
            cell = _cell(t, rows.get(t.ours), rows.get(t.rival))
            hub.append(f"| {LABELS[t.ours]}: {t.what} | {t.needed} | {cell} |")
    lines = ["## Targets", ""]
    if held:
        lines += [
            "Ratios of medians in this run; ✓ met, ✗ missed. The last column is the raw TCP"
            " echo on the same loop, no WebSocket at all, held to the same rival: a target"
            " above it is beyond what any server on this loop reaches.",
            "",
            "| target | needed | " + " | ".join(LABELS[n] for n in (*HELD, LIMIT)) + " |",
            "|---|---|" + "---:|" * (len(HELD) + 1),
            *held,
            "",
        ]
    if own:
        lines += [
            "Targets of one row against another of the same scenario:",
            "",
            "| target | needed | ratio |",
            "|---|---|---:|",
            *own,
            "",
        ]
    if hub:
        lines += [
            "The hub, 1,000 subscribers on one core (ratios of the medians of its table):",
            "",
            "| target | needed | ratio |",
            "|---|---|---:|",
            *hub,
            "",
        ]
    if twins:
        lines += [
            f"With speedups off, ahead of {NO_SPEEDUPS_RIVAL} in every scenario:",
            "",
            f"| scenario | {LABELS['tidewire-py']} / {NO_SPEEDUPS_RIVAL} |",
            "|---|---:|",
            *twins,
            "",
        ]
    return "\n".join(lines) if held or own or twins or hub else ""
