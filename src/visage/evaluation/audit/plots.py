"""The audit's figures (matplotlib, written as PNG).

- ``<dataset>_attributes.png`` / ``<dataset>_matching.png`` (the measures at a Similarity
  threshold): one panel per measure, a bar per cell with its 95 % interval (exact binomial for rates, bootstrap for means);
  a cell with no errors shows "0/N" and an error bar up to its 95 % upper bound, and
  the FMR panels mark the rate the calibration promises.
- ``<dataset>_scores.png``: the cosine scores of impostor (and genuine) pairs per
  cell, on a log scale, with the raw scores of the Similarity thresholds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from visage.evaluation.audit.run import BINS, Audit, DatasetAudit, MeasureInfo
from visage.evaluation.intervals import Rate


def write_plots(audit: Audit, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset in audit.datasets:
        attributes = [m for m in dataset.measures if m.threshold is None]
        matching = [m for m in dataset.measures if m.threshold is not None]
        if attributes:
            written.append(_bars(audit, dataset, attributes, folder / f"{dataset.key}_attributes.png"))
        if matching:
            written.append(_bars(audit, dataset, matching, folder / f"{dataset.key}_matching.png"))
        if any(c.histograms for c in dataset.cells):
            written.append(_scores(audit, dataset, folder / f"{dataset.key}_scores.png"))
    return written


def _bars(audit: Audit, dataset: DatasetAudit, measures: list[MeasureInfo], path: Path) -> Path:
    names = [c.name for c in dataset.cells]
    columns = min(3, len(measures))
    rows = -(-len(measures) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    x = np.arange(len(names))
    for ax, info in zip(axes.flat, measures):
        values = [c.measures[info.key] for c in dataset.cells]
        centre = np.array([v.value for v in values]) * info.scale
        low = np.array([v.interval[0] for v in values]) * info.scale
        high = np.array([v.interval[1] for v in values]) * info.scale
        ax.bar(x, np.nan_to_num(centre), color="#4c72b0", width=0.7)
        ax.errorbar(
            x,
            np.nan_to_num(centre),
            yerr=[np.nan_to_num(centre - low), np.nan_to_num(high - centre)],
            fmt="none",
            ecolor="black",
            capsize=2,
            linewidth=0.8,
        )
        for xi, v in zip(x, values):
            if isinstance(v, Rate) and v.events == 0 and v.total > 0 and not info.higher_is_better:
                ax.annotate(f"0/{v.total:,}", (xi, v.interval[1]), fontsize=6, ha="center", va="bottom", rotation=90)
        if info.false_match and info.threshold is not None:
            predicted = audit.predicted(info.threshold)
            if predicted is not None:
                ax.axhline(predicted, color="#c44e52", linestyle="--", linewidth=1, label=f"promised {predicted:.1e}")
                ax.legend(fontsize=7, loc="upper right")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_title(info.label + (f" ({info.unit.strip()})" if info.unit else ""), fontsize=9)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    for ax in list(axes.flat)[len(measures) :]:
        ax.axis("off")
    figure.suptitle(f"{dataset.title}: 95 % intervals", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _scores(audit: Audit, dataset: DatasetAudit, path: Path) -> Path:
    centres = (BINS[1:] + BINS[:-1]) / 2
    figure, ax = plt.subplots(figsize=(8, 4.2))
    colours = plt.get_cmap("tab10")
    for i, cell in enumerate(dataset.cells):
        for kind, histogram in cell.histograms.items():
            density = histogram / max(int(histogram.sum()), 1)
            shown = np.where(density > 0, density, np.nan)
            style = ":" if kind == "genuine" else "-"
            label = f"{cell.name} {kind}" if "genuine" in cell.histograms else cell.name
            ax.step(centres, shown, where="mid", linestyle=style, color=colours(i % 10), linewidth=1, label=label)
    for threshold in audit.thresholds:
        raw = audit.raw_threshold(threshold)
        if np.isfinite(raw):
            ax.axvline(raw, color="grey", linestyle="--", linewidth=0.8)
            ax.annotate(
                f"S={threshold:g}",
                (raw, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                rotation=90,
                va="top",
                ha="right",
            )
    ax.set_yscale("log")
    ax.set_xlabel("cosine score of the pair")
    ax.set_ylabel("share of pairs per 0.01 bin")
    ax.set_title(f"{dataset.title}: pair scores per cell", fontsize=10)
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
