"""All-pairs scores of a set of face vectors, by blocked matrix products.

LFW has 10,268 male images: 52.7 million pairs, too many to hold at once, so the
cosines are computed a block of rows at a time and only what the audit needs is
kept: how many pairs reach each raw threshold, and a histogram of the scores.

- Impostor pairs: every unordered pair of different people (a face with no identity
  is its own person, so "all pairs" when there are no identity labels).
- Genuine pairs: every unordered pair of images of the same person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINS = np.linspace(-1.0, 1.0, 201)  # cosine histogram bins, 0.01 wide
_BLOCK = 1024


@dataclass(frozen=True)
class PairScores:
    """What is kept of a set of pair scores."""

    pairs: int
    at_or_above: np.ndarray  # pairs with cosine >= each of the thresholds, in their order
    histogram: np.ndarray  # counts per BINS interval


def impostor_scores(vectors: np.ndarray, identities: list[str] | None, thresholds: np.ndarray) -> PairScores:
    """Scores of every pair of rows of ``vectors`` (unit rows) whose identities differ."""
    n = len(vectors)
    ids = np.unique(np.asarray(identities), return_inverse=True)[1] if identities is not None else np.arange(n)
    vectors = np.asarray(vectors, dtype=np.float32)
    counts = np.zeros(len(thresholds), dtype=np.int64)
    histogram = np.zeros(len(BINS) - 1, dtype=np.int64)
    pairs = 0
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        block = vectors[start:stop] @ vectors[start:].T  # rows start..stop against columns start..n
        rows = np.arange(start, stop)[:, None]
        columns = np.arange(start, n)[None, :]
        keep = (columns > rows) & (ids[rows] != ids[columns])
        scores = block[keep]
        pairs += scores.size
        counts += _at_or_above(scores, thresholds)
        histogram += np.histogram(np.clip(scores, -1.0, 1.0), BINS)[0]
    return PairScores(pairs, counts, histogram)


def genuine_scores(vectors: np.ndarray, identities: list[str], thresholds: np.ndarray) -> PairScores:
    """Scores of every pair of rows of the same identity."""
    ids = np.asarray(identities)
    scores = []
    for person in np.unique(ids):
        rows = np.flatnonzero(ids == person)
        if len(rows) > 1:
            block = vectors[rows] @ vectors[rows].T
            scores.append(block[np.triu_indices(len(rows), k=1)])
    flat = np.concatenate(scores) if scores else np.empty(0)
    return PairScores(flat.size, _at_or_above(flat, thresholds), np.histogram(np.clip(flat, -1.0, 1.0), BINS)[0])


def _at_or_above(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    ordered = np.sort(scores)
    return ordered.size - np.searchsorted(ordered, thresholds, side="left")
