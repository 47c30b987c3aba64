"""The audit written for people: ``report.html`` and, optionally, a markdown page.

Both are rendered from the same list of blocks (headings, paragraphs, lists, tables,
figures), and every number in them comes from the :class:`~visage.evaluation.audit.run.Audit`.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from visage.evaluation.audit.plots import write_plots
from visage.evaluation.audit.run import Audit, DatasetAudit, Extremes, MeasureInfo
from visage.evaluation.intervals import Mean, Measure, Rate, clopper_pearson


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


Block = Heading | Paragraph | Bullets | Table | Figure


def write_report(audit: Audit, out: Path, markdown: Path | None = None) -> list[Path]:
    """Plots, ``report.html`` and (if asked) the markdown page; returns the files written."""
    plots = write_plots(audit, out / "plots")
    blocks = report_blocks(audit, plots)
    (out / "report.html").write_text(to_html(blocks, out))
    written = [*plots, out / "report.html"]
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(to_markdown(blocks, markdown.parent))
        written.append(markdown)
    return written


# Content -------------------------------------------------------------------------------


def report_blocks(audit: Audit, plots: list[Path]) -> list[Block]:
    run = "a full run" if audit.limit is None else f"a reduced run (at most {audit.limit} faces per cell)"
    blocks: list[Block] = [
        Heading(f"Bias audit of face model {audit.model_version}", 1),
        Paragraph(
            f"Written by `visage audit` ({run}, {audit.created}, {audit.runtime_seconds:.0f} s). Do not edit by hand: "
            "rerun `visage audit --out docs/bias-audit --markdown docs/bias-audit.md`. "
            f"Similarity comes from the configured map of `{audit.model}` ({audit.similarity_map.method or 'no method recorded'}), "
            f"fitted on: {audit.similarity_map.fitted_on}."
        ),
        Heading("What the thresholds promise"),
        Table(
            ["Similarity threshold", "raw cosine", "false-match rate the map promises"],
            [[f"{t:g}", f"{audit.raw_threshold(t):.4f}", _promise(audit.predicted(t))] for t in audit.thresholds],
        ),
        Heading("Summary in plain language"),
        Bullets(summary(audit)),
    ]
    for dataset in audit.datasets:
        blocks += dataset_blocks(audit, dataset, [p for p in plots if p.name.startswith(dataset.key + "_")])
    blocks += [Heading("Caveats: where the data is thin"), Bullets(caveats(audit))]
    return blocks


def dataset_blocks(audit: Audit, dataset: DatasetAudit, plots: list[Path]) -> list[Block]:
    sizes = ", ".join(f"{c.name} {c.size}" for c in dataset.cells)
    header = ["cell", "faces", *[m.label + (f" ({m.unit.strip()})" if m.unit else "") for m in dataset.measures]]
    rows = [[c.name, str(c.size), *[describe(c.measures[m.key], m) for m in dataset.measures]] for c in dataset.cells]
    extreme_rows = [
        [
            e.measure.label,
            f"{e.worst}: {describe(e.worst_value, e.measure)}",
            f"{e.best}: {describe(e.best_value, e.measure)}",
            ratio_text(e),
        ]
        for e in dataset.extremes()
    ]
    blocks: list[Block] = [
        Heading(dataset.title),
        Paragraph(f"Faces per cell: {sizes}."),
        Table(header, rows),
        Heading("Worst and best cell per measure", 3),
        Table(["measure", "worst cell", "best cell", "ratio worst / best"], extreme_rows),
    ]
    blocks += [Figure(p, f"{dataset.title}: {p.stem.split('_', 1)[1]}") for p in plots]
    if dataset.notes:
        blocks.append(Bullets(dataset.notes))
    return blocks


def describe(measure: Measure, info: MeasureInfo) -> str:
    if isinstance(measure, Mean):
        return measure.describe(info.unit, info.scale)
    return measure.describe()


def ratio_text(e: Extremes) -> str:
    what = "miss rates" if e.measure.higher_is_better else "values"
    if e.ratio is not None:
        return f"{e.ratio:.2f} ({what})"
    if e.ratio_at_least is not None:
        return f"at least {e.ratio_at_least:.2f} (best cell has none; worst / best's 95 % upper bound)"
    if _value(e.worst_value, e.measure) == 0:
        return "no errors in any cell"
    return "undefined (best cell has none; too few faces to say by how much the worst is worse)"


def _value(measure: Measure, info: MeasureInfo) -> float:
    if info.higher_is_better and isinstance(measure, Rate):
        return 1.0 - measure.value
    return measure.value


def _promise(fmr: float | None) -> str:
    if fmr is None:
        return "none: this map makes no false-match promise"
    return f"{fmr:.1e} (1 in {1 / fmr:,.0f} comparisons of different people)" if fmr > 0 else "0"


def pooled(measures: list[Measure]) -> Measure:
    if all(isinstance(m, Rate) for m in measures):
        return Rate(
            sum(m.events for m in measures if isinstance(m, Rate)),
            sum(m.total for m in measures if isinstance(m, Rate)),
        )
    means = [m for m in measures if isinstance(m, Mean) and m.n > 0]
    n = sum(m.n for m in means)
    value = sum(m.value * m.n for m in means) / n if n else float("nan")
    return Mean(value, n, float("nan"), float("nan"), float("nan"))


def short(measure: Measure, info: MeasureInfo) -> str:
    return measure.short(info.unit, info.scale) if isinstance(measure, Mean) else measure.short()


def summary(audit: Audit) -> list[str]:
    items = [
        'How to read these numbers: a rate is "k of N" with its 95 % interval; "0/N (<= u)" means no error was '
        "seen and u is the upper end of the 95 % interval. A false-match rate (FMR) of 1e-4 at a threshold means "
        "that comparing a face with 10,000 faces of other people returns, on average, one of them as a match; a false "
        "non-match rate (FNMR) of 1 % means one in a hundred pairs of photos of the same person is missed."
    ]
    for dataset in audit.datasets:
        for e in dataset.extremes():
            overall = pooled([c.measures[e.measure.key] for c in dataset.cells])
            items.append(
                f"{dataset.title}, {e.measure.label}: {short(overall, e.measure)} over all cells; worst {e.worst} "
                f"{short(e.worst_value, e.measure)}, best {e.best} {short(e.best_value, e.measure)}; "
                f"worst / best: {ratio_text(e)}."
            )
        items += promise_check(audit, dataset)
    return items


def promise_check(audit: Audit, dataset: DatasetAudit) -> list[str]:
    """Per FMR measure: the cells whose observed interval lies wholly above or below what the map promises."""
    items = []
    for info in dataset.measures:
        if not info.false_match or info.threshold is None:
            continue
        predicted = audit.predicted(info.threshold)
        rates = [(c.name, m) for c in dataset.cells if isinstance(m := c.measures[info.key], Rate) and m.total > 0]
        if predicted is None or not rates:
            continue
        above = [name for name, r in rates if r.interval[0] > predicted]
        below = [name for name, r in rates if r.interval[1] < predicted]
        expected = sorted(predicted * r.total for _, r in rates)
        span = (
            _count(expected[0])
            if _count(expected[0]) == _count(expected[-1])
            else f"{_count(expected[0])} to {_count(expected[-1])}"
        )
        text = f"{dataset.title}, {info.label}: the map promises {predicted:.1e}, i.e. {span} expected false matches per cell. "
        if above:
            text += f"More than promised (95 % interval wholly above the promise): {', '.join(above)}. "
        if below:
            text += f"Fewer than promised (interval wholly below): {', '.join(below)}. "
        if not above and not below:
            text += "Every cell's 95 % interval contains the promise. "
        if expected[0] < 3:
            text += "Where fewer than 3 are expected, a cell cannot show that the promise is kept: a zero there is only an upper bound."
        items.append(text.strip())
    return items


def _count(expected: float) -> str:
    return f"{expected:,.0f}" if expected >= 10 else f"{expected:.2g}"


def caveats(audit: Audit) -> list[str]:
    sizes = {d.key: [c.size for c in d.cells] for d in audit.datasets}
    items = [
        'Every rate carries an exact (Clopper-Pearson) two-sided 95 % interval; "0 of N" is shown with the upper end '
        "of that interval (about 3.7/N), which is all a cell with no errors can claim. Means (age errors) carry a "
        "bootstrap 95 % interval.",
        "Age MAE uses the midpoint of the estimated AgeRange against the labelled age. FairFace labels only an age group: "
        "the age error is 0 when the midpoint lies in the group (group a-b covers a <= age < b + 1) and otherwise its "
        "distance to the group.",
        "Gender error rates are over detected faces. Gender labels in all three sets are binary and were assigned by others "
        "from appearance; they are not anyone's gender identity, and Visage's Gender is an appearance estimate too.",
    ]
    if "utkface" in sizes:
        pairs = max(n * (n - 1) // 2 for n in sizes["utkface"])
        bound = clopper_pearson(0, pairs)[1]
        items.append(
            f"UTKFace cells hold {_span(sizes['utkface'])} faces, so at most {pairs:,} impostor pairs: "
            f"zero false matches in a cell only bounds its FMR below {bound:.1e}{_unresolved(audit, bound)}. "
            "UTKFace has no identity labels: all pairs within a cell are counted as impostors, and a pair of two "
            "photos of the same person counts as a false match. UTKFace holds several photos of many public figures, "
            "labelled with different ages, and such pairs score high: at the highest thresholds they may be most of what "
            "is counted. Each cell's ten highest-scoring pairs are listed in audit.json (`top_pairs`, file names) so that "
            "anyone with the data can look; until then read the UTKFace FMRs as upper bounds. The pairs share faces, so the "
            "intervals, which treat pairs as independent, are narrower than they should be. Race labels are UTKFace's five "
            'coarse categories, "other" mixes many groups, and the labels themselves contain known errors.'
        )
    if "fairface" in sizes:
        items.append(
            f"FairFace cells hold only {_span(sizes['fairface'])} faces: one error moves a rate by "
            f"about {100 / max(min(sizes['fairface']), 1):.0f} points, and intervals are wide. The sample has no race labels."
        )
    if "lfw" in sizes:
        items.append(
            "LFW impostor pairs are pairs of different people of the same gender (pairs across genders are easier and would "
            "flatter the rates). Genuine pairs are all pairs of images of one person; an image with no detected face makes "
            "its genuine pairs false non-matches, while impostor pairs use detected faces only. The gender lists come from a "
            "third party; images in both lists or in neither are left out. LFW is mostly white, male, middle-aged public "
            "figures and holds no race labels, so it cannot speak to race."
        )
    if audit.limit is not None:
        items.append(
            f"This is a reduced run (at most {audit.limit} faces per cell): its figures are for checking the code, not for citing."
        )
    return items


def _span(sizes: list[int]) -> str:
    return f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"


def _unresolved(audit: Audit, bound: float) -> str:
    """Which promises a bound this loose cannot confirm."""
    loose = [f"{t:g}" for t in audit.thresholds if (p := audit.predicted(t)) is not None and p < bound]
    return f", looser than the promise at Similarity {', '.join(loose)}" if loose else ""


# Rendering -----------------------------------------------------------------------------


def to_html(blocks: list[Block], folder: Path) -> str:
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Visage bias audit</title>',
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;font-size:0.8em;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 6px;"
        "vertical-align:top}th{background:#eee}img{max-width:100%}figcaption{font-size:0.8em;color:#555}</style>",
        "</head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        else:
            src = html.escape(os.path.relpath(block.path, folder))
            parts.append(
                f'<figure><img src="{src}" alt="{html.escape(block.caption)}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def to_markdown(blocks: list[Block], folder: Path) -> str:
    parts = ["<!-- Written by `visage audit`; do not edit by hand. -->"]
    for block in blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {i}" for i in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        else:
            parts.append(f"![{block.caption}]({os.path.relpath(block.path, folder)})")
    return "\n\n".join(parts) + "\n"


def _inline_html(text: str) -> str:
    """Escape, then render `code` spans."""
    pieces = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
