"""The soak's verdict and its report.

``judge()`` checks a run's result against the criteria and adds what it
derived (RSS and descriptor figures per process) and every failure, each
saying what was wrong. ``render()`` writes the run as a table, for people.

The criteria:

- every publication reached every subscriber once, in offset order, with
  the data its offset says; no subscriber was closed by the hub; every
  publish was accepted, offsets consecutive;
- the RSS of each process, from the first sample after the warm-up to the
  mean of the last ``TAIL`` samples before the last delivery, grows less
  than ``MAX_GROWTH``; at least ``MIN_WINDOW`` samples are judged;
- once the clients left, each hub node's descriptors are back to their
  start (``run.fd_problems``), and it holds no connection, subscription,
  listened channel or presence entry, and closed no one as a slow consumer
  or an interrupted stream (``nodes.STATE_METRICS``);
- each process exits with status 0 and logs no traceback.
"""

from __future__ import annotations

from typing import Any

from .run import fd_problems

__all__ = ["judge", "render", "MAX_GROWTH"]

MAX_GROWTH = 0.05
MIN_WINDOW = 5  # samples after the warm-up, at one a second
TAIL = 3  # samples averaged for the RSS at the end


def _window(result: dict[str, Any]) -> list[dict[str, Any]]:
    marks = result["marks"]
    warm, delivered = marks.get("warm"), marks.get("delivered")
    if warm is None or delivered is None:
        return []
    return [s for s in result["samples"] if warm <= s["t"] <= delivered]


def _figures(result: dict[str, Any], name: str) -> dict[str, Any]:
    samples = result["samples"]
    window = _window(result)
    rss = [s["rss"][name] for s in window]
    fds = [s["fds"][name] for s in samples]
    out: dict[str, Any] = {
        "rss_start": samples[0]["rss"][name],
        "rss_left": samples[-1]["rss"][name],
        "fds_start": fds[0],
        "fds_peak": max(fds),
        "fds_end": fds[-1],
        "window": len(window),
    }
    if rss:
        end = sum(rss[-TAIL:]) / len(rss[-TAIL:])
        out |= {
            "rss_warm": rss[0],
            "rss_end": end,
            "rss_max": max(rss),
            "growth": end / rss[0] - 1,
            "max_growth": max(rss) / rss[0] - 1,
        }
    return out


def judge(result: dict[str, Any]) -> list[str]:
    """Every way ``result`` misses the criteria (none: it passed); also
    stored in ``result["failures"]``, with each process's figures."""
    failures: list[str] = result["failures"]
    tally, plan = result["tally"], result["plan"]
    if tally["delivered"] != result["expected"]:
        failures.append(f"delivered {tally['delivered']:,} of {result['expected']:,}")
    for kind in ("lost", "reordered", "duplicates", "mismatched", "closed_early"):
        if tally[kind]:
            failures.append(f"{tally[kind]:,} {kind.replace('_', ' ')}")
    for kind, quoted in tally["examples"].items():
        if kind in ("unexpected", "leave"):
            failures.append(f"{kind} messages: {len(quoted)} or more")
    pub = result["publisher"]
    if pub["failures"] or pub["replies"] != plan["publications"]:
        failures.append(f"publisher: {pub['replies']:,} replies to {plan['publications']:,} "
                        f"publishes, {pub['failures']} failures")
    for name, proc in result["processes"].items():
        figures = _figures(result, name)
        proc.update(figures)
        if figures["window"] < MIN_WINDOW:
            failures.append(f"{name}: {figures['window']} RSS samples after the warm-up, "
                            f"fewer than {MIN_WINDOW}: publish more, or more slowly")
        elif figures["growth"] >= MAX_GROWTH:
            failures.append(f"{name}: RSS grew {figures['growth']:.1%} after the warm-up "
                            f"({figures['rss_warm'] / 2**20:.1f} -> "
                            f"{figures['rss_end'] / 2**20:.1f} MiB), over {MAX_GROWTH:.0%}")
        for key, value in proc.get("state", {}).items():
            if value:
                failures.append(f"{name}: {key.replace('_', ' ')} is {value} after the "
                                "clients left, not 0")
        if "fd_kinds" in proc:
            for problem in fd_problems(proc["fd_kinds"]["start"], proc["fd_kinds"]["end"]):
                failures.append(f"{name}: descriptors not back after the clients left: {problem}")
        if proc.get("exit") != 0:
            failures.append(f"{name}: exit status {proc.get('exit')}")
        if proc.get("tracebacks"):
            failures.append(f"{name}: {proc['tracebacks']} tracebacks in its log")
    return failures


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def render(result: dict[str, Any]) -> str:
    """The run as text: a summary table, one row per process, the verdict."""
    plan, tally, pub, times = result["plan"], result["tally"], result["publisher"], result["times"]
    broker = "memory broker, 1 node" if result["broker"] == "memory" else (
        "Redis, 2 nodes (publisher on node A, subscribers on node B)")
    lines = [
        f"## Soak: {broker}",
        "",
        "| | |",
        "|---|---:|",
        f"| subscribers | {plan['subscribers']:,} (each on {plan['channels']} channels) |",
        f"| publications | {plan['publications']:,} of {plan['size']} B, round robin |",
        f"| publication rate | {pub['rate']:.1f}/s (asked {plan['rate']:g}/s; held back "
        f"{pub['held']:.1f} s in all while deliveries trailed by {plan['window']} "
        "publications) |",
        f"| deliveries due | {result['expected']:,} |",
        f"| delivered | {tally['delivered']:,} |",
        f"| lost | {tally['lost']:,} |",
        f"| reordered | {tally['reordered']:,} |",
        f"| duplicates | {tally['duplicates']:,} |",
        f"| data not matching its offset | {tally['mismatched']:,} |",
        f"| subscribers closed by the hub | {tally['closed_early']:,} |",
        f"| publishes refused or out of order | {pub['failures']:,} |",
        f"| compression | {'permessage-deflate' if plan['compression'] else 'off'} |",
        f"| duration | {times['total']:.1f} s: subscribe {times['subscribe']:.1f} s, "
        f"publish {times['publish']:.1f} s, last delivery "
        f"{times['last_delivery']:+.2f} s after the last reply, "
        f"nodes back to their start {times['settle']:.2f} s after the clients left |",
        f"| longest gap between samples | {times['longest_gap']:.1f} s (the soak's own process "
        "starved of CPU if well over 1 s) |",
        "",
        "| process | RSS start (MiB) | after warm-up | end | max | growth | max growth "
        "| samples judged | clients left | fds start | peak | end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, proc in result["processes"].items():
        lines.append(
            f"| {name} | {_mib(proc['rss_start'])} | {_mib(proc.get('rss_warm'))} | "
            f"{_mib(proc.get('rss_end'))} | {_mib(proc.get('rss_max'))} | "
            f"{_pct(proc.get('growth'))} | {_pct(proc.get('max_growth'))} | "
            f"{proc['window']} | {_mib(proc['rss_left'])} | {proc['fds_start']} | "
            f"{proc['fds_peak']} | {proc['fds_end']} |"
        )
    kinds = [(n, p["fd_kinds"]) for n, p in result["processes"].items() if "fd_kinds" in p]
    lines.append("")
    for name, k in kinds:
        start, end = k["start"], k["end"]
        lines.append(
            f"- {name} descriptors, start -> after the clients left: clients "
            f"{start['clients']} -> {end['clients']}, listening {start['listening']} -> "
            f"{end['listening']}, Redis connections {start['redis']} -> {end['redis']}, "
            f"other {start['other']} -> {end['other']}"
        )
    for name, proc in result["processes"].items():
        if "state" in proc:
            held = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in proc["state"].items())
            lines.append(f"- {name} after the clients left: {held}")
    examples = [(kind, text) for kind, quoted in tally["examples"].items() for text in quoted]
    examples += [("publisher", text) for text in pub["examples"]]
    if examples:
        lines += ["", "First examples of what went wrong:"]
        lines += [f"- {kind}: {text}" for kind, text in examples]
    failures = result["failures"]
    lines += ["", "**PASS**" if not failures else "**FAIL**"]
    lines += [f"- {failure}" for failure in failures]
    for name, proc in result["processes"].items():
        if proc.get("log"):
            lines += ["", f"{name}'s log ends:", "```", proc["log"].rstrip(), "```"]
    return "\n".join(lines)
