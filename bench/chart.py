"""The chart of a run: publish-to-receipt latency against offered rate, one line per system.

Drawn with matplotlib's Agg backend (no display needed) from the open-loop ladder rows: p99 as
a solid line, p50 dashed in the same colour, a cross where a system's ladder stopped because it
was saturated. The y axis is logarithmic: the rows differ by orders of magnitude.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.run import SYSTEMS, Run


def draw(run: Run, path: Path) -> None:
    """Write the PNG to ``path``."""
    figure, axes = plt.subplots(figsize=(11, 5.5), dpi=110)
    for index, letter in enumerate(SYSTEMS):
        rows = [row for row in run.rows if row.system == letter and row.shape == "ladder"]
        points = [
            (row.result.rate or 0.0, row.result.percentile(0.5), row.result.percentile(0.99))
            for row in rows
        ]
        points = [(x, p50, p99) for x, p50, p99 in points if p50 is not None and p99 is not None]
        if not points:
            continue
        colour = f"C{index}"
        rates = [x for x, _, _ in points]
        axes.plot(
            rates,
            [max(p99, 0.1) for _, _, p99 in points],
            marker="o",
            color=colour,
            label=f"{SYSTEMS[letter].name} p99",
        )
        axes.plot(
            rates,
            [max(p50, 0.1) for _, p50, _ in points],
            linestyle="--",
            marker=".",
            color=colour,
            alpha=0.7,
            label=f"{SYSTEMS[letter].name} p50",
        )
        if rows[-1].saturated:
            axes.plot(rates[-1], max(points[-1][2], 0.1), marker="x", color="black", markersize=12)
    axes.set_yscale("log")
    axes.set_xlabel("offered deliveries/s (open loop)")
    axes.set_ylabel("publish → receipt latency, ms (from the scheduled send time)")
    axes.set_title(
        f"Latency against offered rate, {run.options.step_seconds:g} s per step "
        f"({run.started_at:%Y-%m-%d}; x: ladder stopped, saturated)",
        fontsize=10,
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
