"""What a threshold costs, in the evaluation's own figures: what 99 misses and what 80 lets through.

Advice to use a threshold of 99 comes with its price: the share of same-person
pairs that score below 99, on LFW. Two figures, since they differ: over every
same-person pair the calibration counted (kept in the face model's Similarity
map: LFW's photos as the map's labels say, at most so many of each person, where
people with more photos weigh more), and per person (each
person's share of missed pairs, averaged over people, from the bias audit's
``audit.json``). Beside it, what Rekognition's default of 80 lets through: the
share of pairs of different people that score 80 or more, also from the map.
Nothing here is typed by hand: every figure is read from those files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visage.engine.similarity import SimilarityMap

STRICT, LENIENT = 99.0, 80.0


@dataclass(frozen=True)
class ThresholdCost:
    model: str
    strict: float
    #: Same-person pairs of LFW that score below ``strict``, and how many there are.
    missed_pairs: int
    genuine_pairs: int
    lenient: float
    #: Pairs of different people of LFW that score ``lenient`` or more, and how many there are.
    false_matches: int
    impostor_pairs: int
    #: Each person's share of same-person pairs below ``strict``, averaged over ``people``
    #: (the bias audit's figure); None without an audit of this model.
    missed_per_person: float | None = None
    people: int | None = None
    #: The most photos of one person the map's pairs were drawn from ("all": no limit).
    photos_per_person: int | str = "all"

    @property
    def missed(self) -> float:
        return self.missed_pairs / self.genuine_pairs

    @property
    def let_through(self) -> float:
        return self.false_matches / self.impostor_pairs

    def sentence(self) -> str:
        """The cost in one sentence, for the README, the help and the console."""
        per_person = (
            ""
            if self.missed_per_person is None
            else f", {100 * self.missed_per_person:.1f} % per person (averaged over {self.people:,} people)"
        )
        photos = "" if self.photos_per_person == "all" else f", at most {self.photos_per_person} photos of each person"
        return (
            f"What {self.strict:g} costs ({self.model} on LFW{photos}): it misses {100 * self.missed:.1f} % of same-person "
            f"pairs ({self.missed_pairs:,} of {self.genuine_pairs:,}){per_person}; {self.lenient:g}, Rekognition's "
            f"default, lets through 1 pair of different people in {one_in(self.let_through)} "
            f"({self.false_matches:,} of {self.impostor_pairs:,})."
        )


def threshold_cost(model: str = "sface", audit: Path | None = None) -> ThresholdCost:
    """The cost of 99 and of 80 for ``model``: from its shipped Similarity map, and per person from
    the bias audit's ``audit.json`` at ``audit`` (if given and of this model)."""
    metadata = SimilarityMap.load(model).metadata
    rows = {float(row["similarity"]): row for row in metadata["table"]}
    strict, lenient = rows[STRICT], rows[LENIENT]
    per_person = _per_person(json.loads(audit.read_text()), model) if audit is not None else None
    return ThresholdCost(
        model=model,
        strict=STRICT,
        missed_pairs=int(strict["false_non_matches"]),
        genuine_pairs=int(strict["genuine_pairs"]),
        lenient=LENIENT,
        false_matches=int(lenient["false_matches"]),
        impostor_pairs=int(lenient["impostor_pairs"]),
        missed_per_person=per_person[0] if per_person else None,
        people=per_person[1] if per_person else None,
        photos_per_person=metadata.get("labels", {}).get("photos_per_person", "all"),
    )


def _per_person(audit: dict[str, Any], model: str) -> tuple[float, int] | None:
    """The audit's LFW miss rate at 99 per person, over all its cells (each cell's mean weighted by its people)."""
    if audit.get("model") != model or "lfw" not in audit.get("datasets", {}):
        return None
    means = [cell["measures"][f"person_fnmr@{STRICT:g}"] for cell in audit["datasets"]["lfw"]["cells"].values()]
    people = sum(int(m["n"]) for m in means)
    return sum(float(m["value"]) * int(m["n"]) for m in means) / people, people


def one_in(rate: float) -> str:
    """``50,000`` for a rate of 2e-5: its inverse, to two significant figures."""
    inverse = 1 / rate
    digits = len(str(int(inverse))) - 2
    return f"{round(inverse, -digits if digits > 0 else 0):,.0f}"
