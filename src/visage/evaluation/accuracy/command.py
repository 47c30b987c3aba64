"""``visage eval lfw``, ``cfp`` and ``docs``: one face model measured on LFW and on CFP, and docs/accuracy.md.

Importing this module loads no model and no data: each command imports what it needs when it runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from visage.engine.registry import MODEL_NAMES, MODELS_HELP
from visage.evaluation.cli import new_output_folder, output_option, similarity_map_option


def model_option() -> Any:
    """``--model``: the face model a measuring command measures."""
    return click.option(
        "--model",
        type=click.Choice(MODEL_NAMES),
        default="sface",
        show_default=True,
        help=f"Face model: {MODELS_HELP}.",
    )


@click.command("lfw")
@model_option()
@output_option("lfw-<model>.json and its ROC and DET plots", "docs/accuracy")
@click.option(
    "--limit",
    type=click.IntRange(1, 300),
    default=None,
    help="Reduced run: the first N same and N different pairs of each fold (and no all-pairs part).",
)
@click.option(
    "--all-pairs/--no-all-pairs",
    default=None,
    help="Also measure on every pair of LFW images (default: yes, unless --limit).",
)
def lfw_command(model: str, out: Path | None, limit: int | None, all_pairs: bool | None) -> None:
    """LFW pairs.txt 10-fold accuracy, TAR at FAR 1e-3 and 1e-4, ROC and DET curves.

    Speed is measured by benchmarks/engine_speed.py, not here."""
    from visage.config import Settings
    from visage.engine import Engine
    from visage.evaluation.accuracy.run import run_lfw
    from visage.evaluation.data import require_eval_data

    settings = Settings.from_env()  # a bad VISAGE_* variable is told first, in one line
    require_eval_data("lfw")
    out = out or new_output_folder(f"lfw-{model}")
    started = time.perf_counter()
    result = run_lfw(
        Engine(settings), model, out, limit=limit, all_pairs=limit is None if all_pairs is None else all_pairs
    )
    accuracy = result["accuracy"]
    click.echo(
        f"{model}: LFW 10-fold accuracy {100 * accuracy['mean']:.2f} % +/- {100 * accuracy['std']:.2f} "
        f"on {result['pairs']} pairs ({result['pairs_without_face']} without a face)"
    )
    for protocol, rows in result["tar_at_far"].items():
        for row in rows:
            click.echo(
                f"  TAR at FAR {row['far']:g} ({protocol}): {100 * row['tar']:.2f} %"
                + ("" if row["resolvable"] else " (not resolvable)")
            )
    click.echo(f"wrote {out / f'lfw-{model}.json'} and plots in {time.perf_counter() - started:.0f} s")


@click.command("cfp")
@model_option()
@output_option("cfp-<model>.json", "docs/accuracy")
@click.option(
    "--limit",
    type=click.IntRange(1, 350),
    default=None,
    help="Reduced run: the first N same and N different pairs of each fold.",
)
def cfp_command(model: str, out: Path | None, limit: int | None) -> None:
    """CFP frontal-frontal and frontal-profile accuracy (folds 1-5) and TAR at FAR 1e-3."""
    from visage.config import Settings
    from visage.engine import Engine
    from visage.evaluation.accuracy.cfp import run_cfp
    from visage.evaluation.data import require_eval_data

    settings = Settings.from_env()
    require_eval_data("cfp_half")
    out = out or new_output_folder(f"cfp-{model}")
    started = time.perf_counter()
    result = run_cfp(Engine(settings), model, out, limit=limit)
    for protocol, r in result["protocols"].items():
        accuracy, tar = r["accuracy"], r["tar_at_far"]
        click.echo(
            f"{model} CFP {protocol}: {100 * accuracy['mean']:.2f} % +/- {100 * accuracy['std']:.2f} over folds "
            f"{', '.join(map(str, accuracy['folds']))}; TAR at FAR {tar['far']:g} {100 * tar['tar']:.2f} %; "
            f"{r['pairs_without_face']} of {r['pairs']} pairs without a face"
        )
    click.echo(
        f"{len(result['images_without_face'])} of {result['images']} images without a face; "
        f"wrote {out / f'cfp-{model}.json'} in {time.perf_counter() - started:.0f} s"
    )


@click.command("docs")
@output_option("accuracy.md and its plots (accuracy/*.png)", "docs")
@click.option(
    "--results",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("docs/accuracy"),
    show_default=True,
    help="Folder of the lfw-<model>.json results of `visage eval lfw`.",
)
@click.option(
    "--benchmark",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=Path("benchmarks/results/engine_speed.json"),
    show_default=True,
    help="benchmarks/engine_speed.py's results: each face model's embedding time and memory.",
)
@click.option(
    "--audit",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=Path("docs/bias-audit/audit.json"),
    show_default=True,
    help="The bias audit's audit.json (what 99 costs per person).",
)
@click.option(
    "--several-photos",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=Path("benchmarks/results/several_photos.json"),
    show_default=True,
    help="benchmarks/several_photos.py's results: SearchUsersByImage with one face per user and with five.",
)
@click.option(
    "--label-cleaning",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=Path("benchmarks/results/label_cleaning.json"),
    show_default=True,
    help="benchmarks/label_cleaning.py's results: the held-out check with LFW's labels cleaned.",
)
@click.option(
    "--pages",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    multiple=True,
    help="Also refresh the generated blocks of these hand-written pages (README.md, docs/engine.md); repeat.",
)
@similarity_map_option("Describe as in force")
def docs_command(
    out: Path | None,
    results: Path,
    benchmark: Path,
    audit: Path,
    several_photos: Path,
    label_cleaning: Path,
    pages: tuple[Path, ...],
    similarity_map: Path | None,
) -> None:
    """Write accuracy.md and its plots from the results of `lfw`, `cfp`, `calibrate` and the engine benchmark."""
    from visage.config import Settings
    from visage.engine import Engine
    from visage.evaluation.accuracy.report import write_accuracy_doc
    from visage.evaluation.published import Sources, refresh_page

    engine = Engine(Settings.from_env(similarity_map=similarity_map))
    maps = {m: engine.similarity_map(m) for m in MODEL_NAMES}
    sources = Sources(
        results=results,
        benchmark=benchmark,
        audit=audit,
        several_photos=several_photos,
        label_cleaning=label_cleaning,
    )
    written = write_accuracy_doc(out or new_output_folder("docs"), sources, maps, engine.settings.similarity_map)
    click.echo(f"wrote {written}")
    for page in pages:
        try:
            click.echo(f"refreshed {refresh_page(page, sources)}")
        except ValueError as error:
            raise click.ClickException(str(error)) from None
