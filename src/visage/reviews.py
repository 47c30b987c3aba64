"""Reviewers' decisions, counted: how many search candidates people confirmed or rejected,
per Similarity band.

Each decision is a person's verdict on one candidate of one search (same person,
different person, or cannot tell; :class:`~visage.store.base.Review`). Counted per band
of Similarity, they are ground truth that the calibration never had: the share of
candidates rejected in a band is shown beside the false-match rate the calibration
promises there. The two are not the same quantity (a share of candidates against a
rate per comparison of two different people, which grows into more false candidates
as the gallery grows), and the Console says so beside them.

When a candidate (one probe image, one face) was decided more than once, its latest
decision counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from visage.engine.similarity import SimilarityMap
from visage.errors import ResourceNotFoundException
from visage.evaluation.prediction import predicted_fmr
from visage.store.base import AuditRecord, Review, Store

#: The audit log's operation for a reviewer's decision, and the searches whose candidates are reviewed.
REVIEW_OPERATION = "ReviewMatch"
REVIEWED_OPERATIONS = frozenset({"SearchFacesByImage"})
#: Lower edges of the Similarity bands; each band runs up to the next edge, the last one to 100.
BAND_EDGES = (0.0, 80.0, 90.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True)
class ReviewBand:
    low: float  # Similarity at or above this...
    high: float  # ...and below this (the last band: up to and with 100)
    same: int  # candidates confirmed: the same person
    different: int  # candidates rejected: a different person
    cannot_tell: int
    #: The false-match rate the calibration promises at Similarity ``low``, if it promises one.
    promised_fmr: float | None

    @property
    def reviewed(self) -> int:
        return self.same + self.different + self.cannot_tell

    @property
    def rejected_share(self) -> float | None:
        """The share of candidates decided either way that were a different person."""
        decided = self.same + self.different
        return self.different / decided if decided else None


def latest_decisions(reviews: Iterable[Review]) -> dict[tuple[str, str], Review]:
    """Each candidate's latest decision, by (probe SHA-256, FaceId); ``reviews`` oldest first."""
    return {(r.probe_sha256, r.face_id): r for r in reviews}


def review_status(candidates: list[str], decided: set[str]) -> str:
    """How far a search's candidates (FaceIds) were reviewed, given the FaceIds decided on."""
    done = sum(face_id in decided for face_id in candidates)
    if done == 0:
        return "unreviewed"
    return "reviewed" if done == len(candidates) else f"{done} of {len(candidates)} reviewed"


def review_statuses(store: Store, records: Sequence[AuditRecord]) -> list[str | None]:
    """For each audit record of a search by image with candidates, how far its candidates were
    reviewed (:func:`review_status`, counting the decisions on its probe made after it); None
    for the other records."""
    decided: dict[tuple[str, str], list[Review]] = {}
    out: list[str | None] = []
    for record in records:
        if record.operation not in REVIEWED_OPERATIONS or not record.face_ids or record.outcome != "ok":
            out.append(None)
            continue
        key = (record.collection_id or "", record.probe_sha256 or "")
        if key not in decided:
            try:
                decided[key] = store.reviews(*key) if all(key) else []
            except ResourceNotFoundException:  # the collection has gone, with its decisions
                decided[key] = []
        after = {r.face_id for r in decided[key] if r.time >= record.time}
        out.append(review_status(record.face_ids, after))
    return out


def review_bands(reviews: Iterable[Review], similarity_map: SimilarityMap) -> list[ReviewBand]:
    """Every band of :data:`BAND_EDGES`, with the latest decision of each candidate counted."""
    counts = [dict.fromkeys(("same", "different", "cannot_tell"), 0) for _ in BAND_EDGES]
    for review in latest_decisions(reviews).values():
        band = max(i for i, low in enumerate(BAND_EDGES) if review.similarity >= low or i == 0)
        counts[band][review.decision] += 1
    highs = (*BAND_EDGES[1:], 100.0)
    return [
        ReviewBand(low, high, c["same"], c["different"], c["cannot_tell"], predicted_fmr(similarity_map, low))
        for low, high, c in zip(BAND_EDGES, highs, counts)
    ]
