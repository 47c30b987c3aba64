"""``visage eval lfw`` and ``visage eval docs``: one face model measured on LFW, and docs/accuracy.md.

Importing this module loads no model and no data: each command imports what it needs when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from visage.engine.registry import MODEL_NAMES
from visage.evaluation.cli import DOCS, similarity_map_option


def _model_and_results(results: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--model`` and ``--out``, the folder of the results (``results``), shared by the measuring commands."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            default=DOCS / "accuracy",
            show_default=True,
            help=f"Folder for {results}.",
        )(command)
        return click.option("--model", type=click.Choice(MODEL_NAMES), default="sface", show_default=True)(command)

    return decorate


@click.command("lfw")
@_model_and_results("lfw-<model>.json and its ROC and DET plots")
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
@click.option("--timing/--no-timing", default=True, show_default=True, help="Time the embedding of a face.")
def lfw_command(model: str, out: Path, limit: int | None, all_pairs: bool | None, timing: bool) -> None:
    """LFW pairs.txt 10-fold accuracy, TAR at FAR 1e-3 and 1e-4, ROC and DET curves."""
    from visage.engine import Engine
    from visage.evaluation.accuracy.run import run_lfw

    started = time.perf_counter()
    result = run_lfw(
        Engine(), model, out, limit=limit, all_pairs=limit is None if all_pairs is None else all_pairs, timing=timing
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
    if "cost" in result:
        click.echo(f"  embedding: {result['cost']['embed_ms_per_face']} ms per face")
    click.echo(f"wrote {out / f'lfw-{model}.json'} and plots in {time.perf_counter() - started:.0f} s")


@click.command("cfp")
@_model_and_results("cfp-<model>.json")
@click.option(
    "--limit",
    type=click.IntRange(1, 350),
    default=None,
    help="Reduced run: the first N same and N different pairs of each fold.",
)
def cfp_command(model: str, out: Path, limit: int | None) -> None:
    """CFP frontal-frontal and frontal-profile accuracy (folds 1-5) and TAR at FAR 1e-3."""
    from visage.engine import Engine
    from visage.evaluation.accuracy.cfp import run_cfp

    started = time.perf_counter()
    result = run_cfp(Engine(), model, out, limit=limit)
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
@click.option("--docs", "docs", type=click.Path(file_okay=False, path_type=Path), default=DOCS, show_default=True)
@similarity_map_option("Describe as in force")
def docs_command(docs: Path, similarity_map: Path | None) -> None:
    """Write docs/accuracy.md and its plots from the results of `lfw` and `calibrate`."""
    from visage.config import Settings
    from visage.engine import Engine
    from visage.evaluation.accuracy.report import write_accuracy_doc

    engine = Engine(Settings.from_env(similarity_map=similarity_map))
    maps = {m: engine.similarity_map(m) for m in MODEL_NAMES}
    click.echo(f"wrote {write_accuracy_doc(docs, maps, engine.settings.similarity_map)}")
