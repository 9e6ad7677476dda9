"""``python -m bench``: run the scenarios, then write results.md, .json and .png.

``--quick`` (or ``BENCH_QUICK=1``) is a smoke run: one repetition, short windows.
``--only echo-64,fanout`` runs the scenarios whose keys start with those words.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import chart, report, stats, targets
from bench.load import LOADGEN
from bench.procs import REPO, BenchError
from bench.scenarios import Sample, Scenario, all_scenarios
from bench.settings import Settings

OPEN_FILES = 65536  # the idle scenario holds thousands of sockets on each side


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("BENCH_QUICK")))
    parser.add_argument("--reps", type=int)
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"))
    parser.add_argument("--only", help="comma-separated prefixes of scenario keys")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--output", type=Path, default=REPO / "bench", help="where results go")
    return parser.parse_args(argv)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def raise_open_files() -> None:
    """Raise ``ulimit -n`` for this run; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < OPEN_FILES:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
            return
        except (ValueError, OSError):
            pass  # not root: go as high as allowed
    target = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))


def preflight(settings: Settings) -> None:
    if not LOADGEN.exists():
        raise SystemExit(f"{LOADGEN} is missing: build it with `make bench`")
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is missing (Debian package util-linux)")
    cores = os.cpu_count() or 1
    if max(settings.server_cpu, settings.client_cpu) >= cores:
        raise SystemExit(f"pinning needs cores {settings.server_cpu} and {settings.client_cpu}")


def measure(scenario: Scenario, name: str, settings: Settings) -> Sample:
    try:
        return scenario.measure(name, settings)
    except (BenchError, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        return Sample(None, note=f"failed: {exc}"[:160])


def run_scenario(scenario: Scenario, settings: Settings) -> dict[str, list[Sample]]:
    """Every repetition goes through all contenders in turn: A B C A B C ..."""
    samples: dict[str, list[Sample]] = {name: [] for name in scenario.contenders}
    for rep in range(settings.reps):
        for name in scenario.contenders:
            sample = measure(scenario, name, settings)
            samples[name].append(sample)
            shown = report.fmt(sample.value) if sample.value is not None else sample.note
            details = report.sample_details(scenario, sample)
            progress(f"  {rep + 1}/{settings.reps} {name:<13} {shown} {scenario.unit}{details}")
    return samples


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = Settings.quick_run() if args.quick else Settings()
    settings = base.with_overrides(
        reps=args.reps, warmup=args.warmup, duration=args.duration, loop=args.loop
    )
    scenarios = all_scenarios(settings)
    if args.only:
        prefixes = tuple(p.strip() for p in args.only.split(",") if p.strip())
        scenarios = [s for s in scenarios if s.key.startswith(prefixes)]
    if args.list:
        for scenario in scenarios:
            print(f"{scenario.key:<22} {scenario.title}")
        return 0
    if not scenarios:
        raise SystemExit("no scenario matches --only")
    preflight(settings)
    raise_open_files()

    machine = report.machine_info()
    started = time.monotonic()
    all_samples: dict[str, dict[str, list[Sample]]] = {}
    infos: dict[str, dict[str, Any]] = {}
    for scenario in scenarios:
        progress(f"== {scenario.title} ({scenario.unit})")
        all_samples[scenario.key] = run_scenario(scenario, settings)
        for name, samples in all_samples[scenario.key].items():
            for sample in samples:
                infos.setdefault(name, {}).update(sample.info or {})
    elapsed = time.monotonic() - started
    machine["load_end"] = os.getloadavg()

    summaries = {
        key: {name: stats.summarize(name, s) for name, s in per_lib.items()}
        for key, per_lib in all_samples.items()
    }
    text = report.markdown(
        scenarios,
        summaries,
        settings,
        machine,
        infos,
        elapsed,
        targets.section(scenarios, summaries),
    )
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    raw = {
        "settings": asdict(settings),
        "machine": machine,
        "samples": {
            key: {name: [asdict(s) for s in samples] for name, samples in per_lib.items()}
            for key, per_lib in all_samples.items()
        },
    }
    (out / "results.json").write_text(json.dumps(raw, indent=1) + "\n")
    chart.draw(scenarios, summaries, out / "results.png")
    print(text)
    progress(f"wrote {out / 'results.md'}, results.json, results.png in {elapsed / 60:.1f} min")
    failed = sum(s.value is None for per in all_samples.values() for ss in per.values() for s in ss)
    return 1 if failed else 0
