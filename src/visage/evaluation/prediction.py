"""What a face model's similarity map promises: the false-match rate at a Similarity threshold.

The map file (``visage/data/similarity/<model>.json``) is the calibration: it
says, in its own metadata, what false-match rate (FMR) each Similarity stands
for. The audits compare what they observe with that promise, so the promise is
read from the file, never typed here. A map that makes no such promise (the
older logistic fit, for instance) gives ``None``, and the audits then report
observed rates without a prediction.

Recognised forms of the promise, in order:

- ``"fmr"``: a list, the FMR at each knot (parallel to ``similarity``), interpolated
  on a log scale;
- ``"fmr_per_point"`` (or any number-valued key naming FMR per Similarity point):
  FMR(S) = (100 - S) x that number.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from visage.similarity import SimilarityMap

_PER_POINT_KEYS = ("fmr_per_point", "fmr_per_similarity_point", "fmr_scale", "fmr_unit")


def predicted_fmr(similarity_map: SimilarityMap, similarity: float) -> float | None:
    """The false-match rate the map promises at threshold ``similarity``, or None if it makes no promise."""
    meta = similarity_map.metadata
    knots = meta.get("fmr")
    if isinstance(knots, list) and len(knots) == len(similarity_map.similarity):
        return _interpolate_log(similarity_map.similarity, np.asarray(knots, dtype=np.float64), similarity)
    for key in _PER_POINT_KEYS:
        value = _number(meta.get(key))
        if value is not None:
            return max(0.0, (100.0 - similarity) * value)
    return None


def map_identity(similarity_map: SimilarityMap) -> dict[str, Any]:
    """What identifies the map a result was computed with: its method, metadata and a digest of its knots."""
    digest = hashlib.sha256(similarity_map.raw.tobytes() + similarity_map.similarity.tobytes()).hexdigest()
    small = {k: v for k, v in similarity_map.metadata.items() if not isinstance(v, (list, dict))}
    return {"model": similarity_map.model, "method": similarity_map.method, "metadata": small, "sha256": digest}


def _interpolate_log(similarity: np.ndarray, fmr: np.ndarray, at: float) -> float:
    order = np.argsort(similarity, kind="stable")
    s, f = similarity[order], np.maximum(fmr[order], 1e-300)
    return float(math.exp(np.interp(at, s, np.log(f))))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
