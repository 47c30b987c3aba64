"""The figures that hand-written pages quote, written from the result files, never typed.

A hand-written page (README.md, docs/engine.md) holds generated blocks, each between
``<!-- generated: NAME -->`` and ``<!-- /generated: NAME -->``; ``visage eval docs
--pages PAGE`` rewrites every block of PAGE from :class:`Sources`:

- ``face-models``: each face model's LFW accuracy (``visage eval lfw``), what it misses
  at 99 (its Similarity map), its embedding time and memory (``benchmarks/engine_speed.py``);
- ``cost-of-99``: what 99 misses and what 80 lets through (:mod:`visage.evaluation.costs`);
- ``embed-time``: each face model's embedding time, the figure docs/accuracy.md shows too.

:func:`stale_blocks` says which blocks of a page no longer agree with the files (the
tests use it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from visage.engine.registry import MODEL_NAMES
from visage.engine.similarity import SimilarityMap
from visage.evaluation.costs import STRICT, threshold_cost


@dataclass(frozen=True)
class Sources:
    """Where the published figures come from."""

    #: The folder of ``lfw-<model>.json`` (``visage eval lfw``).
    results: Path
    #: ``benchmarks/results/engine_speed.json``.
    benchmark: Path
    #: The bias audit's ``audit.json``.
    audit: Path
    #: ``benchmarks/results/several_photos.json``: SearchUsersByImage with one face per user and with five.
    several_photos: Path | None = None
    #: ``benchmarks/results/label_cleaning.json``: the held-out check with LFW's labels cleaned.
    label_cleaning: Path | None = None

    def lfw(self) -> dict[str, dict[str, Any]]:
        return self._per_model("lfw")

    def cfp(self) -> dict[str, dict[str, Any]]:
        """``visage eval cfp``'s results, per face model."""
        return self._per_model("cfp")

    def _per_model(self, evaluation: str) -> dict[str, dict[str, Any]]:
        return {
            m: json.loads(p.read_text()) for m in MODEL_NAMES if (p := self.results / f"{evaluation}-{m}.json").exists()
        }

    def speed(self) -> dict[str, Any]:
        """The engine benchmark: ``face_models`` (per model: ``embed_per_face``, ``model_mib``) and its images."""
        data: dict[str, Any] = json.loads(self.benchmark.read_text())
        if "face_models" not in data:
            raise ValueError(f"{self.benchmark} has no face_models: rerun benchmarks/engine_speed.py")
        return data

    def embed_ms(self, model: str) -> float:
        """Face model ``model``'s embedding time per face, p50, in ms."""
        return float(self.speed()["face_models"][model]["embed_per_face"]["p50_ms"])

    def images_timed(self) -> str:
        """How the embedding times were measured: the images, and the machine and how busy it was."""
        speed = self.speed()
        n = speed["face_models"]["sface"]["embed_per_face"]["n"]
        machine = speed["machine"]
        load = f", load average {machine['load_average_1min']}" if "load_average_1min" in machine else ""
        return (
            f"p50 of {n} embeddings of one-face 640 px images ({speed['face_model_images']}), "
            f"{machine['cpu_count']} cores{load}"
        )


def blocks(sources: Sources) -> dict[str, str]:
    """Every generated block, by name."""
    return {
        "face-models": _face_models(sources),
        "cost-of-99": threshold_cost("sface", sources.audit).sentence(),
        "embed-time": _embed_time(sources),
    }


def _face_models(sources: Sources) -> str:
    lfw, cfp, speed = sources.lfw(), sources.cfp(), sources.speed()["face_models"]
    rows = []
    for model in MODEL_NAMES:
        accuracy = lfw[model]["accuracy"]
        profile = cfp[model]["protocols"]["FP"]["accuracy"]
        missed = next(r for r in SimilarityMap.load(model).metadata["table"] if float(r["similarity"]) == STRICT)
        rows.append(
            f"| `{model}` | {100 * accuracy['mean']:.2f} % | {100 * profile['mean']:.2f} % | "
            f"{100 * missed['fnmr']:.1f} % | {sources.embed_ms(model):g} | {speed[model]['model_mib']:g} |"
        )
    return "\n".join(
        [
            f"| Face model | LFW accuracy (10-fold) | Frontal-profile accuracy (CFP) | Same-person pairs missed at "
            f"{STRICT:g} | Embed ms per face | Memory, MiB |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "Accuracy: LFW View 2, `visage eval lfw`, and CFP's frontal-profile pairs, `visage eval cfp` "
            f"(docs/accuracy.md); missed at {STRICT:g}: the same-person pairs of LFW its Similarity map was "
            'fitted on (docs/accuracy.md, "Pairs from"); embedding time: '
            f"{sources.images_timed()}, and memory: what a process gains by loading the model, both "
            "`benchmarks/engine_speed.py` (docs/performance.md).",
        ]
    )


def _embed_time(sources: Sources) -> str:
    times = ", ".join(f"`{m}` {sources.embed_ms(m):g} ms" for m in MODEL_NAMES)
    return f"Embedding one face takes {times} ({sources.images_timed()}, `benchmarks/engine_speed.py`)."


def _pattern(name: str) -> re.Pattern[str]:
    """A block: its start marker, what it holds (the text on the lines between), its end marker."""
    return re.compile(rf"(<!-- generated: {re.escape(name)} -->)(.*?)(<!-- /generated: {re.escape(name)} -->)", re.S)


def _names(text: str) -> list[str]:
    return re.findall(r"<!-- generated: ([\w-]+) -->", text)


def refresh_page(page: Path, sources: Sources) -> Path:
    """Rewrite every generated block of ``page`` from ``sources``."""
    text, made = page.read_text(), blocks(sources)
    names = _names(text)
    if not names:
        raise ValueError(f"{page} has no generated block (<!-- generated: NAME -->)")
    for name in names:
        if name not in made:
            raise ValueError(f"{page}: no generated block is called {name!r}; there are {', '.join(made)}")
        found = _pattern(name).search(text)
        if found is None:
            raise ValueError(f"{page}: the block {name} has no end (<!-- /generated: {name} -->)")
        text = text[: found.end(1)] + f"\n{made[name]}\n" + text[found.start(3) :]
    page.write_text(text)
    return page


def stale_blocks(page: Path, sources: Sources) -> list[str]:
    """The names of ``page``'s generated blocks that differ from what ``sources`` give."""
    text, made = page.read_text(), blocks(sources)
    stale = []
    for name in _names(text):
        found = _pattern(name).search(text)
        if found is None or name not in made or found.group(2) != f"\n{made[name]}\n":
            stale.append(name)
    return stale
