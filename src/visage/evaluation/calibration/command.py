"""``visage eval calibrate`` and ``visage eval fusion-weight``: refit on LFW what the engine ships.

Importing this module loads no model and no data: each command imports what it needs when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from visage.engine.registry import MODEL_NAMES, face_model_entry
from visage.evaluation.cli import new_output_folder, output_option


def _install_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--install",
        is_flag=True,
        help=f"Write {what} into the package, where the engine reads it (what ships); not with --out.",
    )


def _destination(out: Path | None, install: bool, name: str) -> Path | None:
    """The folder to write to: ``out``, a new folder, or None for the package's own (``--install``)."""
    if install and out is not None:
        raise click.UsageError("--install writes into the package: give either --install or --out, not both.")
    return None if install else (out or new_output_folder(name))


@click.command("calibrate")
@click.option(
    "--models",
    type=click.Choice(MODEL_NAMES),
    multiple=True,
    default=MODEL_NAMES,
    show_default=True,
    help="Repeat to fit several.",
)
@click.option("--seed", type=int, default=2024, show_default=True, help="Seed of the split of people into halves.")
@output_option("the maps, <model>.json", "--install instead")
@_install_option("the maps (visage/data/similarity/<model>.json)")
def calibrate_command(models: tuple[str, ...], seed: int, out: Path | None, install: bool) -> None:
    """Refit the Similarity maps on every pair of LFW images, as <model>.json files."""
    from visage.engine import Engine
    from visage.evaluation.allpairs import lfw_vectors
    from visage.evaluation.calibration.similarity_map import calibrate
    from visage.evaluation.data import require_eval_data

    require_eval_data("lfw")
    destination = _destination(out, install, "calibrate")
    engine = Engine()
    for model in models:
        started = time.perf_counter()
        version = face_model_entry(model).version
        fitted = calibrate(lfw_vectors(engine, model), version, seed=seed)
        path = fitted.save(destination)
        meta = fitted.metadata
        check = meta["heldout_check"]
        click.echo(
            f"{model}: {meta['genuine_pairs']:,} genuine and {meta['impostor_pairs']:,} impostor pairs, "
            f"{meta['images_without_face']} images without a face; held-out check "
            f"{'passed' if check['passed'] else 'FAILED'} -> {path} ({time.perf_counter() - started:.0f} s)"
        )
        for row in meta["table"]:
            click.echo(
                f"  Similarity {row['similarity']:>5g}: cosine {row['raw_threshold']:.4f}, "
                f"FMR {row['observed_fmr']:.2e} ({row['false_matches']}), FNMR {row['fnmr']:.4f}"
            )


@click.command("fusion-weight")
@output_option("fusion.json", "--install instead")
@_install_option("the weight (visage/data/fusion.json)")
def fusion_weight_command(out: Path | None, install: bool) -> None:
    """Choose the fusion model's sface weight on LFW pairsDevTrain, as fusion.json."""
    from visage.engine import Engine
    from visage.engine.recognition import FUSION_FILE
    from visage.evaluation.calibration.fusion_weight import fit_fusion_weight
    from visage.evaluation.data import require_eval_data

    require_eval_data("lfw")
    destination = _destination(out, install, "fusion-weight")
    if destination is not None:
        destination.mkdir(parents=True, exist_ok=True)
    path = FUSION_FILE if destination is None else destination / FUSION_FILE.name
    data = fit_fusion_weight(Engine(), path=path)
    accuracy = data["dev_train_accuracy"]
    click.echo(
        f"w = {data['sface_weight']} ({data['version']}): pairsDevTrain 10-fold accuracy fusion "
        f"{accuracy['fusion']:.4f}, sface {accuracy['sface']:.4f}, dlib {accuracy['dlib']:.4f} -> {path}"
    )
