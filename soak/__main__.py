"""``python -m soak``: the hub under a long steady load, on each broker.

Prints a report per broker and writes every sample to a JSON file; exits with
status 1 if any criterion failed (see ``report.py``), 2 if the soak itself
couldn't run (a process didn't start, a subscriber couldn't subscribe).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .nodes import NodeError
from .report import judge, render
from .run import BROKERS, Plan, soak
from .swarm import SwarmError

__all__ = ["main"]

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    plan = Plan()
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--broker", choices=(*BROKERS, "all"), default="all",
                        help="which broker to soak (default: memory, then redis)")
    parser.add_argument("--subscribers", type=_positive(int), default=plan.subscribers,
                        metavar="N", help=f"default {plan.subscribers:,}")
    parser.add_argument("--publications", type=_positive(int), default=plan.publications,
                        metavar="N", help=f"default {plan.publications:,}")
    parser.add_argument("--rate", type=_positive(float), default=plan.rate,
                        metavar="PER_SECOND", help=f"publications per second (default "
                        f"{plan.rate:g})")
    parser.add_argument("--channels", type=_positive(int), default=plan.channels,
                        metavar="N", help=f"channels every subscriber subscribes to; "
                        f"publications go round robin (default {plan.channels})")
    parser.add_argument("--size", type=_positive(int), default=plan.size, metavar="BYTES",
                        help=f"JSON data of a publication (default {plan.size})")
    parser.add_argument("--compression", action=argparse.BooleanOptionalAction,
                        default=plan.compression, help="subscribers ask for permessage-deflate "
                        "(default on)")
    parser.add_argument("--warmup", type=float, default=plan.warmup, metavar="SHARE",
                        help=f"share of the publications before RSS is judged "
                        f"(default {plan.warmup:g})")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help="where the samples go (default soak/results.json)")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < 1:
        parser.error("--warmup must be between 0 and 1")
    return args


async def run_all(plan: Plan, brokers: list[str]) -> list[dict[str, Any]]:
    results = []
    for broker in brokers:
        with tempfile.TemporaryDirectory(prefix=f"soak-{broker}-") as directory:
            result = await soak(plan, broker, Path(directory))
        judge(result)
        print(render(result) + "\n", flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(subscribers=args.subscribers, publications=args.publications, rate=args.rate,
                channels=args.channels, size=args.size, compression=args.compression,
                warmup=args.warmup)
    brokers = list(BROKERS) if args.broker == "all" else [args.broker]
    print(f"soak: {plan.subscribers:,} subscribers, {plan.publications:,} publications at "
          f"{plan.rate:g}/s, on {' then '.join(brokers)}\n", flush=True)
    import uvloop

    try:
        results = uvloop.run(run_all(plan, brokers))
    except (NodeError, SwarmError, OSError) as exc:
        print(f"soak: couldn't run: {exc}", file=sys.stderr)
        return 2
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps({"runs": results}, indent=1) + "\n")
    os.replace(tmp, args.json)
    failed = [r["broker"] for r in results if r["failures"]]
    print(f"soak: {'FAILED on ' + ', '.join(failed) if failed else 'passed'}; "
          f"samples in {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
