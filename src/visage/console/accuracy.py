"""What the evaluations measured, for the console: the Accuracy page, and a Similarity in words.

Two sources, both written by Visage's own evaluations:

- the face model's Similarity map (package data), whose metadata promise a false-match
  rate at each Similarity (:func:`visage.evaluation.prediction.predicted_fmr`): Compare
  and Search say it in words, "about 1 in 50,000 comparisons of two different people
  score this high";
- the docs folder the evaluations wrote (``accuracy.md``, ``bias-audit.md``, their plots,
  and ``bias-audit/audit.json``): the Accuracy page renders the two pages, and Compare and
  Search add the bias audit's caveat for the threshold in use;
- both at once: what the console's threshold of 99 costs and what the API's 80 lets through
  (:mod:`visage.evaluation.costs`, the README's sentence), beside the threshold on Compare
  and Search.

The docs folder is the ``docs_dir`` setting (``VISAGE_DOCS_DIR``); by default the ``docs``
folder of the source tree Visage runs from (a checkout, or an editable install), else
``./docs``. Without it, the pages say where they looked.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

import visage
from visage.config import Settings
from visage.console.app import PREFIX, Context, page
from visage.engine.similarity import SimilarityMap
from visage.evaluation.costs import threshold_cost
from visage.evaluation.prediction import predicted_fmr

#: The pages of the docs folder the Accuracy page renders, in order, with their titles.
PAGES = (("accuracy.md", "Accuracy on LFW"), ("bias-audit.md", "Bias audit"))
AUDIT_JSON = Path("bias-audit") / "audit.json"
#: Files of the docs folder the pages may show (their plots).
SHOWN_SUFFIXES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}


def docs_dir(settings: Settings) -> Path:
    """The folder the Accuracy page and the bias caveat read (see the module's docstring)."""
    if settings.docs_dir is not None:
        return settings.docs_dir
    source_tree = Path(visage.__file__).resolve().parents[2] / "docs"
    return source_tree if (source_tree / PAGES[0][0]).exists() else Path("docs")


# A Similarity in words ---------------------------------------------------------------------


def fmr_words(similarity_map: SimilarityMap, similarity: float) -> str:
    """What ``similarity`` means, from the false-match rate the calibration promises there."""
    fmr = predicted_fmr(similarity_map, similarity)
    if fmr is None:
        return "the calibration of this face model makes no promise at this Similarity"
    if fmr <= 0:
        return "the calibration expects no comparison of two different people to score this high"
    words = f"1 in {_round_count(1 / fmr):,}"
    if similarity <= 0:
        return f"more than {words} comparisons of two different people score this high"
    return f"about {words} comparisons of two different people score this high"


def fmr_fraction(fmr: float | None) -> str:
    """A false-match rate as "1 in N" (or "n/a")."""
    if fmr is None:
        return "n/a"
    if fmr <= 0:
        return "0"
    return f"1 in {_round_count(1 / fmr):,}"


def _round_count(n: float) -> int:
    """``n`` to two significant digits: 49,999.99 is 50,000."""
    digits = max(0, math.floor(math.log10(n)) - 1)
    return int(round(n / 10**digits) * 10**digits)


def threshold_cost_sentence(settings: Settings, face_model: str) -> str:
    """What 99 costs and what 80 lets through for ``face_model``, on LFW: from its shipped
    Similarity map, and per person from the bias audit in the docs folder when that audit is
    of this model. Worked out once per process (no model is loaded)."""
    audit = docs_dir(settings) / AUDIT_JSON
    return _cost_sentence(face_model, audit if audit.is_file() else None)


@cache
def _cost_sentence(face_model: str, audit: Path | None) -> str:
    return threshold_cost(face_model, audit).sentence()


@dataclass(frozen=True)
class Caveat:
    """What the bias audit measured at a threshold, in words."""

    threshold: float  # the audited threshold the words are about
    sentences: list[str]


def bias_caveat(settings: Settings, threshold: float, face_model_version: str) -> Caveat | None:
    """The bias audit's caveat for ``threshold``: at the highest audited threshold at or below
    it (the lowest if none is), how far the false-match rates of its groups were from the
    promise. None when no audit is found."""
    audit = _audit(docs_dir(settings) / AUDIT_JSON)
    if audit is None:
        return None
    audited = sorted(float(t) for t in audit.get("thresholds", {}))
    if not audited:
        return None
    below = [t for t in audited if t <= threshold]
    at = below[-1] if below else audited[0]
    key = f"{at:g}"
    promise = audit["thresholds"].get(key, {}).get("predicted_fmr")
    sentences = []
    for dataset in audit.get("datasets", {}).values():
        for extreme in dataset.get("extremes", []):
            if extreme.get("measure") not in (f"fmr@{key}", f"adult_fmr@{key}"):
                continue
            adults = ", adults only" if extreme["measure"].startswith("adult") else ""
            sentences.append(
                f"{dataset['title']}{adults}: from {_rate(extreme['best_value'])} ({extreme['best']}) "
                f"to {_rate(extreme['worst_value'])} ({extreme['worst']}) of pairs of different people."
            )
    if not sentences:
        return None
    model = audit.get("model_version", "?")
    head = f"At Similarity {key}, the calibration promises a false-match rate of {fmr_fraction(promise)}; "
    head += f"the bias audit of face model {model} measured, per group:"
    if model != face_model_version:
        head += f" (this collection uses {face_model_version}, which the audit did not measure)"
    return Caveat(at, [head, *sentences])


def _rate(value: dict[str, Any]) -> str:
    """A measured rate, as a percentage with two significant digits (an upper bound for none seen)."""
    if not value.get("events"):
        upper = value.get("ci95", [0, 0])[1]
        return f"none of {value.get('total', 0):,} (at most {_percent(upper)})"
    return _percent(value["value"])


def _percent(rate: float) -> str:
    percent = rate * 100
    return f"{percent:.2g} %" if percent < 10 else f"{percent:.0f} %"


def _audit(path: Path) -> dict[str, Any] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return _read_json(path, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _read_json(path: Path, stamp: int) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# The Accuracy page -------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedPage:
    name: str  # e.g. "accuracy.md"
    title: str
    html: str | None  # None if the file is missing


def render_pages(settings: Settings, files_url: str) -> list[RenderedPage]:
    """The docs pages of :data:`PAGES` as HTML; their images point under ``files_url``."""
    folder = docs_dir(settings)
    out = []
    for name, title in PAGES:
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            out.append(RenderedPage(name, title, None))
            continue
        out.append(RenderedPage(name, title, _render(path, stat.st_mtime_ns, files_url)))
    return out


_COMMENT = re.compile(r"<!--.*?-->", re.S)


@lru_cache(maxsize=8)
def _render(path: Path, stamp: int, files_url: str) -> str:
    """Markdown to HTML, raw HTML escaped (the files are the evaluations', but a page never
    runs what a file says); relative image paths rewritten to ``files_url``."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(_COMMENT.sub("", path.read_text()))
    for token in tokens:
        for child in token.children or ():
            src = child.attrGet("src") if child.type == "image" else None
            if isinstance(src, str) and not re.match(r"[a-z]+:|/", src):
                child.attrSet("src", f"{files_url}/{src}")
            href = child.attrGet("href") if child.type == "link_open" else None
            if isinstance(href, str) and not re.match(r"[a-z]+:|/|#", href):
                child.attrSet("href", f"{files_url}/{href}")
    return md.renderer.render(tokens, md.options, {})


def docs_file(settings: Settings, relative: str) -> tuple[Path, str] | None:
    """The file ``relative`` of the docs folder and its media type, if it is one a page may
    show (a plot) and lies inside the folder; else None."""
    folder = docs_dir(settings).resolve()
    path = (folder / relative).resolve()
    media_type = SHOWN_SUFFIXES.get(path.suffix.lower())
    if media_type is None or not path.is_relative_to(folder) or not path.is_file():
        return None
    return path, media_type


# Routes ------------------------------------------------------------------------------------


def routes() -> list[BaseRoute]:
    return [
        Route("/accuracy", page(accuracy_page), methods=["GET"]),
        Route("/accuracy/files/{path:path}", page(accuracy_file), methods=["GET"]),
    ]


async def accuracy_page(context: Context) -> Response:
    settings = context.console.settings
    pages = await context.console.run(render_pages, settings, f"{PREFIX}/accuracy/files")
    return context.render(
        "accuracy.html", section="accuracy", title="Accuracy", pages=pages, folder=str(docs_dir(settings))
    )


async def accuracy_file(context: Context) -> Response:
    found = docs_file(context.console.settings, context.request.path_params["path"])
    if found is None:
        return Response("No such plot in the docs folder.", 404, media_type="text/plain")
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=600"})
