"""What a face model's similarity map promises: the false-match rate at a Similarity threshold.

The map file (``visage/data/similarity/<model>.json``) is the calibration: it
says, in its own metadata, what false-match rate (FMR) each Similarity stands
for. The audits compare what they observe with that promise, so the promise is
read from the file, never typed here. A map that makes no such promise (the
older logistic fit, for instance) gives ``None``, and the audits then report
observed rates without a prediction.

Recognised forms of the promise, in order:

- ``"table"`` (written by :mod:`visage.evaluation.calibration.similarity_map`): rows with a
  ``similarity`` and the ``predicted_fmr`` there. Exact at a row's Similarity,
  linear in Similarity between rows (the calibration's FMR is linear in
  Similarity), ``None`` outside the rows' range;
- ``"fmr_per_point"``: FMR(S) = (100 - S) x that number.

With ``"graded_below"`` (a Similarity, 50) and ``"fmr_per_point"``, the scale below it is
graded on log FMR, from FMR 1 at Similarity 0 to (100 - graded_below) x fmr_per_point:
below ``graded_below`` the promise is that curve, read before the table.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from visage.engine.similarity import SimilarityMap


def predicted_fmr(similarity_map: SimilarityMap, similarity: float) -> float | None:
    """The false-match rate the map promises at threshold ``similarity``, or None if it makes no promise."""
    meta = similarity_map.metadata
    graded_below, per_point = _number(meta.get("graded_below")), _number(meta.get("fmr_per_point"))
    if graded_below is not None and per_point is not None and similarity < graded_below:
        return float(((100.0 - graded_below) * per_point) ** (max(similarity, 0.0) / graded_below))
    rows = sorted(
        (float(r["similarity"]), float(r["predicted_fmr"]))
        for r in meta.get("table", [])
        if isinstance(r, dict)
        and _number(r.get("similarity")) is not None
        and _number(r.get("predicted_fmr")) is not None
    )
    if rows and rows[0][0] <= similarity <= rows[-1][0]:
        return float(np.interp(similarity, [s for s, _ in rows], [f for _, f in rows]))
    if per_point is not None:
        return max(0.0, (100.0 - similarity) * per_point)
    return None


def map_identity(similarity_map: SimilarityMap) -> dict[str, Any]:
    """What identifies the map a result was computed with: its method, metadata and a digest of its knots."""
    digest = hashlib.sha256(similarity_map.raw.tobytes() + similarity_map.similarity.tobytes()).hexdigest()
    small = {k: v for k, v in similarity_map.metadata.items() if not isinstance(v, (list, dict))}
    return {"model": similarity_map.model, "method": similarity_map.method, "metadata": small, "sha256": digest}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
