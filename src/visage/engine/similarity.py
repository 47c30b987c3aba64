"""Raw match scores to Rekognition's Similarity (0-100), through a fitted curve kept as data.

A face model scores a pair of faces with the cosine of their unit vectors.
What that number means differs per model, so each model has a monotone map
from cosine to Similarity, stored as knots in ``visage/data/similarity/<model>.json``
and interpolated linearly. Similarity S stands for a false-match rate of
(100 - S) x 1e-6 from 50 up, and is graded on log FMR below (see
:mod:`visage.evaluation.calibration`). The file says how it was fitted and on what;
the command that wrote it (``visage eval calibrate``) can be rerun by anyone.
Swapping the fit means swapping the file: ``visage eval calibrate --data DIR`` fits
one on your own population, and the ``similarity_map`` setting (``visage serve
--similarity-map FILE``) serves it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR = Path(str(files("visage") / "data" / "similarity"))


@dataclass(frozen=True)
class SimilarityMap:
    """A monotone non-decreasing map from raw cosine score to Similarity in [0, 100]."""

    model: str
    raw: np.ndarray = field(repr=False)  # increasing knots of the raw score
    similarity: np.ndarray = field(repr=False)  # non-decreasing Similarity at each knot
    method: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if len(self.raw) != len(self.similarity) or len(self.raw) < 2:
            raise ValueError("a similarity map needs at least two knots, as many raw as similarity values")
        if not (np.all(np.isfinite(self.raw)) and np.all(np.isfinite(self.similarity))):
            raise ValueError("knots must be finite numbers (no NaN, infinity or null)")
        if np.any(np.diff(self.raw) <= 0):
            raise ValueError("raw knots must be strictly increasing")
        if np.any(np.diff(self.similarity) < 0):
            raise ValueError("similarity must not decrease as the raw score grows")
        if self.similarity[0] < 0 or self.similarity[-1] > 100:
            raise ValueError("similarity must stay within 0-100")

    def __call__(self, raw: float | np.ndarray) -> np.ndarray | float:
        out = np.interp(raw, self.raw, self.similarity)
        return float(out) if np.ndim(out) == 0 else out

    def raw_threshold(self, similarity: float) -> float:
        """The smallest raw score whose Similarity is at least ``similarity``.

        Lets a store filter on the raw score it indexes, then map only the survivors.
        """
        if similarity <= self.similarity[0]:
            return -np.inf
        if similarity > self.similarity[-1]:
            return np.inf
        i = int(np.searchsorted(self.similarity, similarity, side="left"))
        s0, s1 = self.similarity[i - 1], self.similarity[i]  # s0 < similarity <= s1: knot i is the first at or above
        r0, r1 = self.raw[i - 1], self.raw[i]
        return float(r0 + (similarity - s0) * (r1 - r0) / (s1 - s0))

    @property
    def fitted_on(self) -> str:
        """What the map was fitted on, as its file says."""
        return str(self.metadata.get("fitted_on", "not recorded"))

    @classmethod
    def load(cls, model: str, directory: Path | None = None) -> SimilarityMap:
        """The map of face model ``model`` shipped in ``visage/data/similarity`` (or in ``directory``)."""
        return cls.read((directory or DATA_DIR) / f"{model}.json")

    @classmethod
    def read(cls, path: Path) -> SimilarityMap:
        """The map in a file that :meth:`save` wrote."""
        data = json.loads(path.read_text())
        return cls(
            model=data["model"],
            raw=np.asarray(data["raw"], dtype=np.float64),
            similarity=np.asarray(data["similarity"], dtype=np.float64),
            method=data.get("method", ""),
            metadata={k: v for k, v in data.items() if k not in ("model", "raw", "similarity", "method")},
        )

    def save(self, directory: Path | None = None) -> Path:
        path = (directory or DATA_DIR) / f"{self.model}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "model": self.model,
            "method": self.method,
            **self.metadata,
            "raw": [round(float(x), 6) for x in self.raw],
            "similarity": [round(float(x), 6) for x in self.similarity],
        }
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path
