"""Error trade-off curves of scored pairs: FMR against FNMR at every threshold, and TAR at a FAR.

Works on sorted genuine and impostor scores, so the same code serves the 6,000
pairs of ``pairs.txt`` and the 87 million pairs of all of LFW. FAR and FMR are
the same thing here (the share of impostor pairs accepted); TAR = 1 - FNMR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Curve:
    """Operating points, from the most permissive threshold to the strictest."""

    threshold: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray

    def to_json(self) -> dict[str, list[float]]:
        return {
            "threshold": [round(float(x), 6) for x in self.threshold],
            "fmr": [float(f"{x:.6g}") for x in self.fmr],
            "fnmr": [float(f"{x:.6g}") for x in self.fnmr],
        }

    @classmethod
    def from_json(cls, data: dict[str, list[float]]) -> Curve:
        return cls(*(np.asarray(data[k], dtype=np.float64) for k in ("threshold", "fmr", "fnmr")))


def split_scores(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted genuine and impostor scores of labelled pairs."""
    return np.sort(scores[labels]), np.sort(scores[~labels])


def error_curve(genuine: np.ndarray, impostor: np.ndarray, points: int = 300) -> Curve:
    """At most ``points`` operating points with the impostor count at or above the threshold
    spread evenly in log scale from 1 to all of them (sorted inputs)."""
    n = len(impostor)
    counts = np.unique(np.round(np.logspace(0, math.log10(n), points)).astype(np.int64))
    threshold = impostor[n - counts].astype(np.float64)  # the count-th largest impostor score
    at_or_above = n - np.searchsorted(impostor, threshold, side="left")  # >= counts where scores tie
    fnmr = np.searchsorted(genuine, threshold, side="left") / len(genuine)
    order = np.argsort(threshold)
    return Curve(threshold[order], (at_or_above / n)[order], fnmr[order])


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> dict[str, Any]:
    """The highest TAR whose threshold accepts at most ``far`` of the impostors (sorted inputs)."""
    n = len(impostor)
    allowed = math.floor(far * n + 1e-9)
    # just above the (allowed + 1)-th largest impostor score: at most `allowed` impostors pass
    threshold = float(np.nextafter(impostor[n - allowed - 1], np.float32(np.inf))) if allowed < n else -math.inf
    accepted = n - int(np.searchsorted(impostor, threshold, side="left"))
    genuine_accepted = len(genuine) - int(np.searchsorted(genuine, threshold, side="left"))
    return {
        "far": far,
        "tar": genuine_accepted / len(genuine),
        "threshold": round(threshold, 6),
        "false_accepts": accepted,
        "impostor_pairs": n,
        "genuine_pairs": len(genuine),
        "resolvable": far * n >= 1,
        "note": ""
        if far * n >= 1
        else f"only {n} impostor pairs: the smallest measurable FAR is {1 / n:.1e}; "
        "this is TAR with no impostor accepted",
    }
