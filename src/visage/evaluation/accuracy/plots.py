"""PNG figures of the LFW runs and docs/accuracy.md: ROC and DET curves, the Similarity maps, the held-out check.

matplotlib is imported inside each function (Agg backend, no display), so
importing this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from visage.engine.similarity import SimilarityMap
from visage.evaluation.accuracy.curves import Curve
from visage.evaluation.calibration.similarity_map import FMR_PER_POINT, LINEAR_FMR, LINEAR_FROM, fmr_for_similarity

MARKED_SIMILARITIES = (80.0, 99.0)  # drawn as vertical lines at their FMR


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _marks(axes: Any) -> None:
    for similarity in MARKED_SIMILARITIES:
        fmr = fmr_for_similarity(similarity)
        axes.axvline(fmr, color="grey", linestyle=":", linewidth=0.8)
        axes.annotate(
            f"Similarity {similarity:g}",
            (fmr, 0.02),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            color="grey",
            ha="right",
        )


def roc_plot(curves: Mapping[str, Curve], path: Path, title: str) -> Path:
    """TAR (1 - FNMR) against FAR on a log axis, one line per labelled curve."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for label, curve in curves.items():
        keep = curve.fmr > 0
        axes.plot(curve.fmr[keep], 1 - curve.fnmr[keep], label=label, linewidth=1.2)
    axes.set_xscale("log")
    return _finish_rate_plot(
        figure,
        axes,
        path,
        title,
        "false accept rate (FAR = FMR)",
        "true accept rate (TAR = 1 - FNMR)",
        legend="lower right",
    )


def det_plot(curves: Mapping[str, Curve], path: Path, title: str) -> Path:
    """FNMR against FMR, both on log axes (a DET curve: lower is better)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for label, curve in curves.items():
        keep = (curve.fmr > 0) & (curve.fnmr > 0)  # a zero has no place on a log axis
        axes.plot(curve.fmr[keep], curve.fnmr[keep], label=label, linewidth=1.2)
    axes.set_xscale("log")
    axes.set_yscale("log")
    if not any(np.any((c.fmr > 0) & (c.fnmr > 0)) for c in curves.values()):
        axes.set_ylim(1e-4, 1.0)  # no non-match at all: an empty plot, but a valid one
    return _finish_rate_plot(
        figure, axes, path, title, "false match rate (FMR)", "false non-match rate (FNMR)", legend="upper right"
    )


def _finish_rate_plot(figure: Any, axes: Any, path: Path, title: str, xlabel: str, ylabel: str, legend: str) -> Path:
    """Labels, grid, the calibrated thresholds' marks and the legend of a ROC or DET plot; saved."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    _marks(axes)
    axes.legend(fontsize=8, loc=legend)
    return _save(figure, path)


def similarity_plot(maps: Mapping[str, SimilarityMap], path: Path) -> Path:
    """Each model's map from cosine to Similarity, and where LFW's pairs land on it.

    Left, the maps, with the line at Similarity 50 where the scale turns from graded on log
    FMR (below) to linear in FMR (above). Right, the share of same-person and of
    different-person pairs in each band of Similarity, from the map's metadata.
    """
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11.0, 4.4))
    for name, mapping in maps.items():
        left.plot(mapping.raw, mapping.similarity, label=name, linewidth=1.2)
    lowest = min(float(m.raw[1]) for m in maps.values())
    left.set_xlim(max(lowest - 0.05, -1.0), 1.0)
    left.axhline(LINEAR_FROM, color="grey", linestyle=":", linewidth=0.8)
    left.annotate(
        f"linear in FMR: (100 - S) x {FMR_PER_POINT:g}",
        (0.02, LINEAR_FROM + 2),
        xycoords=("axes fraction", "data"),
        fontsize=7,
        color="grey",
    )
    left.annotate(
        f"graded on log FMR: 1 at 0, {LINEAR_FMR:g} at {LINEAR_FROM:g}",
        (0.02, LINEAR_FROM - 5),
        xycoords=("axes fraction", "data"),
        fontsize=7,
        color="grey",
    )
    left.set_xlabel("raw score (cosine)")
    left.set_ylabel("Similarity")
    left.set_title("Similarity maps", fontsize=10)
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    for (name, mapping), color in zip(maps.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        histogram = mapping.metadata.get("similarity_histogram")
        if not histogram:
            continue
        edges = np.array(histogram["edges"])
        for kind, style in (("genuine", "-"), ("impostor", "--")):
            counts = np.array(histogram[kind], dtype=np.float64)
            right.stairs(counts / counts.sum(), edges, color=color, linestyle=style, label=f"{name}, {kind}")
    right.axvline(LINEAR_FROM, color="grey", linestyle=":", linewidth=0.8)
    right.set_yscale("log")
    right.set_xlim(0, 100)
    right.set_xlabel("Similarity")
    right.set_ylabel("share of the pairs (log)")
    right.set_title("LFW pairs by Similarity: same person (solid), different people (dashed)", fontsize=10)
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7, loc="upper center", ncol=2)
    return _save(figure, path)


def heldout_plot(checks: Mapping[str, list[dict[str, Any]]], path: Path) -> Path:
    """Observed FMR on the held-out people (95% interval) against the FMR the map predicts."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.8))
    for shift, (name, rows) in zip((0.94, 1.0, 1.06), checks.items()):
        predicted = np.array([r["predicted_fmr"] for r in rows])
        observed = np.array([r["observed_fmr"] for r in rows])
        low = np.array([r["observed_fmr_95ci"][0] for r in rows])
        high = np.array([r["observed_fmr_95ci"][1] for r in rows])
        shown = np.maximum(observed, 1e-9)
        axes.errorbar(
            predicted * shift,
            shown,
            yerr=[shown - np.maximum(low, 1e-9), high - shown],
            fmt="o",
            markersize=3,
            capsize=2,
            label=name,
        )
    plotted = [r["predicted_fmr"] for rows in checks.values() for r in rows]
    line = np.array([min(plotted) / 2, max(plotted) * 2])  # under every point plotted
    axes.plot(line, line, color="black", linewidth=0.8, label="observed = predicted")
    axes.fill_between(line, line / 2, line * 2, color="grey", alpha=0.2, label="within a factor of 2")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("predicted FMR (from the Similarity threshold)")
    axes.set_ylabel("observed FMR on the held-out people")
    axes.set_title("Calibration fitted on half the people, checked on the other half", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left")
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    _pyplot().close(figure)
    return path
