"""``visage audit``: the engine's error rates per demographic group, with their uncertainty.

Three labelled sets, each split into cells (demographic groups):

- UTKFace, balanced subset (10 gender x race cells of 200 faces): detection rate,
  gender error rate, age mean absolute error (the AgeRange midpoint against the
  labelled age), and the false-match rate (FMR) of all pairs within a cell at
  Similarity 80, 90 and 99, also over adults only (both 18+). UTKFace has no identity
  labels: every pair is taken as two different people, so a same-person pair counts
  as a false match.
- FairFace sample (9 age groups x 2 genders, 30 faces each): detection rate, gender
  error rate, age error against the labelled group (0 when the AgeRange midpoint
  falls inside the group, else its distance to the group), and how often it falls outside.
- LFW by gender (the per-image gender lists): false non-match rate (FNMR) of all
  same-person pairs (also averaged over people, each person equal) and FMR of all
  pairs of different people of the same gender.

Cosine scores become Similarity through the face model's configured map, and the
FMR the map promises at each threshold is read from the map file
(:mod:`visage.evaluation.prediction`). Writes ``audit.json``, ``report.html`` and
``plots/`` to ``--out``, and with ``--markdown`` a markdown page from the same run.

Run: ``visage audit --out docs/bias-audit --markdown docs/bias-audit.md``
(reduced: ``--limit 50``), or ``python -m visage.evaluation.audit.command ...``.
Importing this module loads no model and no data.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from visage.engine.registry import MODEL_NAMES, MODELS_HELP
from visage.evaluation.cli import new_output_folder, output_option, similarity_map_option


@click.command("audit")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Evaluation data folder (default: VISAGE_EVAL_DATA or ../shared/eval).",
)
@output_option("report.html, audit.json and plots/", "docs/bias-audit")
@click.option(
    "--model", type=click.Choice(MODEL_NAMES), default="sface", show_default=True, help=f"Face model: {MODELS_HELP}."
)
@similarity_map_option("Audit under")
@click.option("--limit", type=click.IntRange(2), default=None, help="At most N faces per cell (a reduced run).")
@click.option("--seed", default=0, show_default=True, help="Seed of the --limit sample.")
@click.option(
    "--markdown",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the report as markdown here (docs/bias-audit.md).",
)
def audit_command(
    data: Path | None,
    out: Path | None,
    model: str,
    similarity_map: Path | None,
    limit: int | None,
    seed: int,
    markdown: Path | None,
) -> None:
    """Error rates per demographic group: detection, gender, age, false matches."""
    from visage.config import Settings
    from visage.engine import Engine
    from visage.evaluation.audit.report import write_report
    from visage.evaluation.audit.run import run_audit
    from visage.evaluation.data import require_eval_data
    from visage.evaluation.labelled import FAIRFACE, LFW, UTKFACE

    engine = Engine(Settings.from_env(similarity_map=similarity_map))  # a bad VISAGE_* variable first
    root = require_eval_data(UTKFACE, FAIRFACE, LFW, root=data)
    out = out or new_output_folder("audit")
    audit = run_audit(root, model, limit, seed, engine=engine, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.json").write_text(json.dumps(audit.to_json(), indent=1) + "\n")
    for path in [out / "audit.json", *write_report(audit, out, markdown)]:
        click.echo(str(path))


if __name__ == "__main__":
    audit_command()
