"""results.png: one bar chart per scenario, medians with min–max whiskers."""

from __future__ import annotations

import math
from pathlib import Path

from bench.report import fmt
from bench.scenarios import LABELS, LIMIT, REFERENCES, Scenario
from bench.stats import Summary

COLORS = {
    "tidewire": "#1f6fb4",
    "hub": "#1f6fb4",
    "hub-redis": "#5b9bd5",
    "http-keep": "#1f6fb4",
    "http-keep-1": "#5b9bd5",
}
OTHER = "#9a9a9a"


def draw(scenarios: list[Scenario], summaries: dict[str, dict[str, Summary]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    rows = max(1, math.ceil(len(scenarios) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(16, 3.0 * rows), squeeze=False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        rows_of = summaries[scenario.key]
        names = [n for n in scenario.contenders if n not in REFERENCES]
        medians = [rows_of[n].median or 0.0 for n in names]
        errors = [
            [(rows_of[n].median or 0.0) - (rows_of[n].low or 0.0) for n in names],
            [(rows_of[n].high or 0.0) - (rows_of[n].median or 0.0) for n in names],
        ]
        bars = ax.barh(
            [LABELS[n] for n in names],
            medians,
            xerr=errors,
            color=[COLORS.get(n, OTHER) for n in names],
            capsize=3,
        )
        ax.bar_label(bars, labels=[fmt(rows_of[n].median) for n in names], fontsize=7, padding=4)
        ax.margins(x=0.15)
        ax.invert_yaxis()
        for ref, style in ((LIMIT, "--"), ("loadgen", ":")):
            summary = rows_of.get(ref)
            if summary is not None and summary.median is not None:
                ax.axvline(summary.median, color="#c0392b", linestyle=style, label=LABELS[ref])
                ax.legend(loc="lower right", fontsize=7)
        better = "higher" if scenario.higher_is_better else "lower"
        ax.set_title(f"{scenario.title}\n{scenario.unit}, {better} is better", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(scenarios) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
