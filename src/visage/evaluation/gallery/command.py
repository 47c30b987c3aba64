"""``visage eval gallery``: the ACLU's mugshot search, replicated through the real server.

In 2018 the ACLU searched 25,000 mugshots with photos of the 535 members of the
US Congress at Rekognition's default threshold of 80 and got 28 false matches.
Here: a seeded choice of LFW people are the probes; every *other* face of the
evaluation data (the rest of LFW, the UTKFace crops, the FairFace faces) is
indexed into a collection of a ``visage serve`` started for the run (real HTTP,
real boto3, IndexFaces with MaxFaces=1), and one image of each probe person is
searched with SearchFacesByImage. No probe person has an image in the gallery,
so every match is a false match.

The calibration predicts, at threshold S with FMR(S) read from the map file:

- false matches: FMR(S) x comparisons (searched probes x gallery faces), a Poisson
  count; "within" means inside the central 95 % range of that Poisson law;
- probes with at least one false match: each probe independently with probability
  1 - (1 - FMR)^gallery, a binomial count; "within" means inside its central 95 % range.

Writes ``gallery.json`` to ``--out`` and, with ``--markdown``, docs/gallery.md.
Run: ``visage eval gallery --out docs/gallery --markdown docs/gallery.md`` (reduced:
``--limit 1000 --probes 100``), or ``python -m visage.evaluation.gallery.command ...``.
Importing this module loads no model and no data.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from visage.evaluation.cli import new_output_folder, output_option


@click.command("gallery")
@click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Evaluation data folder (default: VISAGE_EVAL_DATA or ../shared/eval).",
)
@output_option("gallery.json", "docs/gallery")
@click.option("--probes", type=click.IntRange(1), default=500, show_default=True, help="LFW people searched.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N gallery images (a reduced run).")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="Requests in flight.")
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the markdown page here (docs/gallery.md).",
)
def gallery_command(
    data: Path | None,
    out: Path | None,
    probes: int,
    limit: int | None,
    seed: int,
    threads: int,
    markdown_path: Path | None,
) -> None:
    """Search LFW people against a gallery without them, through the server: every match is false."""
    from visage.evaluation.data import require_eval_data
    from visage.evaluation.gallery.report import gallery_markdown
    from visage.evaluation.gallery.search import run_gallery
    from visage.evaluation.labelled import FAIRFACE, LFW, UTKFACE

    root = require_eval_data(LFW, UTKFACE, FAIRFACE, root=data)
    out = out or new_output_folder("gallery")
    result = run_gallery(root, probes, limit, seed, threads, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gallery.json").write_text(json.dumps(result, indent=1) + "\n")
    click.echo(str(out / "gallery.json"))
    if markdown_path is not None:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(gallery_markdown(result))
        click.echo(str(markdown_path))


if __name__ == "__main__":
    gallery_command()
