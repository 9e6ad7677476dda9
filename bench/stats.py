"""Samples to summaries: medians with min–max, and ratios to the best and the limit."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.scenarios import LIMIT, REFERENCES, Sample


@dataclass
class Summary:
    name: str
    median: float | None
    low: float | None
    high: float | None
    runs: int  # samples measured
    failed: int  # samples that failed
    server_cpu: float | None
    load_cpu: float | None
    server_wait: float | None
    load_wait: float | None
    notes: list[str] = field(default_factory=list)
    # Sample.values by key: (median, min, max) over the samples that have it.
    values: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(name: str, samples: list[Sample]) -> Summary:
    values = [s.value for s in samples if s.value is not None]
    ok = [s for s in samples if s.value is not None]
    notes = list(dict.fromkeys(s.note for s in samples if s.note))  # unique, in order
    return Summary(
        name=name,
        median=statistics.median(values) if values else None,
        low=min(values) if values else None,
        high=max(values) if values else None,
        runs=len(values),
        failed=len(samples) - len(values),
        server_cpu=_median(s.server_cpu for s in ok),
        load_cpu=_median(s.load_cpu for s in ok),
        server_wait=_median(s.server_wait for s in ok),
        load_wait=_median(s.load_wait for s in ok),
        notes=notes,
        values=_spread(s.values for s in ok if s.values),
    )


def _spread(samples: Iterable[dict[str, float]]) -> dict[str, tuple[float, float, float]]:
    by_key: dict[str, list[float]] = {}
    for values in samples:
        for key, value in values.items():
            by_key.setdefault(key, []).append(value)
    return {k: (statistics.median(v), min(v), max(v)) for k, v in by_key.items()}


def best(summaries: dict[str, Summary], higher_is_better: bool) -> Summary | None:
    """The best library by median; the raw TCP limit and the C loadgen don't compete."""
    measured = [
        s for name, s in summaries.items() if name not in REFERENCES and s.median is not None
    ]
    if not measured:
        return None
    key = (lambda s: s.median) if higher_is_better else (lambda s: -s.median)
    return max(measured, key=key)


def ratio(value: float | None, to: float | None) -> float | None:
    if value is None or to is None or to == 0:
        return None
    return value / to


def best_peer(
    summaries: dict[str, Summary], names: tuple[str, ...], higher_is_better: bool
) -> Summary | None:
    """The best library other than those ``names`` (one library's rows)."""
    others = {n: s for n, s in summaries.items() if n not in names}
    return best(others, higher_is_better)


def limit(summaries: dict[str, Summary]) -> Summary | None:
    return summaries.get(LIMIT)
